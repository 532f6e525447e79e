"""Decode benchmark and dcmtk agreement, per transfer syntax, on one 2048 x 2048 phantom written by
asg-train synth and transcoded by dcmtk (and by pydicom + pylibjpeg for JPEG 2000). For each file:
asg-dicom in-process (trainer/../dicom/examples/decode_bench.rs), pydicom in-process (dcmread +
pixel_array from bytes), and dcmtk's decompressor as a process (it also writes its output file, so
its figure includes a write); then our stored values against dcmtk's decompression (read back by
pydicom). Prints a Markdown table.

Usage (from bench/decode_bench.sh): python bench/decode_bench.py SRC.dcm OUT_DIR DECODE_BENCH ASG
"""
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEG2000Lossless, ExplicitVRLittleEndian

REPEAT = 5


def run(cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def variants(src: Path, out: Path):
    v = {}
    v["explicit VR LE"] = src
    for name, flag in [("implicit VR LE", "+ti"), ("explicit VR BE", "+tb"), ("deflated", "+td")]:
        p = out / f"{name.replace(' ', '_')}.dcm"
        run(["dcmconv", flag, str(src), str(p)])
        v[name] = p
    p = out / "rle.dcm"
    run(["dcmcrle", str(src), str(p)])
    v["RLE"] = p
    p = out / "jpeg_lossless_sv1.dcm"
    run(["dcmcjpeg", "+e1", str(src), str(p)])
    v["JPEG lossless SV1"] = p
    p = out / "jpegls_lossless.dcm"
    run(["dcmcjpls", "+el", str(src), str(p)])
    v["JPEG-LS lossless"] = p
    # 8-bit version for JPEG baseline.
    ds = pydicom.dcmread(src)
    arr = (ds.pixel_array >> (int(ds.BitsStored) - 8)).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = arr.tobytes()
    if "WindowCenter" in ds:
        del ds.WindowCenter, ds.WindowWidth
    p8 = out / "explicit_8bit.dcm"
    ds.save_as(p8, enforce_file_format=True)
    p = out / "jpeg_baseline.dcm"
    run(["dcmcjpeg", "+eb", str(p8), str(p)])
    v["JPEG baseline (8-bit)"] = p
    # 12-bit lossy JPEG (extended, process 4); +sr keeps the 12-bit range as it is.
    p = out / "jpeg_extended_12bit.dcm"
    run(["dcmcjpeg", "+ee", "+sr", str(src), str(p)])
    v["JPEG extended (12-bit, lossy)"] = p
    ds = pydicom.dcmread(src)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    p = out / "j2k_lossless.dcm"
    ds.save_as(p, enforce_file_format=True)
    v["JPEG 2000 lossless"] = p
    # HTJ2K lossless, encoded by OpenJPH (bench/htj2k_check.py).
    sys.path.insert(0, str(Path(__file__).parent))
    import htj2k_check

    p, j2c = htj2k_check.make(src, out, "HTJ2K lossless")
    v["HTJ2K lossless"] = p
    CODESTREAMS[str(p)] = j2c
    return v


# HTJ2K file -> its raw codestream, for OpenJPH's decoder.
CODESTREAMS: dict[str, Path] = {}


def dcmtk_decompress(name: str, src: Path, dst: Path):
    tool = {
        "RLE": ["dcmdrle"],
        "JPEG lossless SV1": ["dcmdjpeg"],
        "JPEG baseline (8-bit)": ["dcmdjpeg"],
        "JPEG extended (12-bit, lossy)": ["dcmdjpeg"],
        "JPEG-LS lossless": ["dcmdjpls"],
        "JPEG 2000 lossless": None,
    }.get(name, ["dcmconv", "+te"])
    if name == "HTJ2K lossless":
        return ["ojph_expand", "-i", str(CODESTREAMS[str(src)]), "-o", str(dst.with_suffix(".pgm"))]
    if tool is None:
        return None
    return tool + [str(src), str(dst)]


def main() -> int:
    src, out, bench, asg = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    files = variants(src, out)
    ours = {}
    res = subprocess.run([bench, str(REPEAT)] + [str(p) for p in files.values()], capture_output=True, text=True, check=True)
    for line in res.stdout.splitlines():
        d = json.loads(line)
        ours[d["file"]] = d
    rows, failures = [], []
    for path in files.values():  # warm-up, as the Rust side does
        try:
            pydicom.dcmread(io.BytesIO(path.read_bytes())).pixel_array
        except Exception:  # noqa: BLE001
            pass
    for name, path in files.items():
        data = path.read_bytes()
        mb = len(data) / 1e6
        d = ours.get(str(path), {})
        t0 = time.perf_counter()
        for _ in range(REPEAT):
            ref = pydicom.dcmread(io.BytesIO(data)).pixel_array
        py_ms = (time.perf_counter() - t0) * 1000 / REPEAT
        # Like for like: asg-dicom's figure ends at f32 modality values, so does this one.
        t0 = time.perf_counter()
        for _ in range(REPEAT):
            ds = pydicom.dcmread(io.BytesIO(data))
            apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        py_f32_ms = (time.perf_counter() - t0) * 1000 / REPEAT
        cmd = dcmtk_decompress(name, path, out / f"{path.stem}.dcmtk.dcm")
        if cmd:
            t0 = time.perf_counter()
            for _ in range(REPEAT):
                run(cmd)
            dcmtk_ms = (time.perf_counter() - t0) * 1000 / REPEAT
            if cmd[0] == "ojph_expand":
                import htj2k_check

                dcmtk_px = htj2k_check.read_pgm(Path(cmd[-1]))
            else:
                dcmtk_px = pydicom.dcmread(cmd[-1]).pixel_array
        else:
            dcmtk_ms, dcmtk_px = None, None
        if "error" in d:
            agree = f"asg refuses: {d['error'][:60]}"
            asg_ms = None
        else:
            asg_ms = d["ms"]
            npy = out / f"{path.stem}.npy"
            subprocess.run([asg, "dicom", "pixels", str(path), "--stage", "stored", "--npy", str(npy)], check=True, capture_output=True)
            mine = np.load(npy).astype(np.int64)
            against = dcmtk_px if dcmtk_px is not None else ref
            diff = int(np.abs(mine - against.astype(np.int64)).max())
            who = ("OpenJPH" if name.startswith("HTJ2K") else "dcmtk") if dcmtk_px is not None else "pydicom"
            agree = f"exact vs {who}" if diff == 0 else f"max diff {diff} vs {who}"
            if diff and "baseline" not in name:
                failures.append(name)
        fmt = lambda ms: "n/a" if ms is None else f"{ms:.1f} ms ({mb / (ms / 1000):.0f} MB/s)"  # noqa: E731
        rows.append(f"| {name} | {mb:.2f} | {fmt(asg_ms)} | {fmt(py_f32_ms)} | {fmt(py_ms)} | {fmt(dcmtk_ms)} | {agree} |")
    print("| transfer syntax | file MB | asg-dicom (to f32 modality values) | pydicom 3.0.2 to f32 modality values | pydicom 3.0.2 pixel_array (stored values) | dcmtk, or OpenJPH for HTJ2K (process, writes a file) | pixels |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if failures:
        print("FAIL: lossless files decoded differently: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
