#!/usr/bin/env python3
"""Checks the whole ASG model's export with tools nobody here wrote: onnx.checker (full check,
shape inference) on image.onnx and text.onnx, and onnxruntime on the inputs that
`trainer/examples/asg_onnx_io.rs` wrote, against Candle's outputs.

    python3 bench/asg_onnx_check.py DIR      (pip: onnx onnxruntime numpy)

Prints the worst relative error per output; exits non-zero when any element differs by more than
1e-4 relative + 1e-5 absolute, or a shape differs.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

RTOL, ATOL = 1e-4, 1e-5


def session(path: Path) -> ort.InferenceSession:
    onnx.checker.check_model(onnx.load(path), full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> int:
    d = Path(sys.argv[1])
    index = json.loads((d / "shapes.json").read_text())
    shapes = index["shapes"]
    f32 = lambda name: np.fromfile(d / f"{name}.f32", dtype="<f4").reshape(shapes[name])
    image = session(d / "image.onnx")
    text = session(d / "text.onnx")
    got = dict(zip([o.name for o in image.get_outputs()], image.run(None, {"image": f32("image")})))
    ids = np.fromfile(d / "ids.i64", dtype="<i8").reshape(shapes["ids"])
    feeds = {"ids": ids, "mask": f32("mask"), "averaging": f32("averaging")}
    got.update(zip([o.name for o in text.get_outputs()], text.run(None, feeds)))
    print(f"onnx {onnx.__version__} checker: ok (image.onnx, text.onnx); onnxruntime {ort.__version__}")
    print(f"{'output':<20} {'shape':<16} {'worst rel. error vs Candle':>27}")
    ok = True
    for name in index["image_outputs"] + index["text_outputs"]:
        o = got[name]
        r = np.fromfile(d / f"candle_{name}.f32", dtype="<f4").reshape(shapes[name])
        same_shape = list(o.shape) == shapes[name]
        o, r = o.reshape(-1), r.reshape(-1)
        diff = np.abs(o - r)
        scale = np.maximum(np.abs(o), np.abs(r))
        ok &= same_shape and bool(np.all(diff <= RTOL * scale + ATOL))
        big = scale > 1e-3
        worst = float((diff[big] / scale[big]).max()) if big.any() else 0.0
        print(f"{name:<20} {str(shapes[name]):<16} {worst:>27.2e}{'' if same_shape else '  SHAPE DIFFERS'}")
    print("PASS" if ok else "FAIL: above tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
