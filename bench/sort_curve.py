"""Tables and a plot of bench/sort.sh's runs.

usage: python3 bench/sort_curve.py OUT
Reads OUT/{two,three}-{queue,random}-SEED.jsonl (vggtune sort --oracle --json: one line per fit,
then one with what the threshold would sort), prints for each pool the mean held-out accuracy
(and the seeds' range) against the number of answers, the answers each seed needed to first
reach 98% (two classes) or 95% (three), the fit times, and what *Sort the rest* would sort at
the end; writes OUT/curve.svg (two classes: mean accuracy against answers, both orders).
"""
import glob
import json
import os
import sys

out = sys.argv[1]


def runs(pool, order):
    found = []
    for path in sorted(glob.glob(os.path.join(out, f"{pool}-{order}-*.jsonl"))):
        lines = [json.loads(l) for l in open(path) if l.strip()]
        points = [l for l in lines if "answers" in l]
        end = [l for l in lines if "threshold" in l]
        found.append((points, end[0] if end else None))
    return found


def first_at(points, target):
    for p in points:
        if p["accuracy"] is not None and p["accuracy"] >= target:
            return p["answers"]
    return None


curves = {}
for pool, target in [("two", 0.98), ("three", 0.95)]:
    print(f"\n### {pool} classes\n")
    table = {}
    for order in ["queue", "random"]:
        rs = runs(pool, order)
        if not rs:
            continue
        counts = [p["answers"] for p in rs[0][0]]
        rows = []
        for k, n in enumerate(counts):
            accs = [r[0][k]["accuracy"] for r in rs if k < len(r[0]) and r[0][k]["accuracy"] is not None]
            if accs:
                rows.append((n, sum(accs) / len(accs), min(accs), max(accs)))
        table[order] = rows
        curves[(pool, order)] = rows
        reach = [first_at(r[0], target) for r in rs]
        fits = [p["fit_secs"] for r in rs for p in r[0]]
        ends = [r[1] for r in rs if r[1]]
        print(f"{order}: first at {target:.0%} after {reach} answers (seeds); "
              f"fit at most {max(fits):.2f} s; at the end "
              + "; ".join(f"{e['sorted']} of {e['photos']} sorted at {e['threshold']:.0%}, {e['wrong']} wrong" for e in ends))
    print()
    print("| answers | queue: mean (min–max) | random: mean (min–max) |")
    print("| --- | --- | --- |")
    q, r = table.get("queue", []), table.get("random", [])
    for i in range(max(len(q), len(r))):
        cell = lambda rows: (f"{100*rows[i][1]:.1f}% ({100*rows[i][2]:.1f}–{100*rows[i][3]:.1f})" if i < len(rows) else "")
        n = (q[i] if i < len(q) else r[i])[0]
        print(f"| {n} | {cell(q)} | {cell(r)} |")

# The plot: two classes, mean accuracy against answers.
W, H, L, B = 640, 360, 60, 40
rows = [curves.get(("two", o), []) for o in ["queue", "random"]]
xmax = max((x[0] for rs in rows for x in rs), default=1) or 1
ymin = 0.8
def px(x): return L + (W - L - 20) * x / xmax
def py(y): return H - B - (H - B - 20) * (max(y, ymin) - ymin) / (1 - ymin)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
for y in [0.8, 0.85, 0.9, 0.95, 0.98, 1.0]:
    svg.append(f'<line x1="{L}" x2="{W-20}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L-6}" y="{py(y)+4:.1f}" text-anchor="end">{100*y:.0f}%</text>')
for x in range(0, int(xmax) + 1, 50):
    svg.append(f'<text x="{px(x):.1f}" y="{H-B+16}" text-anchor="middle">{x}</text>')
svg.append(f'<text x="{(L+W)/2}" y="{H-6}" text-anchor="middle">answers</text>')
svg.append(f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">held-out accuracy (mean of 3 seeds)</text>')
for rs, colour, name in zip(rows, ["#1f77b4", "#d62728"], ["queue (least sure first)", "random order"]):
    if rs:
        pts = " ".join(f"{px(n):.1f},{py(a):.1f}" for n, a, _, _ in rs)
        svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
for i, (colour, name) in enumerate(zip(["#1f77b4", "#d62728"], ["queue (least sure first)", "random order"])):
    svg.append(f'<line x1="{W-200}" x2="{W-180}" y1="{H-B-40+16*i}" y2="{H-B-40+16*i}" stroke="{colour}" stroke-width="2"/>')
    svg.append(f'<text x="{W-175}" y="{H-B-36+16*i}">{name}</text>')
svg.append("</svg>")
open(os.path.join(out, "curve.svg"), "w").write("\n".join(svg))
print(f"\nplot: {os.path.join(out, 'curve.svg')}")
