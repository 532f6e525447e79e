#!/usr/bin/env python3
"""Conformance of asg-dicom against independent decoders, on files nobody here wrote: the test
files inside the pydicom wheel (pydicom/data/test_files), the pydicom-data wheel (data_store/data),
both installed by scripts/setup.sh into .venv (nothing third-party is committed), and the cases in
../shared/dicom-cases when that folder is present.

For each file, frame 0: `asg dicom pixels FILE --stage stored` against pydicom's pixel_array
(pylibjpeg for JPEG, JPEG-LS and JPEG 2000), and for monochrome images `--stage modality` against
pydicom's apply_modality_lut. Where the two disagree or only one decodes, GDCM (python-gdcm, a
third decoder) is asked and its verdict printed. Prints a Markdown table and a summary; exits
non-zero if a lossless file that both decode differs, a lossy one differs by more than the
tolerance, or asg refuses a file pydicom decodes without an explanation in EXPLAINED.

    .venv/bin/python bench/conformance.py ASG_BINARY [OUT_DIR]
"""
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

LOSSY = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}
# Lossy decoders may round differently (IDCT implementations, and for 4:2:2 colour the chroma
# upsampling filter: libjpeg's "fancy" triangle filter vs jpeg-decoder's): max |difference| in
# stored units (of 255 for the 8-bit files here, of 4095 for the 12-bit JPGExtended.dcm).
LOSSY_TOLERANCE = 3

# Files pydicom decodes and asg-dicom refuses on purpose, with the reason (decided with GDCM and the
# standard). Anything refused that is not listed here fails the run.
EXPLAINED = {
    "J2K_pixelrep_mismatch.dcm": "Pixel Representation says signed, the JPEG 2000 codestream unsigned; "
    "pydicom follows the data set and GDCM the codestream (they differ by 8192): ambiguous, so refused",
}


def reference_modality(ref, ds):
    """pydicom's apply_modality_lut, and for enhanced multi-frame objects (no top-level rescale)
    the rescale of the frame's Pixel Value Transformation functional group (C.7.6.16.2.9), which
    apply_modality_lut does not look at."""
    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        return apply_modality_lut(ref, ds).astype(np.float64)
    for seq, index in (("PerFrameFunctionalGroupsSequence", 0), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(seq)
        if groups and len(groups) > index and "PixelValueTransformationSequence" in groups[index]:
            t = groups[index].PixelValueTransformationSequence[0]
            slope, intercept = float(t.get("RescaleSlope", 1)), float(t.get("RescaleIntercept", 0))
            return ref.astype(np.float64) * slope + intercept
    return apply_modality_lut(ref, ds).astype(np.float64)


def corpora() -> list[tuple[str, Path]]:
    """(corpus name, file) for every test file."""
    files = [("pydicom", f) for f in sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))]
    spec = importlib.util.find_spec("data_store")
    if spec is None or spec.origin is None:
        print("note: pydicom-data (data_store) not installed: its files are skipped", file=sys.stderr)
    else:
        files += [("pydicom-data", f) for f in sorted((Path(spec.origin).parent / "data").glob("*.dcm"))]
    shared = Path(__file__).resolve().parents[2] / "shared" / "dicom-cases"
    if shared.is_dir():
        files += [("dicom-cases", f) for f in sorted(shared.glob("*.dcm"))]
    else:
        print(f"note: {shared} absent: the shared DICOM cases are skipped", file=sys.stderr)
    return files


def read_reference(f: Path):
    """(dataset or None, transfer syntax text)."""
    try:
        ds = pydicom.dcmread(f)
        ts = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else "?"
        return ds, ts
    except pydicom.errors.InvalidDicomError:
        # No preamble and no meta header: pydicom reads such a data set only when forced
        # (it then guesses the transfer syntax, as asg-dicom does).
        try:
            return pydicom.dcmread(f, force=True), "no meta (read with force=True)"
        except Exception:  # noqa: BLE001
            return None, "?"
    except Exception:  # noqa: BLE001
        return None, "?"


def first_frame(ds, arr):
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    return arr[0] if frames > 1 else arr


def gdcm_stored(f: Path):
    """GDCM's decoded frame 0 as stored values, or an error text. In a child process: GDCM aborts
    the process on some inputs (an uncaught C++ exception)."""
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "gdcm.npy"
        p = subprocess.run([sys.executable, __file__, "--gdcm", str(f), str(npy)], capture_output=True, text=True)
        if p.returncode == 0 and npy.exists():
            return np.load(npy), None
        text = (p.stdout.strip() or p.stderr.strip() or f"exit {p.returncode}").splitlines()
        return None, ("GDCM aborts" if p.returncode < 0 else text[-1])[:90]


