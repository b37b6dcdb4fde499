#!/bin/bash
# A photo folder with problems planted in it, for measuring Check data (BENCHMARKS.md, "Check
# data"), from the repository root:
#   bash bench/plant.sh OUT        (needs ImageMagick's `convert`)
# OUT gets 199 real photos of ../shared/data/dogscats/train (cat.1–100, dog.1–100) in Kaggle's
# flat layout, plus, each listed in OUT.planted (kind, file):
#   duplicate   30 copies of other photos of the folder: re-saved at JPEG quality 50–70 (10),
#               resized to 60–90% (10), cropped by up to 10% (5), mirrored (5)
#   no-class    15 photos of neither class filed as cats or dogs: flowers of
#               ../shared/data/ood (its 30 px thumbnails would also be unusable: too small)
#   unusable    20 photos made unusable: darkened (5), blurred (5), 24 px (5), 12:1 (5)
#   wrong-label 5 cats filed as dogs
#   leak        10 copies of OUT's photos in OUT-against, beside 20 photos OUT does not hold
# Then: vggtune check OUT --against OUT-against --json > check.json;
#       python3 bench/plant_score.py OUT.planted check.json
set -euo pipefail
OUT=${1:?usage: bench/plant.sh OUT}
SRC=$(cd ../shared/data && pwd)
rm -rf "$OUT" && mkdir -p "$OUT"
: > "$OUT.planted"
# (dog.74 is the duplicate ../shared/data removed: 199 photos.)
for c in cat dog; do for i in $(seq 1 100); do
  if [ -f "$SRC/dogscats/train/$c.$i.jpg" ]; then cp "$SRC/dogscats/train/$c.$i.jpg" "$OUT/"; fi
done; done
n=5000
plant() { # kind, source, convert options...
  local kind=$1 src=$2; shift 2
  n=$((n + 1))
  # A copy keeps its source's class; a photo of neither class is filed as cat or dog in turn.
  local class=cat; [ $((n % 2)) -eq 0 ] && class=dog
  case "$(basename "$src")" in cat.*) class=cat ;; dog.*) class=dog ;; esac
  local name="$class.$n.jpg"
  convert "$src" "$@" "$OUT/$name"
  echo "$kind $name" >> "$OUT.planted"
}
for i in $(seq 1 10); do plant duplicate "$SRC/dogscats/train/cat.$((i + 10)).jpg" -quality $((50 + 2 * i)); done
for i in $(seq 1 10); do plant duplicate "$SRC/dogscats/train/dog.$((i + 10)).jpg" -resize $((60 + 3 * i))%; done
for i in $(seq 1 5); do plant duplicate "$SRC/dogscats/train/cat.$((i + 30)).jpg" -gravity center -crop $((90 + 2 * i))%x$((90 + 2 * i))%+0+0 +repage; done
for i in $(seq 1 5); do plant duplicate "$SRC/dogscats/train/dog.$((i + 30)).jpg" -flop; done
for f in $(ls "$SRC/ood" | grep '^flower_' | head -15); do plant no-class "$SRC/ood/$f"; done
for i in $(seq 1 5); do plant unusable "$SRC/dogscats/train/cat.$((i + 40)).jpg" -fill black -colorize 92%; done
for i in $(seq 1 5); do plant unusable "$SRC/dogscats/train/dog.$((i + 40)).jpg" -blur 0x8; done
for i in $(seq 1 5); do plant unusable "$SRC/dogscats/train/cat.$((i + 50)).jpg" -resize '24x24!'; done
for i in $(seq 1 5); do plant unusable "$SRC/dogscats/train/dog.$((i + 50)).jpg" -resize '600x50!'; done
# Five cats filed as dogs (their originals leave the folder).
for i in 61 62 63 64 65; do
  mv "$OUT/cat.$i.jpg" "$OUT/dog.$((6000 + i)).jpg"
  echo "wrong-label dog.$((6000 + i)).jpg" >> "$OUT.planted"
done
# A second folder to check against (--against OUT-against): 10 copies of the folder's photos
# (leaks: re-saved at quality 55-70, resized to 70-85%, mirrored; 4 in a sub-folder) and 20
# photos the folder does not hold.
AGAINST="$OUT-against"
rm -rf "$AGAINST" && mkdir -p "$AGAINST/more"
leak() { # name, source, convert options...
  local name=$1 src=$2; shift 2
  convert "$src" "$@" "$AGAINST/$name"
  echo "leak $name" >> "$OUT.planted"
}
for i in 1 2 3 4; do leak "more/leak$i.jpg" "$OUT/cat.$((i + 69)).jpg" -quality $((50 + 5 * i)); done
for i in 5 6 7; do leak "leak$i.jpg" "$OUT/dog.$((i + 65)).jpg" -resize $((55 + 5 * i))%; done
for i in 8 9 10; do leak "leak$i.jpg" "$OUT/cat.$((i + 70)).jpg" -flop; done
for c in cat dog; do for i in $(seq 500 509); do cp "$SRC/dogscats/train/$c.$i.jpg" "$AGAINST/"; done; done
echo "$(ls "$OUT" | wc -l) photos in $OUT; planted: $OUT.planted; to check against: $AGAINST"
