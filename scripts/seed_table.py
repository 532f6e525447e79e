#!/usr/bin/env python3
"""Recipes compared over seeds (scripts/train-seeds.sh).

  seed_table.py EVAL.json ...         one row per run (an `asg-train eval --json` report of the
                                      validation and test splits pooled), then each recipe's mean
                                      and spread; a run's recipe is its folder's name without its
                                      `-s<seed>` ending (target/seeds/real160l-s2 -> real160l)
  seed_table.py --with-seed S CONFIG  CONFIG's text with `seed = S` in its [train] table
  seed_table.py --self-test           checks the two above on hand-made cases (scripts/test.sh)

Standard library only.
"""

import json
import math
import re
import statistics
import sys
from pathlib import Path

# The three findings AUROCs whose mean the ship rule reads (models/default/MODEL_CARD.md).
FINDINGS = ("zones", "nodules", "abnormal")


def with_seed(config_text: str, seed: int) -> str:
    """The configuration with its [train] table's seed set (replaced, or added first in it)."""
    lines = config_text.splitlines()
    out, in_train, done = [], False, False
    for line in lines:
        header = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if header:
            if in_train and not done:
                out.append(f"seed = {seed}")
                done = True
            in_train = header.group(1).strip() == "train"
            out.append(line)
            continue
        if in_train and re.match(r"^\s*seed\s*=", line):
            out.append(f"seed = {seed}")
            done = True
            continue
        out.append(line)
    if not done:
        if not in_train:
            out.append("[train]")
        out.append(f"seed = {seed}")
    return "\n".join(out) + "\n"


def measures(report: dict) -> dict:
    """The measures the ship rule reads, from one evaluation report."""
    r = report.get("real_films") or {}
    m = {
        "normals": (r.get("normal_clean"), r.get("normal_films")),
        "stressed": (r.get("stressed_normal_clean"), r.get("stressed_normal_films")),
        "zones": r.get("zone_opacity_auroc"),
        "nodules": r.get("nodule_auroc"),
        "abnormal": r.get("abnormal_auroc"),
    }
    vals = [m[k] for k in FINDINGS]
    m["mean3"] = sum(vals) / 3 if all(v is not None for v in vals) else None
    jsrt = (r.get("box_iou_by_source") or {}).get("jsrt", {}).get("values", {})
    m["lungs"] = mean_of(jsrt.get("right lung"), jsrt.get("left lung"))
    m["heart"] = jsrt.get("cardiac silhouette")
    m["clavicles"] = mean_of(jsrt.get("right clavicle"), jsrt.get("left clavicle"))
    pooled = (report.get("box_iou") or {}).get("values") or {}
    m["cp angles"] = mean_of(
        pooled.get("right costophrenic angle"), pooled.get("left costophrenic angle")
    )
    m["hemidiaphragms"] = mean_of(
        pooled.get("right hemidiaphragm"), pooled.get("left hemidiaphragm")
    )
    return m


def mean_of(*values):
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def recipe_of(path: Path) -> str:
    return re.sub(r"-s\d+$", "", path.parent.name)


def fmt(v, digits=3):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table(paths):
    runs = []
    for p in paths:
        p = Path(p)
        try:
            report = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            print(f"seed_table: skipping {p}: {e}", file=sys.stderr)
            continue
        runs.append((recipe_of(p), p.parent.name, measures(report)))
    if not runs:
        print("seed_table: no evaluation read", file=sys.stderr)
        return 1
    cols = [
        "zones", "nodules", "abnormal", "mean3", "lungs", "heart", "clavicles", "cp angles",
        "hemidiaphragms",
    ]
    head = "| run | normals clean | stressed clean | " + " | ".join(cols) + " |"
    print(head)
    print("|" + "---|" * (3 + len(cols)))
    for _, name, m in runs:
        n, s = m["normals"], m["stressed"]
        print(
            f"| {name} | {n[0]} of {n[1]} | {s[0]} of {s[1]} | "
            + " | ".join(fmt(m[c]) for c in cols)
            + " |"
        )
    print()
    print("| recipe | seeds | normals clean (all seeds) | " + " | ".join(f"{c} mean ± sd" for c in cols) + " |")
    print("|" + "---|" * (3 + len(cols)))
    for recipe in sorted({r for r, _, _ in runs}):
        ms = [m for r, _, m in runs if r == recipe]
        clean = sum(m["normals"][0] or 0 for m in ms)
        films = sum(m["normals"][1] or 0 for m in ms)
        cells = []
        for c in cols:
            v = [m[c] for m in ms if m[c] is not None]
            if not v:
                cells.append("—")
            elif len(v) == 1:
                cells.append(fmt(v[0]))
            else:
                cells.append(f"{fmt(statistics.mean(v))} ± {fmt(statistics.stdev(v))}")
        print(f"| {recipe} | {len(ms)} | {clean} of {films} | " + " | ".join(cells) + " |")
    return 0


def self_test():
    """Hand cases: the seed replaced, added to an existing table, or added with its table; the
    measures of a hand-made report and a recipe's name."""
    assert with_seed("[model]\nx = 1\n[train]\nseed = 1\nlr = 2\n", 3) == (
        "[model]\nx = 1\n[train]\nseed = 3\nlr = 2\n"
    )
    assert with_seed("[train]\nlr = 2\n[loss]\ny = 1\n", 2) == "[train]\nlr = 2\nseed = 2\n[loss]\ny = 1\n"
    assert with_seed("[model]\nx = 1\n", 4) == "[model]\nx = 1\n[train]\nseed = 4\n"
    report = {
        "real_films": {
            "normal_clean": 9, "normal_films": 10, "stressed_normal_clean": 30,
            "stressed_normal_films": 40, "zone_opacity_auroc": 0.7, "nodule_auroc": 0.6,
            "abnormal_auroc": 0.8,
            "box_iou_by_source": {"jsrt": {"values": {
                "right lung": 0.9, "left lung": 0.8, "cardiac silhouette": 0.85,
                "right clavicle": 0.7, "left clavicle": None}}},
        }
    }
    m = measures(report)
    assert abs(m["mean3"] - 0.7) < 1e-12, m
    assert abs(m["lungs"] - 0.85) < 1e-12 and m["clavicles"] == 0.7 and m["heart"] == 0.85, m
    report["box_iou"] = {"values": {"right costophrenic angle": 0.4, "left costophrenic angle": 0.6}}
    m = measures(report)
    assert abs(m["cp angles"] - 0.5) < 1e-12 and m["hemidiaphragms"] is None, m
    assert measures({})["mean3"] is None
    assert recipe_of(Path("target/seeds/real160l-s12/eval.json")) == "real160l"
    print("seed_table: self-test passed")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    if len(argv) == 3 and argv[0] == "--with-seed":
        try:
            seed = int(argv[1])
        except ValueError:
            print(f"seed_table: seed {argv[1]!r} is not a whole number", file=sys.stderr)
            return 2
        sys.stdout.write(with_seed(Path(argv[2]).read_text(), seed))
        return 0
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    return table(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