def gdcm_decode(f: Path):
    """GDCM's decoded frame 0 (this process)."""
    try:
        import gdcm
    except ImportError:
        return None, "python-gdcm not installed"
    r = gdcm.ImageReader()
    r.SetFileName(str(f))
    if not r.Read():
        return None, "GDCM cannot read it"
    image = r.GetImage()
    pf = image.GetPixelFormat()
    dims = [image.GetDimension(i) for i in range(image.GetNumberOfDimensions())]
    buf = image.GetBuffer()
    if buf is None:
        return None, "GDCM cannot decode it"
    raw = buf.encode("utf-8", errors="surrogateescape") if isinstance(buf, str) else bytes(buf)
    types = {
        gdcm.PixelFormat.UINT8: np.uint8, gdcm.PixelFormat.INT8: np.int8,
        gdcm.PixelFormat.UINT16: np.uint16, gdcm.PixelFormat.INT16: np.int16,
        gdcm.PixelFormat.UINT32: np.uint32, gdcm.PixelFormat.INT32: np.int32,
        gdcm.PixelFormat.UINT12: np.uint16, gdcm.PixelFormat.INT12: np.int16,
    }
    dtype = types.get(pf.GetScalarType())
    if dtype is None:
        return None, f"GDCM scalar type {pf.GetScalarTypeAsString()}"
    samples = pf.GetSamplesPerPixel()
    cols, rows = dims[0], dims[1]
    n = rows * cols * samples
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.size < n:
        return None, f"GDCM gave {arr.size} values, want {n}"
    arr = arr[:n]
    if samples > 1:
        if image.GetPlanarConfiguration() == 1:
            arr = arr.reshape(samples, rows, cols).transpose(1, 2, 0)
        else:
            arr = arr.reshape(rows, cols, samples)
        pi = str(image.GetPhotometricInterpretation())
        if pi.strip() not in ("RGB",):
            return None, f"GDCM keeps {pi.strip()}"
    else:
        arr = arr.reshape(rows, cols)
    return arr, None


def max_diff(a, b) -> int | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def arbitrate(f: Path, ours, ref) -> str:
    """GDCM's verdict on a disagreement."""
    g, err = gdcm_stored(f)
    if g is None:
        return f"GDCM: {err}"
    verdict = []
    for who, arr in (("asg", ours), ("pydicom", ref)):
        d = max_diff(g, arr)
        if d is not None:
            verdict.append(f"{who} {'=' if d == 0 else f'differs by {d}'}")
    return "GDCM: " + (", ".join(verdict) if verdict else f"decodes it ({g.shape}, {g.dtype})")


def run_asg(asg: str, f: Path, stage: str, npy: Path):
    p = subprocess.run([asg, "dicom", "pixels", str(f), "--stage", stage, "--npy", str(npy)], capture_output=True, text=True)
    if p.returncode == 0:
        return np.load(npy), None
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    return None, (errors[-1].split(": ", 2)[-1] if errors else p.stderr.strip()[-90:])[:110]


