#!/usr/bin/env python3
"""Checks an exported model with tools nobody here wrote: onnx.checker (full check, shape
inference) and onnxruntime on the input that `examples/onnx_io.rs` wrote, against Candle and tract.

    python3 bench/onnx_check.py DIR      (pip: onnx onnxruntime numpy)

Prints the worst relative error per output and exits non-zero above 1e-4 (1e-6 absolute floor).
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

RTOL, ATOL = 1e-4, 1e-6


def main() -> int:
    d = Path(sys.argv[1])
    model = onnx.load(d / "image.onnx")
    onnx.checker.check_model(model, full_check=True)
    shapes = json.loads((d / "shapes.json").read_text())
    x = np.fromfile(d / "input.f32", dtype="<f4").reshape(shapes["input"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(d / "image.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {"image": x})))
    ok = True
    print(f"onnx {onnx.__version__} checker: ok; onnxruntime {ort.__version__}")
    print(f"{'output':<16} {'elements':>8} {'ort vs candle':>14} {'ort vs tract':>13}")
    for name, shape in shapes["outputs"].items():
        o = got[name].reshape(-1)
        row = [name, str(o.size)]
        for ref in ("candle", "tract"):
            r = np.fromfile(d / f"{ref}_{name}.f32", dtype="<f4")
            diff = np.abs(o - r)
            tol = RTOL * np.maximum(np.abs(o), np.abs(r)) + ATOL
            ok &= bool(np.all(diff <= tol)) and list(got[name].shape) == shape
            big = np.maximum(np.abs(o), np.abs(r)) > 1e-3
            worst = float((diff[big] / np.maximum(np.abs(o), np.abs(r))[big]).max()) if big.any() else 0.0
            row.append(f"{worst:.2e}")
        print(f"{row[0]:<16} {row[1]:>8} {row[2]:>14} {row[3]:>13}")
    print("PASS" if ok else "FAIL: above tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
