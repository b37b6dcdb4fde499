"""Recall and precision of `vggtune check --json` on a folder made by bench/plant.sh.

usage: python3 bench/plant_score.py OUT.planted check.json
A planted duplicate is found when a duplicate finding names it or names it as its twin; every
other kind when a finding of that kind names the file (a leak: by its path in the folder
checked against). Precision: the share of a kind's
findings that are planted problems of that kind.
"""
import json
import os
import sys

planted_path, check_path = sys.argv[1:3]
planted = {}
for line in open(planted_path):
    kind, name = line.split()
    planted.setdefault(kind, set()).add(name)
check = json.load(open(check_path))
found = {}
for f in check["findings"]:
    twin = os.path.basename(f["twin"]) if f.get("twin") else None
    found.setdefault(f["kind"], []).append((f["rel"], twin))
print(f"{check['summary']} ({check['secs']:.1f} s)")
print("| kind | planted | found | recall | findings | precision |")
print("| --- | --- | --- | --- | --- | --- |")
for kind in ["wrong-label", "duplicate", "no-class", "unusable", "leak"]:
    names = planted.get(kind, set())
    findings = found.get(kind, [])
    hit = {n for n in names if any(n in (rel, twin) for rel, twin in findings)}
    right = [x for x in findings if x[0] in names or x[1] in names]
    recall = len(hit) / max(1, len(names))
    precision = len(right) / max(1, len(findings))
    print(f"| {kind} | {len(names)} | {len(hit)} | {100 * recall:.0f}% | {len(findings)} | {100 * precision:.0f}% |")
    missed = sorted(names - hit)
    wrong = [x[0] for x in findings if x not in right]
    if missed:
        print(f"  missed: {' '.join(missed)}")
    if wrong:
        print(f"  not planted: {' '.join(wrong)}")
order = [f["rel"] for f in check["findings"] if f["kind"] == "wrong-label"]
ranks = sorted(order.index(n) + 1 for n in planted.get("wrong-label", ()) if n in order)
print(f"planted mislabels at ranks {ranks} of {len(order)} wrong-label findings")
