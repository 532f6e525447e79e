#!/usr/bin/env python3
"""The bundle's anatomy check (asg-bundle's `anatomy_check`: an image whose lung masks are not
those of an upright frontal chest film gets no findings, regions or outlines), measured and set
through the product (`asg analyze`):

1. every film of the realcxr layout (all splits: the check is not a finding, and the widest range
   of real chest films is what it must let through) through `asg analyze --raw-outputs`; the
   lungs' areas, heights, separation and vertical overlap measured from the image model's lung
   masks exactly as asg-bundle's `LungLayout::measure` does;
2. with --write, each threshold set to MARGIN (default 0.5) times the smallest value any real
   film took, into the bundle's manifest.json;
3. the bundle (as it now is) run again over the real films, which must all pass, and over stress
   images made here in a temporary folder: films drawn at random (also shown as they are, for
   comparison) turned a quarter or half round, flipped
   upside down, cut in half, cropped to their centre, inverted, and pictures that are no film
   (blank, noise, a gradient, a checkerboard, a page of text): how many the check catches, and
   how many had a finding flagged without it.

  python3 scripts/anatomy_check.py --model BUNDLE [--write] [--margin 0.5]
      [--realcxr ../shared/realcxr] [--asg target/release/asg] [--json out.json]
  python3 scripts/anatomy_check.py --self-test

Needs numpy and Pillow. The stress images are made from research-only films: they stay in the
temporary folder.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

WARNING = "the model did not find the lungs of an upright frontal chest film"
KEYS = ["min_lung_area", "min_lung_height", "min_lung_separation", "min_lung_overlap"]


def layout(right, left, content):
    """asg-bundle's LungLayout::measure: masks (probabilities, side x side), the image's extent
    in mask cells (x0, y0, x1, y1) -> area (right, left), height (right, left), separation,
    overlap."""
    side = right.shape[0]
    x0, y0, x1, y1 = content
    w, h = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    ys, xs = np.mgrid[0:side, 0:side] + 0.5
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)

    def cells(mask):
        m = (mask > 0.5) & inside
        n = int(m.sum())
        if n == 0:
            return 0, 0.0, np.inf, -np.inf
        return n, float(xs[m].sum()), float(ys[m].min() - 0.5), float(ys[m].max() + 0.5)

    r, l = cells(right), cells(left)
    area = [c[0] / max(w * h, 1e-6) for c in (r, l)]
    height = [0.0 if c[0] == 0 else (c[3] - c[2]) / h for c in (r, l)]
    if r[0] == 0 or l[0] == 0:
        separation, overlap = 0.0, 0.0
    else:
        centre = lambda c: (c[1] / c[0] - x0) / w  # noqa: E731
        separation = centre(l) - centre(r)
        shared = min(r[3], l[3]) - max(r[2], l[2])
        overlap = max(shared / min(r[3] - r[2], l[3] - l[2]), 0.0)
    return {"area": area, "height": height, "separation": separation, "overlap": overlap}


def measures(analysis, anatomy):
    """The lung layout of one `asg analyze --raw-outputs` analysis."""
    out = {o["name"]: o for o in analysis.get("outputs", [])}
    if "anatomy_masks" not in out:
        return None
    o = out["anatomy_masks"]
    masks = np.asarray(o["values"], dtype=np.float32).reshape(o["shape"])[0]
    side = masks.shape[-1]
    lb = analysis["letterbox"]
    cell = side / lb["size"]
    content = (lb["offset_x"] * cell, lb["offset_y"] * cell,
               (lb["offset_x"] + lb["content_width"]) * cell,
               (lb["offset_y"] + lb["content_height"]) * cell)
    return layout(masks[anatomy.index("right lung")], masks[anatomy.index("left lung")], content)


def run_asg(asg, model, inputs, out, raw):
    cmd = [asg, "analyze", "--model", model, "--jobs", "2", "--pictures", "--json", out]
    cmd += ["--raw-outputs"] if raw else []
    subprocess.run(cmd + inputs, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {f[:-5]: os.path.join(out, f) for f in os.listdir(out)
            if f.endswith(".json") and f != "summary.json"}


def stress_images(realcxr, folder, per_kind=24, seed=3):
    """Stress pictures (see the module text) into `folder`: {kind: [paths]}."""
    from PIL import Image, ImageDraw, ImageOps

    records = [json.loads(line) for line in open(os.path.join(realcxr, "index.jsonl"))]
    rng = np.random.default_rng(seed)
    chosen = [records[i] for i in rng.choice(len(records), size=min(per_kind, len(records)), replace=False)]
    kinds = {}
    for r in chosen:
        im = Image.open(os.path.join(realcxr, r["image"])).convert("L")
        w, h = im.size
        made = {
            "as it is (the same films, for comparison)": im,
            "turned a quarter round": im.rotate(90, expand=True),
            "turned three quarters round": im.rotate(270, expand=True),
            "turned half round": im.rotate(180),
            "upside down": ImageOps.flip(im),
            "the left half": im.crop((0, 0, w // 2, h)),
            "the right half": im.crop((w // 2, 0, w, h)),
            "the lower half": im.crop((0, h // 2, w, h)),
            "the upper half": im.crop((0, 0, w, h // 2)),
            "the central quarter": im.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)),
            "inverted": ImageOps.invert(im),
        }
        for kind, picture in made.items():
            path = os.path.join(folder, f"{kind.replace(' ', '_')}__{r['id']}.png")
            picture.save(path)
            kinds.setdefault(kind, []).append(path)
    s = 512
    noise = np.random.default_rng(1).integers(0, 256, (s, s), dtype=np.uint8)
    checker = ((np.indices((s, s)) // 64).sum(0) % 2 * 255).astype(np.uint8)
    page = Image.new("L", (s, s), 255)
    draw = ImageDraw.Draw(page)
    for i in range(30):
        draw.text((20, 10 + 16 * i), f"Lorem ipsum dolor sit amet, consectetur adipiscing {i}", fill=0)
    pictures = {
        "blank": Image.fromarray(np.full((s, s), 128, np.uint8)),
        "noise": Image.fromarray(noise),
        "gradient": Image.fromarray(np.tile(np.linspace(0, 255, s).astype(np.uint8), (s, 1))),
        "checkerboard": Image.fromarray(checker),
        "text": page,
    }
    for name, picture in pictures.items():
        path = os.path.join(folder, f"no_film__{name}.png")
        picture.save(path)
        kinds.setdefault("no film (blank, noise, gradient, checkerboard, text)", []).append(path)
    return kinds


def self_test():
    # Two 3 x 5 lungs side by side in a 10 x 10 grid whose content is rows 2..8: as the Rust
    # unit test of LungLayout::measure.
    right = np.full((10, 10), 0.1, np.float32)
    left = right.copy()
    right[2:7, 1:4] = 0.9
    left[2:7, 6:9] = 0.9
    m = layout(right, left, (0.0, 2.0, 10.0, 8.0))
    assert abs(m["area"][0] - 15 / 60) < 1e-6, m
    assert abs(m["height"][1] - 5 / 6) < 1e-6, m
    assert abs(m["separation"] - 0.5) < 1e-6, m
    assert abs(m["overlap"] - 1.0) < 1e-6, m
    stacked = layout(np.pad(np.full((4, 4), 0.9), ((0, 6), (3, 3))),
                     np.pad(np.full((4, 4), 0.9), ((6, 0), (3, 3))), (0, 0, 10, 10))
    assert stacked["separation"] == 0.0 and stacked["overlap"] == 0.0, stacked
    print("anatomy_check.py self-test: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--realcxr", default="../shared/realcxr")
    ap.add_argument("--asg", default="target/release/asg")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--margin", type=float, default=0.5)
    ap.add_argument("--json")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not a.model:
        ap.error("--model is required")
    manifest_path = os.path.join(a.model, "manifest.json")
    manifest = json.load(open(manifest_path))
    anatomy = manifest.get("anatomy") or []
    if "right lung" not in anatomy or "left lung" not in anatomy:
        sys.exit(f"{a.model}: the image model has no lung masks: no anatomy check")
    images = os.path.join(a.realcxr, "images")
    with tempfile.TemporaryDirectory() as tmp:
        real = run_asg(a.asg, a.model, [images], os.path.join(tmp, "real"), raw=True)
        layouts = {k: measures(json.load(open(p)), anatomy) for k, p in real.items()}
        flat = {
            "min_lung_area": [min(m["area"]) for m in layouts.values()],
            "min_lung_height": [min(m["height"]) for m in layouts.values()],
            "min_lung_separation": [m["separation"] for m in layouts.values()],
            "min_lung_overlap": [m["overlap"] for m in layouts.values()],
        }
        ranges = {k: {"min": float(np.min(v)), "p1": float(np.percentile(v, 1)),
                      "median": float(np.median(v))} for k, v in flat.items()}
        print(f"{len(layouts)} real films: the lung masks' smallest values (1st percentile, median)")
        for k, r in ranges.items():
            print(f"  {k[4:]:16s} {r['min']:.3f} ({r['p1']:.3f}, {r['median']:.3f})")
        if a.write:
            check = {k: round(a.margin * ranges[k]["min"], 4) for k in KEYS}
            check["description"] = (
                f"{a.margin} times the smallest value the image model's lung masks took on the "
                f"{len(layouts)} real chest films of the realcxr layout (JSRT, ieee8023, Brixia; "
                "every split): scripts/anatomy_check.py --write")
            manifest["anatomy_check"] = check
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=2)
                f.write("\n")
            print(f"wrote anatomy_check into {manifest_path}: {check}")
        check = manifest.get("anatomy_check")
        if not check:
            print("the bundle has no anatomy_check (--write sets one)")
            return
        again = run_asg(a.asg, a.model, [images], os.path.join(tmp, "real-checked"), raw=False)
        gated_real = sorted(k for k, p in again.items()
                            if any(WARNING in w for w in json.load(open(p))["warnings"]))
        print(f"real films the check stops: {len(gated_real)} of {len(again)} {gated_real[:5]}")
        folder = os.path.join(tmp, "stress")
        os.makedirs(folder)
        kinds = stress_images(a.realcxr, folder)
        checked = run_asg(a.asg, a.model, [folder], os.path.join(tmp, "stress-out"), raw=True)
        # Without the check: the bundle's own thresholds on its raw finding logits, as the
        # analysis would have flagged them.
        thresholds = manifest["thresholds"]
        assessed = set(manifest.get("assessed") or manifest["findings"])
        rows = []
        print("stress images: caught by the check / a finding flagged without it")
        for kind, paths in kinds.items():
            caught = flagged = 0
            for p in paths:
                an = json.load(open(checked[os.path.basename(p)[:-4]]))
                caught += any(WARNING in w for w in an["warnings"])
                logits = next(o["values"] for o in an["outputs"] if o["name"] == "finding_logits")
                flagged += any(1 / (1 + np.exp(-x)) >= thresholds.get(f, 0.5)
                               for f, x in zip(manifest["findings"], logits) if f in assessed)
            rows.append({"kind": kind, "images": len(paths), "caught": caught, "flagged_without": flagged})
            print(f"  {kind:55s} {caught:3d} of {len(paths):3d}   {flagged:3d}")
        if a.json:
            json.dump({"check": check, "real_films": len(again), "real_stopped": gated_real,
                       "real_ranges": ranges, "stress": rows}, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
