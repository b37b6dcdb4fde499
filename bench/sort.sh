#!/bin/bash
# The sorting queue against random order (BENCHMARKS.md, "Sort a folder nobody labelled"), from
# the repository root:  bash bench/sort.sh WEIGHTS OUT
# Pool: ../shared/data/dogscats/train with its labels hidden from the queue (the oracle reads
# them from the file names), scored on ../shared/data/dogscats/test (labels from
# test_labels.csv, put in class folders under OUT/test); 6 seeds of each order, a fit every 10
# answers up to 150. Then a three-class pool (cats, dogs and flowers of ../shared/data/ood)
# scored on photos of the same three kinds it does not hold.
# Writes OUT/*.jsonl and prints the tables; python3 bench/sort_curve.py OUT draws OUT/curve.svg.
set -euo pipefail
WEIGHTS=${1:?usage: bench/sort.sh WEIGHTS OUT}
OUT=${2:?usage: bench/sort.sh WEIGHTS OUT}
SRC=$(cd ../shared/data && pwd)
BIN=${VGGTUNE_BIN:-${CARGO_TARGET_DIR:-target}/release/vggtune}
mkdir -p "$OUT/test/cat" "$OUT/test/dog"
tail -n +2 "$SRC/dogscats/test_labels.csv" | tr -d '\r' | while IFS=, read -r id label; do
  class=cat; [ "$label" = 1 ] && class=dog
  ln -sf "$SRC/dogscats/test/$id.jpg" "$OUT/test/$class/$id.jpg"
done
for seed in 1 2 3 4 5 6; do for order in queue random; do
  "$BIN" sort "$SRC/dogscats/train" --classes cat,dog --oracle "$SRC/dogscats/train" --answers 150 \
    --every 10 --order $order --seed $seed --score-on "$OUT/test" --weights "$WEIGHTS" --json \
    2>/dev/null > "$OUT/two-$order-$seed.jsonl"
done; done
# Three classes: 150 cats, 150 dogs, 24 flowers to sort; 100 + 100 + 24 others to score on.
rm -rf "$OUT/three" && mkdir -p "$OUT/three/pool" "$OUT/three/labelled"/{cat,dog,flower} "$OUT/three/test"/{cat,dog,flower}
for c in cat dog; do
  for i in $(seq 1 150); do [ -f "$SRC/dogscats/train/$c.$i.jpg" ] && ln -s "$SRC/dogscats/train/$c.$i.jpg" "$OUT/three/pool/$c.$i.jpg" && ln -s "$SRC/dogscats/train/$c.$i.jpg" "$OUT/three/labelled/$c/$c.$i.jpg"; done
  for i in $(seq 151 250); do [ -f "$SRC/dogscats/train/$c.$i.jpg" ] && ln -s "$SRC/dogscats/train/$c.$i.jpg" "$OUT/three/test/$c/$c.$i.jpg"; done
done
n=0; for f in $(ls "$SRC/ood" | grep '^flower_' | sort); do
  n=$((n + 1)); dir=pool; [ $n -gt 24 ] && dir=test
  if [ $dir = pool ]; then ln -s "$SRC/ood/$f" "$OUT/three/pool/$f"; ln -s "$SRC/ood/$f" "$OUT/three/labelled/flower/$f"
  else ln -s "$SRC/ood/$f" "$OUT/three/test/flower/$f"; fi
done
for seed in 1 2 3 4 5 6; do for order in queue random; do
  "$BIN" sort "$OUT/three/pool" --classes cat,dog,flower --oracle "$OUT/three/labelled" --answers 60 \
    --every 5 --order $order --seed $seed --score-on "$OUT/three/test" --weights "$WEIGHTS" --json \
    2>/dev/null > "$OUT/three-$order-$seed.jsonl"
done; done
python3 "$(dirname "$0")/sort_curve.py" "$OUT"
