"""Reference for vggtune's heatmaps: Grad-CAM computed independently of vggtune's maths.

usage: gradcam.py MODEL.onnx PIXELS.bin N SIZE OUT.bin
PIXELS.bin holds N x 3 x SIZE x SIZE float32 values as onnx_classify.py takes them. The
exported model runs in onnxruntime up to the last convolution's ReLU (`features.28.relu`,
block 5's third), which gives the activation A. The rest of the network (2x2 max-pool, PyTorch's
adaptive average pool to 7x7, the pooled head's mean over the 7x7 cells when the graph has its
GlobalAveragePool (`global_pool`), the dense layers read from the file's initializers) is re-run in
numpy, in float64. Grad-CAM's channel weights, the spatial mean of d(logit_c)/dA_k, are taken as
directional derivatives by central finite differences (A plus and minus eps on the whole of
channel k), so no hand-written backward pass is involved. The map is ReLU(sum_k alpha_k A_k)
divided by its maximum. OUT.bin receives N x classes x H x W float32 maps; stdout one JSON line
with the shape and the probabilities.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

model_path, pixels_path, n, size, out_path = sys.argv[1:6]
n, size = int(n), int(size)
model = onnx.load(model_path)
weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
model.graph.output.append(
    onnx.helper.make_tensor_value_info("features.28.relu", onnx.TensorProto.FLOAT, None))
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
x = np.fromfile(pixels_path, dtype=np.float32).reshape(n, 3, size, size)
(activations,) = session.run(["features.28.relu"], {session.get_inputs()[0].name: x})
activations = activations.astype(np.float64)

# The pooled head's own GlobalAveragePool (the graph's other one gives the `features` output).
pools = any(node.op_type == "GlobalAveragePool" and node.output[0] == "global_pool"
            for node in model.graph.node)
dense = []
j = 0
while f"classifier.{3 * j}.weight" in weights:
    dense.append((weights[f"classifier.{3 * j}.weight"], weights[f"classifier.{3 * j}.bias"]))
    j += 1


def pool_matrix(inp, out):
    m = np.zeros((out, inp))
    for i in range(out):
        start, end = (i * inp) // out, -((-(i + 1) * inp) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def logits(a):
    """a: [B, C, H, W] -> [B, classes], the network after the last ReLU."""
    b, c, h, w = a.shape
    ph, pw = h // 2, w // 2
    maxed = a[:, :, : 2 * ph, : 2 * pw].reshape(b, c, ph, 2, pw, 2).max(axis=(3, 5))
    pooled = np.einsum("ai,bcij,dj->bcad", pool_matrix(ph, 7), maxed, pool_matrix(pw, 7))
    z = pooled.mean(axis=(2, 3)) if pools else pooled.reshape(b, -1)
    for k, (weight, bias) in enumerate(dense):
        z = z @ weight.T + bias
        if k + 1 < len(dense):
            z = np.maximum(z, 0.0)
    return z


eps = 1e-4
maps_out, probabilities = [], []
for a in activations:
    c, h, w = a.shape
    base = logits(a[None])[0]
    p = np.exp(base - base.max())
    probabilities.append((p / p.sum()).tolist())
    alpha = np.zeros((len(base), c))
    for start in range(0, c, 64):
        ks = range(start, min(c, start + 64))
        plus = np.repeat(a[None], len(ks), axis=0)
        minus = plus.copy()
        for i, k in enumerate(ks):
            plus[i, k] += eps
            minus[i, k] -= eps
        alpha[:, start:start + len(ks)] = ((logits(plus) - logits(minus)) / (2 * eps)).T / (h * w)
    for cls in range(len(base)):
        cam = np.maximum(np.tensordot(alpha[cls], a, axes=1), 0.0)
        top = cam.max()
        maps_out.append(cam / top if top > 0 else cam)
np.asarray(maps_out, dtype=np.float32).tofile(out_path)
print(json.dumps({"shape": list(activations.shape), "probabilities": probabilities}))
