"""Reference for vggtune's ONNX export: checks an exported model and runs it in onnxruntime.

usage: onnx_classify.py MODEL.onnx PIXELS.bin N SIZE OUT.bin
PIXELS.bin holds N x 3 x SIZE x SIZE float32 values: RGB planes (NCHW), pixel values 0-255, the
photos already made square as the model's 'resize' metadata says. The model passes
onnx.checker (with shape inference), then OUT.bin receives its first output (float32), and a JSON
line describes the file: opset, input and output names and dims, metadata_props, every output's
name, the features' shape and the typicality distances (when the graph has them).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, pixels_path, n, size, out_path = sys.argv[1:6]
n, size = int(n), int(size)
onnx.checker.check_model(model_path, full_check=True)
model = onnx.load(model_path)
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
x = np.fromfile(pixels_path, dtype=np.float32).reshape(n, 3, size, size)
inp, out = session.get_inputs()[0], session.get_outputs()[0]
outputs = [o.name for o in session.get_outputs()]
results = dict(zip(outputs, session.run(outputs, {inp.name: x})))
y = results[out.name]
np.asarray(y, dtype=np.float32).tofile(out_path)
print(json.dumps({
    "outputs": outputs,
    "features_shape": list(np.shape(results["features"])) if "features" in results else None,
    "distances": [float(d) for d in results["typicality_distance"]]
    if "typicality_distance" in results else None,
    "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
    "input": {"name": inp.name, "shape": inp.shape, "type": inp.type},
    "output": {"name": out.name, "shape": out.shape, "type": out.type},
    "result_shape": list(np.shape(y)),
    "metadata": {p.key: p.value for p in model.metadata_props},
    "producer": model.producer_name,
}))
