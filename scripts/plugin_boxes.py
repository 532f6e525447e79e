#!/usr/bin/env python3
"""Box IoU of the anatomy regions as the product gives them (`asg analyze`, after the plugin's
post-processing), against the boxes of the expert masks, on the realcxr validation and test
films (the split rule of trainer/src/data/realcxr.rs: FNV-1a of the patient group, 70/15/15).
`asg-train eval` measures the boxes the ONNX graph gives; this measures what a user gets.

  python3 scripts/plugin_boxes.py [--realcxr ../shared/realcxr] [--asg target/release/asg]
      [--model BUNDLE]

Needs numpy and Pillow. Prints, per source and structure, the mean IoU of the region's box and
of its outline's extent, and on how many films the two disagree (IoU below 0.97).
"""
import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image

from probe_tools import analyze, held_out

STRUCTURES = {
    "right lung": "right_lung",
    "left lung": "left_lung",
    "cardiac silhouette": "heart",
    "right clavicle": "right_clavicle",
    "left clavicle": "left_clavicle",
    "mediastinum": "cardiomediastinum",
}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realcxr", default="../shared/realcxr")
    ap.add_argument("--asg", default="target/release/asg")
    ap.add_argument("--model")
    args = ap.parse_args()
    records = {}
    files = []
    for r in held_out(args.realcxr, lambda r: bool(r["masks"])):
        path = os.path.join(args.realcxr, r["image"])
        records[os.path.splitext(os.path.basename(path))[0]] = r
        files.append(path)
    with tempfile.TemporaryDirectory() as out:
        stats = {}
        for stem, d in sorted(analyze(args.asg, args.model, files, out, jobs=1).items()):
            r = records.get(stem)
            if r is None:
                continue
            boxes = {x["name"]: x["bbox"] for x in d["regions"]}
            outlines = {a["name"]: a["rings"] for a in d["anatomy"]}
            for region, key in STRUCTURES.items():
                if key not in r["masks"] or region not in boxes or not outlines.get(region):
                    continue
                mask = np.asarray(Image.open(os.path.join(args.realcxr, r["masks"][key]))) > 0
                ys, xs = np.where(mask)
                if len(xs) == 0:
                    continue
                expert = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                pts = np.array([p for ring in outlines[region] for p in ring])
                extent = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
                stats.setdefault((r["source"], region), []).append(
                    (iou(boxes[region], expert), iou(extent, expert), iou(boxes[region], extent))
                )
    print("| source | structure | films | box IoU | outline extent IoU | films where they disagree |")
    print("|---|---|---|---|---|---|")
    for (source, region), v in sorted(stats.items()):
        v = np.array(v)
        print(f"| {source} | {region} | {len(v)} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | {int((v[:, 2] < 0.97).sum())} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
