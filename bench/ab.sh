#!/usr/bin/env bash
# A/B driver: runs vggtune bench and the references alternately (A B C A B C ...) on the same
# machine so that its noise falls on all of them, each in f32 and in bf16 (vggtune --precision,
# PyTorch autocast, oneDNN's fpmath mode), then prints every run's JSON line.
# usage: bash bench/ab.sh ROUNDS PYTHON [PHOTOS]
#   PYTHON: a Python with torch and/or tensorflow-cpu (+ pillow for PHOTOS) installed.
#   PHOTOS: a Kaggle-layout folder; adds the end-to-end run (2,000 photos, 10 head epochs) to
#   vggtune bench and the same workflow in Keras (bench/reference.py --photos).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
python=${2:-python3}
photos=${3:-}
vggtune=${VGGTUNE_BIN:-${CARGO_TARGET_DIR:-target}/release/vggtune}
out=$(mktemp -d)
json() { "$python" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$1"; }
for r in $(seq 1 "$rounds"); do
  e2e=()
  [ -n "$photos" ] && e2e=(--photos "$photos" --photo-limit 2000 --epochs 10)
  for p in f32 bf16; do
    "$vggtune" --precision "$p" bench --device cpu --repeats 2 ${e2e[@]+"${e2e[@]}"} \
      --json-out "$out/vggtune-$p-$r.json" >/dev/null
    echo "{\"round\": $r, \"vggtune_$p\": $(json "$out/vggtune-$p-$r.json")}"
  done
  for fw in torch keras; do
    if "$python" -c "import ${fw/keras/tensorflow}" 2>/dev/null; then
      for p in f32 bf16; do
        flag=(); [ "$p" = bf16 ] && flag=(--bf16)
        echo "{\"round\": $r, \"${fw}_$p\": $("$python" bench/reference.py "$fw" --repeats 2 ${flag[@]+"${flag[@]}"} 2>/dev/null)}"
      done
    fi
  done
  if [ -n "$photos" ]; then
    echo "{\"round\": $r, \"keras_end_to_end\": $("$python" bench/reference.py keras --photos "$photos" \
      --photo-limit 2000 --epochs 10 2>/dev/null)}"
  fi
done
