#!/usr/bin/env bash
# Issue #7.4: vggtune through wgpu against PyTorch with CUDA, on a machine with an NVIDIA GPU and
# no network (the device machine some sessions are lent), in one prepared run.
#
#   bash bench/gpu.sh prepare   here: builds the release binary and packs it stripped and
#                               xz-compressed into .gpu/ (about 25 MB), and downloads the Vulkan,
#                               EGL and GL loader packages into .gl/ (both git-ignored locally)
#   bash bench/gpu.sh run       there, with .gpu and .gl carried: unpacks the loaders, then runs
#                               `vggtune info` and `vggtune bench --device gpu`, and
#                               `python3 bench/reference.py torch --device cuda`, alternating
#                               ROUNDS times (default 2); everything goes to $OUT (or ./gpu-out)
#
# The machine's python3 must have torch with CUDA (the device machines' image does). The photos
# in ../shared do not travel, so there is no end-to-end row; forward and training steps are what
# #7.4 compares (target: wgpu at >= 0.5x PyTorch CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}

if [ "$mode" = prepare ]; then
  for ignored in /.gpu/ /.gl/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >>.git/info/exclude
  done
  cargo build --release
  bin="${CARGO_TARGET_DIR:-target}/release/vggtune"
  mkdir -p .gpu
  strip -o .gpu/vggtune "$bin"
  xz -T0 -6 -f .gpu/vggtune
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  du -sh .gpu .gl
  echo "gpu.sh: ready; on the device: bash bench/gpu.sh run, carrying .gpu and .gl"
  exit 0
fi

if [ "$mode" != run ]; then
  echo "usage: bash bench/gpu.sh prepare|run [ROUNDS]" >&2
  exit 2
fi
rounds=${2:-2}
out=${OUT:-gpu-out}
mkdir -p "$out"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if ! ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json >/dev/null 2>&1; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
xz -dc .gpu/vggtune.xz >/tmp/vggtune
chmod +x /tmp/vggtune
{
  nvidia-smi -L || true
  /tmp/vggtune --version
  /tmp/vggtune info --device gpu
} 2>&1 | tee "$out/gpu-info.txt"
for r in $(seq 1 "$rounds"); do
  timeout 300 /tmp/vggtune bench --device gpu --repeats 3 --json-out "$out/gpu-vggtune-$r.json" \
    2>&1 | tee "$out/gpu-vggtune-$r.txt"
  timeout 200 python3 bench/reference.py torch --device cuda --repeats 3 --threads 16 \
    >"$out/gpu-torch-$r.json"
  cat "$out/gpu-torch-$r.json"
done
