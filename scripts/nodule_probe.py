#!/usr/bin/env python3
"""What a model sees of nodules, through the product (`asg analyze`), on the realcxr validation and
test films (the split rule of trainer/src/data/realcxr.rs):

1. real nodules by JSRT subtlety (1 extremely subtle ... 5 obvious): AUROC of the nodule
   probability, each subtlety's nodule films against the held-out JSRT normal films;
2. drawn nodules: each held-out JSRT normal film copied --copies times with one nodule drawn at
   full resolution (a sphere's projection, exponent 0.75, 10-30 mm at JSRT's 0.35 mm/px,
   centred where its whole square lies inside the SCR lung mask, peak contrast drawn from
   --contrast in display units), AUROC of the copies against the films as they were, at image
   level and at the most suspicious lung region. Drawn here in numpy, independently of the
   trainer's `augment.nodules`.

  python3 scripts/nodule_probe.py [--model BUNDLE] [--contrast 0.04 0.10] [--copies 3]
      [--realcxr ../shared/realcxr] [--asg target/release/asg]

Needs numpy and Pillow. The drawn films are JSRT pixels: they stay in a temporary folder.
"""
import os
import sys
import tempfile

import numpy as np
from PIL import Image

from probe_tools import analyze, auroc, held_out, probe_args


def draw(image, mask, contrast, rng):
    ys, xs = np.where(mask)
    radius = np.exp(rng.uniform(np.log(10.0), np.log(30.0))) / 0.35 / 2
    for _ in range(500):
        i = rng.integers(len(xs))
        cx, cy = xs[i], ys[i]
        y0, y1 = int(cy - radius - 2), int(cy + radius + 3)
        x0, x1 = int(cx - radius - 2), int(cx + radius + 3)
        if y0 >= 0 and x0 >= 0 and y1 <= mask.shape[0] and x1 <= mask.shape[1]:
            if mask[y0:y1, x0:x1].all():
                break
    else:
        return None
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    rho2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2
    bump = rng.uniform(*contrast) * np.clip(1 - rho2, 0, None) ** 0.75
    return np.clip(image + bump, 0, 1)


def scores(d):
    names = [x["name"] for x in d["findings"]]
    if "nodule" not in names:
        return None
    fi = names.index("nodule")
    image = d["findings"][fi]["probability"]
    region = max(
        (r["probabilities"][fi] for r in d["regions"] if "lung" in r["name"]), default=image
    )
    return image, region


def main():
    args = probe_args([0.04, 0.10])
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        films, kind = [], {}
        for r in held_out(args.realcxr, lambda r: r["source"] == "jsrt"):
            src = os.path.join(args.realcxr, r["image"])
            stem = os.path.splitext(os.path.basename(src))[0]
            if r.get("nodules"):
                films.append(src)
                kind[stem] = ("real", r["nodules"][0].get("subtlety"))
                continue
            image = np.asarray(Image.open(src).convert("L"), dtype=np.float32) / 255
            films.append(src)
            kind[stem] = ("normal", None)
            for k in range(args.copies):
                side = ["right_lung", "left_lung"][rng.integers(2)]
                mask = np.asarray(Image.open(os.path.join(args.realcxr, r["masks"][side]))) > 0
                drawn = draw(image, mask, args.contrast, rng)
                if drawn is None:
                    continue
                name = f"{stem}_drawn{k}"
                path = os.path.join(tmp, name + ".png")
                Image.fromarray((drawn * 255).round().astype(np.uint8)).save(path)
                films.append(path)
                kind[name] = ("drawn", None)
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        got = {}
        for stem, d in analyze(args.asg, args.model, films, out).items():
            if stem in kind:
                s = scores(d)
                if s is None:
                    print("the model does not offer nodule", file=sys.stderr)
                    return 1
                got[stem] = s
    normal = [got[s] for s, (k, _) in kind.items() if k == "normal" and s in got]
    real = {}
    for s, (k, subtlety) in kind.items():
        if k == "real" and s in got:
            real.setdefault(subtlety, []).append(got[s])
    drawn = [got[s] for s, (k, _) in kind.items() if k == "drawn" and s in got]
    level = lambda rows, i: [r[i] for r in rows]
    print(f"| films | count | image AUROC against {len(normal)} normals | lung region AUROC |")
    print("|---|---|---|---|")
    every = [x for v in real.values() for x in v]
    print(f"| real nodules, all | {len(every)} | {auroc(level(every, 0), level(normal, 0)):.3f} | {auroc(level(every, 1), level(normal, 1)):.3f} |")
    for s in sorted(real, key=str):
        v = real[s]
        print(f"| real nodules, subtlety {s} | {len(v)} | {auroc(level(v, 0), level(normal, 0)):.3f} | {auroc(level(v, 1), level(normal, 1)):.3f} |")
    c = args.contrast
    print(f"| drawn nodules, contrast {c[0]:.2f}-{c[1]:.2f} | {len(drawn)} | {auroc(level(drawn, 0), level(normal, 0)):.3f} | {auroc(level(drawn, 1), level(normal, 1)):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
