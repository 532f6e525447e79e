#!/usr/bin/env python3
"""What a model sees of lung opacity, through the product (`asg analyze`): each held-out JSRT
normal film (the realcxr validation and test splits) is copied --copies times with a patch of
ground-glass opacity drawn at full resolution into one lung's mid or lower third (SCR lung mask),
and the opacity probability of that lung zone on the copy is ranked against the same zone on the
normal films as they were (AUROC), beside how often the copy's zone scores above its own
original's. The Brixia zone AUROC of `asg-train eval` compares COVID-era films' zones with
one another; this asks whether the zone score answers to an opacity put into a film it never
saw, with everything else held fixed.

The patch, drawn here in numpy, independently of the trainer: a plateau of radius 25-45% of
the lung's width (1 - (d/r)^2)^1.5, mottled by smooth noise (0.5-1.0), confined to the lung by
its blurred mask, peak contrast drawn from --contrast in display units (0-1).

  python3 scripts/opacity_probe.py [--model BUNDLE] [--contrast 0.05 0.15] [--copies 3]
      [--realcxr ../shared/realcxr] [--asg target/release/asg]

Needs numpy and Pillow. The drawn films are JSRT pixels: they stay in a temporary folder.
"""
import os
import sys
import tempfile

import numpy as np
from PIL import Image, ImageFilter

from probe_tools import analyze, auroc, held_out, probe_args

ZONES = {"mid": (1 / 3, 2 / 3), "lower": (2 / 3, 1.0)}


def draw(image, mask, zone, contrast, rng):
    """The film with a ground-glass patch centred in the zone's rows of the lung mask, or None
    when the mask has no pixel there."""
    ys, xs = np.where(mask)
    if len(ys) == 0:
        return None
    top, bottom = ys.min(), ys.max()
    lo, hi = ZONES[zone]
    rows = (ys >= top + lo * (bottom - top)) & (ys <= top + hi * (bottom - top))
    if not rows.any():
        return None
    i = rng.choice(np.flatnonzero(rows))
    cx, cy = xs[i], ys[i]
    radius = rng.uniform(0.25, 0.45) * (xs.max() - xs.min() + 1)
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2
    plateau = np.clip(1 - d2, 0, None) ** 1.5
    coarse = rng.random((h // 24 + 2, w // 24 + 2)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32)
    texture = 0.5 + 0.5 * np.clip(texture, 0, 1)
    soft = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(6))
    inside = np.asarray(soft, dtype=np.float32) / 255
    bump = rng.uniform(*contrast) * plateau * texture * inside
    return np.clip(image + bump, 0, 1)


def opacity(d, region):
    """The image-level and the named region's opacity probability, or None without opacity."""
    names = [x["name"] for x in d["findings"]]
    if "opacity" not in names:
        return None
    fi = names.index("opacity")
    zone = next((r["probabilities"][fi] for r in d["regions"] if r["name"] == region), None)
    return d["findings"][fi]["probability"], zone


def main():
    args = probe_args([0.05, 0.15])
    rng = np.random.default_rng(args.seed)
    normal = lambda r: r["source"] == "jsrt" and not r.get("nodules") and "right_lung" in r["masks"]
    with tempfile.TemporaryDirectory() as tmp:
        films, drawn = [], {}
        for r in held_out(args.realcxr, normal):
            src = os.path.join(args.realcxr, r["image"])
            stem = os.path.splitext(os.path.basename(src))[0]
            films.append(src)
            image = np.asarray(Image.open(src).convert("L"), dtype=np.float32) / 255
            for k in range(args.copies):
                side = ["right", "left"][rng.integers(2)]
                zone = list(ZONES)[rng.integers(len(ZONES))]
                mask = np.asarray(Image.open(os.path.join(args.realcxr, r["masks"][f"{side}_lung"]))) > 0
                copy = draw(image, mask, zone, args.contrast, rng)
                if copy is None:
                    continue
                name = f"{stem}_ggo{k}"
                Image.fromarray((copy * 255).round().astype(np.uint8)).save(os.path.join(tmp, name + ".png"))
                films.append(os.path.join(tmp, name + ".png"))
                drawn[name] = (stem, f"{side} {zone} lung zone")
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        got = analyze(args.asg, args.model, films, out)
    originals = {s for s, _ in drawn.values()}
    if any(opacity(got[s], "") is None for s in originals if s in got):
        print("the model does not offer opacity", file=sys.stderr)
        return 1
    rows = []
    for name, (stem, region) in drawn.items():
        if name in got and stem in got:
            rows.append((region, opacity(got[name], region), opacity(got[stem], region)))
    # The same zone on every unaltered normal film is the negative set of its drawn copies.
    neg = {
        region: [opacity(got[s], region) for s in originals if s in got]
        for region in {r for r, _, _ in rows}
    }
    zone_pos = [d[1] for _, d, _ in rows if d[1] is not None]
    zone_neg = [n[1] for region, _, _ in rows for n in neg[region] if n[1] is not None]
    image_pos = [d[0] for _, d, _ in rows]
    image_neg = [opacity(got[s], "")[0] for s in originals if s in got]
    rose = sum(1 for _, d, o in rows if d[1] is not None and o[1] is not None and d[1] > o[1])
    c = args.contrast
    print(f"ground glass drawn at peak contrast {c[0]:.2f}-{c[1]:.2f} into {len(rows)} copies of {len(originals)} held-out JSRT normal films")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| zone AUROC: the drawn zone against the same zone on the normal films | {auroc(zone_pos, zone_neg):.3f} |")
    print(f"| image AUROC: the copies against the normal films | {auroc(image_pos, image_neg):.3f} |")
    print(f"| copies whose zone scores above the same zone of their own original | {rose} of {len(rows)} |")
    for zone in ZONES:
        pos = [d[1] for region, d, _ in rows if zone in region and d[1] is not None]
        negs = [n[1] for region, _, _ in rows if zone in region for n in neg[region] if n[1] is not None]
        print(f"| zone AUROC, {zone} zones only | {auroc(pos, negs):.3f} ({len(pos)} copies) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
