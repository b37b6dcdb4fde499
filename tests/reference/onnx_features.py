"""Reference for vggtune's model tests: runs an ONNX VGG16 with onnxruntime up to a named node.

usage: onnx_features.py MODEL.onnx OUTPUT_NAME INPUT.bin N SIZE OUT.bin
INPUT.bin holds N x 3 x SIZE x SIZE float32 values (NCHW, already preprocessed by vggtune);
the graph takes NHWC, so the input is transposed. OUT.bin receives the named output, NCHW float32.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, output_name, input_path, n, size, out_path = sys.argv[1:7]
n, size = int(n), int(size)
model = onnx.load(model_path)
model.graph.output.append(onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, None))
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
x = np.fromfile(input_path, dtype=np.float32).reshape(n, 3, size, size)
nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
input_name = session.get_inputs()[0].name
(y,) = session.run([output_name], {input_name: nhwc})
y = np.asarray(y, dtype=np.float32)
y.tofile(out_path)
print(" ".join(str(d) for d in y.shape))
