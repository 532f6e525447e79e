#!/usr/bin/env python3
"""HTJ2K (High-Throughput JPEG 2000) decoding against OpenJPH, an independent encoder and decoder.

A monochrome DICOM (a phantom from asg-train synth) is encoded by OpenJPH's ojph_compress
(Debian's openjph-tools) in the three HTJ2K transfer syntaxes: lossless (1.2.840.10008.1.2.4.201),
lossless with RPCL progression (.202) and lossy (.203, the irreversible 9/7 wavelet), wrapped into
DICOM with pydicom, and decoded by `asg dicom pixels --stage stored`. Lossless files must equal the
original exactly; the lossy one must equal OpenJPH's own decoding (ojph_expand) within 1.

    .venv/bin/python bench/htj2k_check.py ASG_BINARY SRC.dcm OUT_DIR
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import UID

SYNTAXES = {
    "HTJ2K lossless": ("1.2.840.10008.1.2.4.201", ["-reversible", "true"]),
    "HTJ2K lossless RPCL": ("1.2.840.10008.1.2.4.202", ["-reversible", "true", "-prog_order", "RPCL"]),
    "HTJ2K lossy": ("1.2.840.10008.1.2.4.203", ["-reversible", "false", "-qstep", "0.001"]),
}


def write_pgm(path: Path, arr: np.ndarray, bits: int) -> None:
    """Binary PGM, big-endian 16-bit samples for more than 8 bits."""
    rows, cols = arr.shape
    header = f"P5\n{cols} {rows}\n{(1 << bits) - 1}\n".encode()
    body = arr.astype(">u2").tobytes() if bits > 8 else arr.astype(np.uint8).tobytes()
    path.write_bytes(header + body)


def read_pgm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    fields, at = [], 0
    while len(fields) < 4:
        while data[at:at + 1].isspace():
            at += 1
        start = at
        while not data[at:at + 1].isspace():
            at += 1
        fields.append(data[start:at])
    at += 1
    cols, rows, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    dtype = ">u2" if maxval > 255 else np.uint8
    return np.frombuffer(data[at:], dtype=dtype, count=rows * cols).reshape(rows, cols).astype(np.int64)


def make(src: Path, out: Path, name: str) -> tuple[Path, Path]:
    """The HTJ2K DICOM file for `name` and its raw codestream."""
    uid, flags = SYNTAXES[name]
    ds = pydicom.dcmread(src)
    if ds.PixelRepresentation != 0 or ds.SamplesPerPixel != 1:
        raise SystemExit("htj2k_check: needs an unsigned monochrome source")
    arr = ds.pixel_array
    bits = int(ds.BitsStored)
    stem = name.replace(" ", "_")
    pgm, j2c = out / f"{stem}.pgm", out / f"{stem}.j2c"
    write_pgm(pgm, arr, bits)
    subprocess.run(["ojph_compress", "-i", str(pgm), "-o", str(j2c)] + flags, check=True, capture_output=True)
    ds.PixelData = encapsulate([j2c.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(uid)
    if "lossy" in name:
        ds.LossyImageCompression = "01"
    path = out / f"{stem}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, j2c


def main() -> int:
    asg, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    original = pydicom.dcmread(src).pixel_array.astype(np.int64)
    failures = []
    for name in SYNTAXES:
        path, j2c = make(src, out, name)
        npy = out / f"{path.stem}.npy"
        p = subprocess.run([asg, "dicom", "pixels", str(path), "--stage", "stored", "--npy", str(npy)], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{name}: asg refuses: {p.stderr.strip()[-200:]}")
            failures.append(name)
            continue
        ours = np.load(npy).astype(np.int64)
        expanded = out / f"{path.stem}.expanded.pgm"
        subprocess.run(["ojph_expand", "-i", str(j2c), "-o", str(expanded)], check=True, capture_output=True)
        theirs = read_pgm(expanded)
        vs_openjph = int(np.abs(ours - theirs).max())
        vs_original = int(np.abs(ours - original).max())
        lossless = "lossless" in name
        ok = vs_original == 0 if lossless else vs_openjph <= 1
        print(f"{name} ({SYNTAXES[name][0]}): max diff vs original {vs_original}, vs OpenJPH's ojph_expand {vs_openjph}: {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(name)
    if failures:
        print("FAIL: " + ", ".join(failures))
        return 1
    print("PASS: HTJ2K lossless equals the original, lossy equals OpenJPH's decoding within 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
