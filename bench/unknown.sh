#!/bin/bash
# The benchmark of the "none of these" verdict and of the calibration (BENCHMARKS.md, "Photos of
# none of the classes"), from the repository root:
#   bash bench/unknown.sh [WORK]        (WORK: a scratch folder, default /tmp/vggtune-unknown)
# It builds the photo sets (links into ../shared/data, and scikit-image's sample photos from its
# wheel: a network download), trains the default recipe on all 1,999 photos and on each of 5
# folds, and runs `vggtune bench-unknown` on each model. About 40 minutes on 2 cores, most of it
# the feature pass of the first run (the folds read the feature cache).
set -euo pipefail
WORK=${1:-/tmp/vggtune-unknown}
DATA=$(cd ../shared/data && pwd)
B=${VGGTUNE:-target/release/vggtune}
W=tests/fixtures/downloaded/vgg16_keras.onnx
mkdir -p "$WORK"

# Unknown photos: ../shared/data/ood split by the parity of the number in the name. "tune" (odd)
# chose k and the share kept; "held" (even, and the one file without a number) and scikit-image's
# photos were only measured.
rm -rf "$WORK/tune" "$WORK/held" "$WORK/skimage" "$WORK/testlab"
mkdir -p "$WORK/tune" "$WORK/held" "$WORK/skimage" "$WORK/testlab/cat" "$WORK/testlab/dog"
for f in "$DATA"/ood/*.jpg; do
  n=$(basename "$f" .jpg | grep -o '[0-9]*$' || true)
  if [ -n "$n" ] && [ $((10#$n % 2)) -eq 1 ]; then ln -s "$f" "$WORK/tune/"; else ln -s "$f" "$WORK/held/"; fi
done
# scikit-image's real photos of neither cats nor dogs (chelsea, a cat, and the drawings left out).
if [ ! -d "$WORK/sk/skimage" ]; then
  pip download --no-deps -d "$WORK/pkgs" scikit-image==0.26.0
  (cd "$WORK" && mkdir -p sk && cd sk && unzip -o -q ../pkgs/scikit_image*.whl 'skimage/data/*')
fi
for x in astronaut brick camera cell clock_motion coffee coins grass gravel hubble_deep_field ihc \
  moon motorcycle_left page retina rocket text; do
  cp "$WORK"/sk/skimage/data/$x.* "$WORK/skimage/"
done
# Kaggle's test photos in class folders (test_labels.csv: 1 = dog), to measure accuracy and
# calibration; nothing is chosen on them.
tail -n +2 "$DATA/dogscats/test_labels.csv" | tr -d '\r' | while IFS=, read -r id label; do
  c=cat; [ "$label" = "1" ] && c=dog
  ln -s "$DATA/dogscats/test/$id.jpg" "$WORK/testlab/$c/$id.jpg"
done

UNKNOWN=(--unknown "$WORK/tune" --unknown "$WORK/held" --unknown "$WORK/skimage")
"$B" train "$DATA/dogscats/train" --weights "$W" --out "$WORK/all.vggtune" --device cpu
"$B" bench-unknown "$WORK/all.vggtune" --known "$WORK/testlab" --valid "${UNKNOWN[@]}" --device cpu \
  > "$WORK/all.md"

# 5 folds by a seeded hash of the file name: train on four fifths, measure on the fifth.
python3 - "$DATA/dogscats/train" "$WORK/cv" <<'EOF'
import hashlib, os, sys
src, out = sys.argv[1:3]
for name in sorted(os.listdir(src)):
    fold = int(hashlib.sha256(f"42:{name}".encode()).hexdigest(), 16) % 5
    for f in range(5):
        sub = f"heldout/{name.split('.')[0]}" if f == fold else "train"
        os.makedirs(f"{out}/f{f}/{sub}", exist_ok=True)
        if not os.path.exists(f"{out}/f{f}/{sub}/{name}"):
            os.symlink(f"{src}/{name}", f"{out}/f{f}/{sub}/{name}")
EOF
for f in 0 1 2 3 4; do
  "$B" train "$WORK/cv/f$f/train" --weights "$W" --out "$WORK/cv/f$f.vggtune" --device cpu
  "$B" bench-unknown "$WORK/cv/f$f.vggtune" --known "$WORK/cv/f$f/heldout" --valid "${UNKNOWN[@]}" \
    --device cpu > "$WORK/cv/f$f.md"
done
echo "reports: $WORK/all.md $WORK/cv/f*.md"
