#!/usr/bin/env python3
"""The reference tools on the same work as plugin/examples/bench.rs: onnxruntime inference on the
bundle's image.onnx (1 thread, and its default threads) and pydicom decoding the same DICOM file.
Prints one JSON object of medians in ms.

    python3 bench/reference.py BUNDLE DICOM [RUNS]     (pip: onnxruntime pydicom numpy)
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
import pydicom


def median_ms(f, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    bundle, dicom = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    manifest = json.load(open(f"{bundle}/manifest.json"))
    s = manifest["input"]["size"]
    x = np.random.default_rng(0).standard_normal((1, 1, s, s), dtype=np.float32)
    out = {"onnxruntime_version": ort.__version__, "pydicom_version": pydicom.__version__}
    for threads in (1, 0):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        t = time.perf_counter()
        sess = ort.InferenceSession(f"{bundle}/{manifest['image_model']}", opts, providers=["CPUExecutionProvider"])
        load = (time.perf_counter() - t) * 1e3
        sess.run(None, {"image": x})  # warm-up, as the Rust side's first run is timed too
        key = "ort_1thread" if threads == 1 else "ort_default_threads"
        out[key + "_load_ms"] = load
        out[key + "_inference_ms"] = median_ms(lambda: sess.run(None, {"image": x}), runs)
    out["pydicom_decode_ms"] = median_ms(
        lambda: pydicom.dcmread(dicom).pixel_array.astype(np.float32), runs)

    # End to end with the reference tools: pydicom decode, rescale and VOI window, area resize
    # into the letterbox (numpy), normalise, onnxruntime on every output.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(f"{bundle}/{manifest['image_model']}", opts, providers=["CPUExecutionProvider"])
    mean, std = manifest["input"]["mean"], manifest["input"]["std"]

    def end_to_end():
        ds = pydicom.dcmread(dicom)
        px = ds.pixel_array.astype(np.float32)
        px = px * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
        c = float(np.atleast_1d(ds.WindowCenter)[0]) if "WindowCenter" in ds else float(px.mean())
        w = float(np.atleast_1d(ds.WindowWidth)[0]) if "WindowWidth" in ds else float(np.ptp(px) or 1)
        disp = np.clip((px - (c - 0.5)) / max(w - 1, 1) + 0.5, 0, 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            disp = 1 - disp
        h, wd = disp.shape
        f = max(h, wd) // s
        small = disp[: (h // f) * f, : (wd // f) * f].reshape(h // f, f, wd // f, f).mean(axis=(1, 3))
        canvas = np.zeros((s, s), np.float32)
        oy, ox = (s - small.shape[0]) // 2, (s - small.shape[1]) // 2
        canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small[:s, :s]
        x = ((canvas - mean) / std)[None, None].astype(np.float32)
        return sess.run(None, {"image": x})

    end_to_end()
    out["reference_end_to_end_ms"] = median_ms(end_to_end, runs)
    import resource
    out["reference_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
