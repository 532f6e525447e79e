#!/usr/bin/env python3
"""Throughput of the Python package and the Ray example beside `asg analyze --jobs N`.

    python bench/python_bench.py ASG_BIN ASG_TRAIN [--n 32] [--size 1024] [--out DIR]

Run it with the Python of a venv where `pip install './python[ray]'` was done, and release
binaries (target/release/asg, asg-train) so that both sides are optimised builds. Makes N
phantom studies, then times on the same files: the CLI with 1 and 2 jobs, asg_cxr.Model serially
and from 2 Python threads, and python/examples/ray_archive.py with 2 actors on a local Ray
cluster (its time includes starting the cluster; the images/s it prints itself too). Prints a
Markdown table (images/s; the wall time of each run including model loading and, for the CLI,
process start).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asg_cxr

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("asg_bin")
    ap.add_argument("asg_train")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="asg-pybench-"))
    data = work / "set"
    if not data.exists():
        subprocess.run(
            [args.asg_train, "synth", "--n", str(args.n), "--seed", "31", "--size", str(args.size), "--out", str(data)],
            check=True,
            capture_output=True,
        )
    files = asg_cxr.find_files([str(data / "files")])
    n = len(files)
    rows = []

    for jobs in (1, 2):
        out = work / f"cli-{jobs}"
        t = timed(
            lambda: subprocess.run(
                [args.asg_bin, "analyze", str(data / "files"), "--json", str(out), "--jobs", str(jobs)],
                check=True,
                capture_output=True,
            )
        )
        rows.append((f"`asg analyze --jobs {jobs}`", t))

    def serial():
        model = asg_cxr.Model()
        for f in files:
            model.analyze_file(f)

    rows.append(("`asg_cxr.Model.analyze_file`, 1 thread", timed(serial)))

    def threaded():
        model = asg_cxr.Model()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(model.analyze_file, files))

    rows.append(("`asg_cxr.Model.analyze_file`, 2 threads", timed(threaded)))

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    out = work / "ray"
    t = timed(
        lambda: subprocess.run(
            [sys.executable, str(ROOT / "python/examples/ray_archive.py"), str(data / "files"), str(out), "--actors", "2"],
            check=True,
            capture_output=True,
            env=env,
        )
    )
    rows.append(("`ray_archive.py --actors 2` (local cluster, start included)", t))

    print(f"{n} phantom studies of {args.size} px, {os.cpu_count()} cores\n")
    print("| run | seconds | images/s |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} | {n / t:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
