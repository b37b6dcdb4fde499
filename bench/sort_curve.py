"""Tables and a plot of bench/sort.sh's runs.

usage: python3 bench/sort_curve.py OUT
Reads OUT/{two,three}-{queue,random}-SEED.jsonl (vggtune sort --oracle --json: one line per fit,
then one with what the threshold would sort) and prints for each pool, against the number of
answers, the mean (and the seeds' range) of two accuracies: on the held-out photos scored on,
and on the pool's photos not answered yet (the ones *Sort the rest* acts on, by the oracle);
then the answers each seed needed to first reach the target (98% with two classes, 95% with
three) on each, the fit times, and what *Sort the rest* would sort at the end. Writes
OUT/curve.svg (two classes: both mean accuracies against answers, both orders).
"""
import glob
import json
import os
import sys

out = sys.argv[1]
MEASURES = [("accuracy", "held out"), ("pool_accuracy", "pool not answered")]


def runs(pool, order):
    found = []
    for path in sorted(glob.glob(os.path.join(out, f"{pool}-{order}-*.jsonl"))):
        lines = [json.loads(l) for l in open(path) if l.strip()]
        points = [l for l in lines if "answers" in l]
        end = [l for l in lines if "threshold" in l]
        found.append((points, end[0] if end else None))
    return found


def first_at(points, key, target):
    for p in points:
        if p.get(key) is not None and p[key] >= target:
            return p["answers"]
    return None


def mean_curve(rs, key):
    rows = []
    for k, n in enumerate(p["answers"] for p in rs[0][0]):
        vals = [r[0][k][key] for r in rs if k < len(r[0]) and r[0][k].get(key) is not None]
        if vals and n > 0:
            rows.append((n, sum(vals) / len(vals), min(vals), max(vals)))
    return rows


curves = {}
seeds = 0
for pool, target in [("two", 0.98), ("three", 0.95)]:
    print(f"\n### {pool} classes\n")
    table = {}
    for order in ["queue", "random"]:
        rs = runs(pool, order)
        if not rs:
            continue
        seeds = max(seeds, len(rs))
        for key, name in MEASURES:
            table[(order, key)] = curves[(pool, order, key)] = mean_curve(rs, key)
            reach = [first_at(r[0], key, target) for r in rs]
            print(f"{order}, {name}: first at {target:.0%} after {reach} answers (seeds)")
        fits = [p["fit_secs"] for r in rs for p in r[0]]
        ends = [r[1] for r in rs if r[1]]
        print(f"{order}: fit at most {max(fits):.2f} s; at the end "
              + "; ".join(f"{e['sorted']} of {e['photos']} sorted at {e['threshold']:.0%}, {e['wrong']} wrong" for e in ends))
    print()
    print("| answers | held out: queue | held out: random | pool not answered: queue | pool not answered: random |")
    print("| --- | --- | --- | --- | --- |")
    columns = [table.get((o, k), []) for k, _ in MEASURES for o in ["queue", "random"]]
    answers = sorted({row[0] for col in columns for row in col})
    for n in answers:
        cells = []
        for col in columns:
            row = next((r for r in col if r[0] == n), None)
            cells.append(f"{100*row[1]:.1f}% ({100*row[2]:.1f}–{100*row[3]:.1f})" if row else "")
        print(f"| {n} | " + " | ".join(cells) + " |")

# The plot: two classes, both mean accuracies against answers.
W, H, L, B = 640, 380, 60, 40
lines = [(curves.get(("two", o, k), []), colour, dash, f"{oname}, {kname}")
         for k, kname in MEASURES for o, oname, colour in
         [("queue", "queue", "#1f77b4"), ("random", "random order", "#d62728")]
         for dash in [("" if k == "accuracy" else "6,4")]]
xmax = max((x[0] for rs, *_ in lines for x in rs), default=1) or 1
ymin = 0.9
def px(x): return L + (W - L - 20) * x / xmax
def py(y): return H - B - (H - B - 20) * (max(y, ymin) - ymin) / (1 - ymin)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
for y in [0.9, 0.92, 0.94, 0.96, 0.98, 1.0]:
    svg.append(f'<line x1="{L}" x2="{W-20}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L-6}" y="{py(y)+4:.1f}" text-anchor="end">{100*y:.0f}%</text>')
for x in range(0, int(xmax) + 1, 25):
    svg.append(f'<text x="{px(x):.1f}" y="{H-B+16}" text-anchor="middle">{x}</text>')
svg.append(f'<text x="{(L+W)/2}" y="{H-6}" text-anchor="middle">answers</text>')
svg.append(f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">accuracy (mean of {seeds} seeds)</text>')
for i, (rs, colour, dash, name) in enumerate(lines):
    if rs:
        pts = " ".join(f"{px(n):.1f},{py(a):.1f}" for n, a, _, _ in rs)
        svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{pts}"/>')
    y = H - B - 80 + 16 * i
    svg.append(f'<line x1="{W-250}" x2="{W-225}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
    svg.append(f'<text x="{W-220}" y="{y+4}">{name}</text>')
svg.append("</svg>")
open(os.path.join(out, "curve.svg"), "w").write("\n".join(svg))
print(f"\nplot: {os.path.join(out, 'curve.svg')}")