def main() -> int:
    asg = sys.argv[1]
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    files = corpora()
    rows, failures = [], []
    keys = ["exact", "within tolerance", "differs", "asg refuses (explained)", "asg refuses (unexplained)", "reference refuses", "both refuse"]
    counts = dict.fromkeys(keys, 0)
    modality = {"exact": 0, "differs": 0}
    for corpus, f in files:
        ds, ts = read_reference(f)
        ref, ref_err = None, None
        try:
            if ds is None:
                raise ValueError("unreadable")
            ref = first_frame(ds, ds.pixel_array)
        except Exception as e:  # noqa: BLE001
            ref_err = f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
        ours, ours_err = run_asg(asg, f, "stored", out / f"{corpus}-{f.stem}.npy")
        lossy = ts in LOSSY
        note = ""
        if ours_err and ref_err:
            result, key = f"both refuse (asg: {ours_err}; pydicom: {ref_err})", "both refuse"
        elif ours_err:
            why = EXPLAINED.get(f.name)
            key = "asg refuses (explained)" if why else "asg refuses (unexplained)"
            result = f"asg refuses: {ours_err}" + (f" — {why}" if why else "")
            note = arbitrate(f, None, ref)
            if not why:
                failures.append(f"{f.name} (refused)")
        elif ref_err:
            result, key = f"reference refuses: {ref_err}", "reference refuses"
            note = arbitrate(f, ours, None)
        else:
            d = max_diff(ours, ref)
            if d is None:
                result, key = f"differs: shape {ours.shape} vs {ref.shape}", "differs"
            elif d == 0:
                result, key = "exact", "exact"
            elif lossy and d <= LOSSY_TOLERANCE:
                result, key = f"max diff {d} (lossy, tolerance {LOSSY_TOLERANCE})", "within tolerance"
            else:
                result, key = f"differs: max diff {d}", "differs"
            if key == "differs":
                failures.append(f.name)
                note = arbitrate(f, ours, ref)
            # The modality stage (rescale or Modality LUT) of monochrome images.
            pi = str(getattr(ds, "PhotometricInterpretation", ""))
            if key in ("exact", "within tolerance") and pi.startswith("MONOCHROME"):
                mod, mod_err = run_asg(asg, f, "modality", out / f"{corpus}-{f.stem}-modality.npy")
                want = reference_modality(ref, ds)
                if mod_err is None and mod.shape == want.shape:
                    md = float(np.abs(mod.astype(np.float64) - want).max())
                    # f32 output: relative tolerance of single precision.
                    tol = 1e-5 * max(1.0, float(np.abs(want).max())) + (LOSSY_TOLERANCE * abs(float(getattr(ds, "RescaleSlope", 1) or 1)) if lossy else 0)
                    if md <= tol:
                        modality["exact"] += 1
                        result += "; modality ="
                    else:
                        modality["differs"] += 1
                        result += f"; modality differs by {md:g}"
                        failures.append(f"{f.name} (modality)")
                else:
                    modality["differs"] += 1
                    result += f"; modality: {mod_err or f'shape {mod.shape} vs {want.shape}'}"
                    failures.append(f"{f.name} (modality)")
        counts[key] += 1
        rows.append((corpus, f.name, ts + (" (lossy)" if lossy else ""), result + (f" [{note}]" if note else "")))
    print("| corpus | file | transfer syntax | result |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    print()
    print(f"modality stage (monochrome files both decode): equal {modality['exact']}, differs {modality['differs']}")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) + f" (of {len(files)} files; pydicom {pydicom.__version__})")
    # PALETTE COLOR: the grey the model sees must be the luma of pydicom's colour lookup.
    from pydicom.pixels import apply_color_lut
    for corpus, pal in files:
        ds, _ = read_reference(pal)
        if ds is None or str(getattr(ds, "PhotometricInterpretation", "")) != "PALETTE COLOR":
            continue
        npy = out / f"{corpus}-{pal.stem}-display.npy"
        got, err = run_asg(asg, pal, "display", npy)
        if err is not None:
            continue
        # pydicom reads big-endian 16-bit palette data as little endian (its LE and BE copies of
        # the same image then differ by a factor of 256): the little-endian twin is the reference.
        twin = pal.with_name(pal.name.replace("_expb", ""))
        if "_expb" in pal.name and twin.exists():
            ds, _ = read_reference(twin)
            print(f"PALETTE COLOR {pal.name}: compared with its little-endian twin {twin.name}")
        try:
            rgb = apply_color_lut(first_frame(ds, ds.pixel_array), ds).astype(np.float64)
        except Exception as e:  # noqa: BLE001
            print(f"PALETTE COLOR {pal.name}: pydicom's apply_color_lut fails ({e}); not compared")
            continue
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        scale = 65535.0 if (bits == 16 and rgb.max() > 255) else 255.0
        luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / scale
        diff = float(np.abs(got - luma).max())
        print(f"PALETTE COLOR {pal.name}: grey vs the luma of pydicom's apply_color_lut: max diff {diff:.2e}")
        if diff > 1e-4:
            failures.append(pal.name + " (palette grey)")
    if failures:
        print("FAIL: " + ", ".join(failures))
        return 1
    print("PASS: every file both decode agrees (lossless exactly), and every refusal is explained")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--gdcm":
        arr, err = gdcm_decode(Path(sys.argv[2]))
        if arr is None:
            print(err)
            sys.exit(1)
        np.save(sys.argv[3], arr)
        sys.exit(0)
    sys.exit(main())
