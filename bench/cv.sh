#!/bin/bash
# The default recipe's held-out accuracy and log loss with the frozen base in f32 and in bf16
# (BENCHMARKS.md, "The frozen base in bf16"), from the repository root:
#   bash bench/cv.sh [WORK] [PRECISIONS]   (WORK default /tmp/vggtune-cv; PRECISIONS "f32 bf16")
# Three 5-fold splits of ../shared/data/dogscats/train (1,999 photos; folds by a hash of the file
# name seeded 42, 43 and 44). Each fold is a folder with train/ and valid/, so `vggtune train`
# validates on the held-out fifth with the default views; its `finished` event gives the numbers.
# Features are computed once a photo and view per precision (one cache each); with f32 and
# bf16 on 2 cores, about 40 minutes, most of it f32's feature passes.
set -euo pipefail
WORK=${1:-/tmp/vggtune-cv}
PRECISIONS=${2:-f32 bf16}
DATA=$(cd ../shared/data && pwd)
B=${VGGTUNE:-target/release/vggtune}
W=tests/fixtures/downloaded/vgg16_keras.onnx
mkdir -p "$WORK"
python3 - "$DATA/dogscats/train" "$WORK" <<'EOF'
import hashlib, os, sys
src, out = sys.argv[1:3]
for seed in (42, 43, 44):
    for name in sorted(os.listdir(src)):
        fold = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest(), 16) % 5
        for f in range(5):
            d = f"{out}/s{seed}/f{f}/{'valid' if f == fold else 'train'}"
            os.makedirs(d, exist_ok=True)
            if not os.path.lexists(f"{d}/{name}"):
                os.symlink(f"{src}/{name}", f"{d}/{name}")
EOF
for p in $PRECISIONS; do
  for s in 42 43 44; do
    for f in 0 1 2 3 4; do
      run="$WORK/$p-s$s-f$f"
      [ -s "$run.jsonl" ] && grep -q '"finished"' "$run.jsonl" && continue
      "$B" --precision "$p" train "$WORK/s$s/f$f" --weights "$W" --device cpu \
        --cache-dir "$WORK/cache-$p" --out "$run.vggtune" --json > "$run.jsonl"
    done
  done
done
python3 - "$WORK" $PRECISIONS <<'EOF'
import json, sys
work, precisions = sys.argv[1], sys.argv[2:]
print("| split | " + " | ".join(f"{p}: right of held out, accuracy, log loss" for p in precisions) + " |")
print("| --- |" + " --- |" * len(precisions))
for s in (42, 43, 44):
    cells = []
    for p in precisions:
        right = count = 0
        loss = 0.0
        for f in range(5):
            for line in open(f"{work}/{p}-s{s}-f{f}.jsonl"):
                e = json.loads(line)
                if e.get("event") == "finished":
                    v = e["validation"]["evaluation"]
                    right += round(v["accuracy"] * v["count"])
                    count += v["count"]
                    loss += v["log_loss"] * v["count"]
        if count == 0:
            cells.append("no finished run")
            continue
        cells.append(f"{right} of {count}, {100 * right / count:.2f}%, {loss / count:.4f}")
    print(f"| {s} | " + " | ".join(cells) + " |")
EOF
