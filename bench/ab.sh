#!/usr/bin/env bash
# A/B driver: runs vggtune bench and the references alternately (A B C A B C ...) on the same
# machine so that its noise falls on all of them, then prints every run's JSON line.
# usage: bash bench/ab.sh ROUNDS PYTHON   (PYTHON with torch and/or tensorflow-cpu installed)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
python=${2:-python3}
vggtune=${VGGTUNE_BIN:-target/debug/vggtune}
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  "$vggtune" bench --device cpu --repeats 2 --json-out "$out/vggtune-$r.json" >/dev/null
  echo "{\"round\": $r, \"vggtune\": $("$python" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$out/vggtune-$r.json")}"
  for fw in torch keras; do
    if "$python" -c "import ${fw/keras/tensorflow}" 2>/dev/null; then
      echo "{\"round\": $r, \"$fw\": $("$python" bench/reference.py "$fw" --repeats 2)}"
    fi
  done
done
