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
    print(json.dumps(out))


if __name__ == "__main__":
    main()
