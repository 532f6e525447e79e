#!/usr/bin/env python3
"""Conformance of asg-dicom against an independent decoder, on files nobody here wrote: the test
files shipped inside the pydicom wheel (pydicom/data/test_files, installed by scripts/setup.sh into
.venv; nothing third-party is committed).

For each file: `asg dicom pixels FILE --stage stored --npy OUT` against pydicom's pixel_array
(frame 0; pydicom with pylibjpeg for JPEG and JPEG 2000). Prints a Markdown table (file, transfer
syntax, result) and a summary; exits non-zero if a lossless file that both decode differs, or a
lossy one differs by more than the tolerance.

    .venv/bin/python bench/conformance.py ASG_BINARY [OUT_DIR]
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file  # noqa: F401  (ensures the data package is present)

LOSSY = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}
# Lossy decoders may round differently (IDCT implementations, and for 4:2:2 colour the chroma
# upsampling filter: libjpeg's "fancy" triangle filter vs jpeg-decoder's): max |difference| in
# stored units (of 255 for the 8-bit files here).
LOSSY_TOLERANCE = 3


def main() -> int:
    asg = sys.argv[1]
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    files = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))
    rows, failures = [], []
    counts = {"exact": 0, "within tolerance": 0, "differs": 0, "asg refuses": 0, "reference refuses": 0, "both refuse": 0}
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            ts = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else "?"
        except pydicom.errors.InvalidDicomError:
            # No preamble and no meta header: pydicom reads such a data set only when forced
            # (it then guesses the transfer syntax, as asg-dicom does).
            try:
                ds = pydicom.dcmread(f, force=True)
                ts = "no meta (read with force=True)"
            except Exception:  # noqa: BLE001
                ds, ts = None, "?"
        except Exception as e:  # noqa: BLE001
            ds, ts = None, "?"
        ref, ref_err = None, None
        try:
            arr = ds.pixel_array if ds is not None else None
            if arr is None:
                raise ValueError("unreadable")
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            ref = arr[0] if frames > 1 else arr
        except Exception as e:  # noqa: BLE001
            ref_err = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        npy = out / (f.stem + ".npy")
        p = subprocess.run([asg, "dicom", "pixels", str(f), "--stage", "stored", "--npy", str(npy)], capture_output=True, text=True)
        errors = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
        ours_err = None if p.returncode == 0 else (errors[-1].split(": ", 2)[-1] if errors else p.stderr.strip()[-90:])[:100]
        lossy = ts in LOSSY
        if ours_err and ref_err:
            result, key = f"both refuse (asg: {ours_err})", "both refuse"
        elif ours_err:
            result, key = f"asg refuses: {ours_err}", "asg refuses"
        elif ref_err:
            result, key = f"reference refuses: {ref_err}", "reference refuses"
        else:
            ours = np.load(npy)
            if ours.shape != ref.shape:
                result, key = f"differs: shape {ours.shape} vs {ref.shape}", "differs"
            else:
                diff = int(np.abs(ours.astype(np.int64) - ref.astype(np.int64)).max())
                if diff == 0:
                    result, key = "exact", "exact"
                elif lossy and diff <= LOSSY_TOLERANCE:
                    result, key = f"max diff {diff} (lossy, tolerance {LOSSY_TOLERANCE})", "within tolerance"
                else:
                    result, key = f"differs: max diff {diff}", "differs"
            if key == "differs":
                failures.append(f.name)
        counts[key] += 1
        rows.append((f.name, ts + (" (lossy)" if lossy else ""), result))
    print("| file | transfer syntax | result |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    print()
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) + f" (of {len(files)} files; pydicom {pydicom.__version__})")
    # PALETTE COLOR: the grey the model sees must be the luma of pydicom's colour lookup.
    from pydicom.pixels import apply_color_lut
    pal = Path(pydicom.__file__).parent / "data" / "test_files" / "examples_palette.dcm"
    npy = out / "palette_display.npy"
    p = subprocess.run([asg, "dicom", "pixels", str(pal), "--stage", "display", "--npy", str(npy)], capture_output=True, text=True)
    if p.returncode == 0:
        ds = pydicom.dcmread(pal)
        rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)
        scale = 65535.0 if rgb.max() > 255 else 255.0
        luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / scale
        diff = float(np.abs(np.load(npy) - luma).max())
        print(f"PALETTE COLOR grey vs the luma of pydicom's apply_color_lut: max diff {diff:.2e}")
        if diff > 1e-4:
            failures.append(pal.name + " (palette grey)")
    if failures:
        print("FAIL: decoded differently from pydicom: " + ", ".join(failures))
        return 1
    print("PASS: every file both decode agrees (lossless exactly)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
