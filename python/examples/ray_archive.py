#!/usr/bin/env python3
"""Analyse a DICOM archive on Ray: the same outputs as `asg analyze IN_DIR --json OUT_DIR`.

    python ray_archive.py IN_DIR OUT_DIR [--address ADDR] [--actors N] [--batch-size B]

The files are chosen as `asg analyze` chooses them (asg_cxr.find_files) and listed with their
sizes: a file over asg_cxr.MAX_FILE_BYTES is a failure and is never read. Ray Data reads the
others (read_binary_files) and analyses them in a pool of actors that each load the model once
(the embedded default, or --model BUNDLE). Each actor writes its results' JSON into OUT_DIR and
sends the driver only a digest (a few hundred bytes: study, present findings, warnings, report
counts) or the error. The driver then gives the files their final names (<stem>.json, <stem>-2.json
for repeated stems, in input order, as the CLI does) and writes summary.json with the studies, the
failures and the images of other modalities skipped (asg_cxr.NotARadiographError).

Without --address a local Ray cluster is started on this machine; with --address (e.g.
ray://head:10001 or auto) the same script runs on a real cluster unchanged. IN_DIR and OUT_DIR
must then be paths every node sees (a shared file system). Exit status 1 if any input failed,
as the CLI's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import asg_cxr
import ray

PARTS = ".asg-parts"


class Analyzer:
    """A Ray actor: loads the model once, analyses batches of files."""

    def __init__(self, out_dir: str, model: str | None, names: dict[str, tuple[int, str]]):
        self.model = asg_cxr.Model(model)
        self.parts = Path(out_dir) / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        self.names = names

    def __call__(self, batch: dict) -> dict:
        index, ok, skipped, error, digest = [], [], [], [], []
        for path, data in zip(batch["path"], batch["bytes"]):
            i, name = self.names[_key(path)]
            index.append(i)
            try:
                result = self.model.analyze(bytes(data), name=name)
            except (asg_cxr.AsgError, OSError, ValueError) as e:
                ok.append(False)
                # Another modality's image (a CT or MR series in the archive) is skipped, not
                # failed, as the CLI does.
                skipped.append(isinstance(e, asg_cxr.NotARadiographError))
                error.append(str(e))
                digest.append("")
                continue
            part = self.parts / f"{i}.json"
            tmp = part.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=2))
            tmp.replace(part)
            ok.append(True)
            skipped.append(False)
            error.append("")
            digest.append(json.dumps(asg_cxr.digest(result)))
        return {"index": index, "ok": ok, "skipped": skipped, "error": error, "digest": digest}


def _key(path: str) -> str:
    """The absolute local path Ray Data reports a file under (with or without a scheme)."""
    for scheme in ("local://", "file://"):
        if path.startswith(scheme):
            path = path[len(scheme) :]
    return os.path.abspath(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("in_dir", help="a folder of DICOM files (searched recursively), or a DICOMDIR")
    ap.add_argument("out_dir", help="where <stem>.json per file and summary.json go")
    ap.add_argument("--address", help="a running Ray cluster (default: start a local one)")
    ap.add_argument("--actors", type=int, default=2, help="analysis actors (one CPU each)")
    ap.add_argument("--batch-size", type=int, default=4, help="files per actor call")
    ap.add_argument("--model", help="a bundle folder or tar file (default: the embedded one)")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    files = asg_cxr.find_files([args.in_dir])
    if not files:
        print(f"no DICOM files found in {args.in_dir}", file=sys.stderr)
        return 1
    failures: dict[int, str] = {}
    skips: dict[int, str] = {}
    readable: dict[str, tuple[int, str]] = {}
    for i, f in enumerate(files):
        try:
            size = os.stat(f).st_size
        except OSError as e:
            failures[i] = f"{f}: {e.strerror}"
            continue
        if size > asg_cxr.MAX_FILE_BYTES:
            failures[i] = f"{f}: {size} bytes, more than the {asg_cxr.MAX_FILE_BYTES} allowed"
        else:
            readable[_key(f)] = (i, f)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digests: dict[int, dict] = {}
    if readable:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # Reading is I/O: its tasks take no CPU, so that the actors (one CPU each) can hold every
        # CPU of a small machine without starving the reads (a deadlock otherwise).
        ds = ray.data.read_binary_files(
            list(readable), include_paths=True, ray_remote_args={"num_cpus": 0}
        )
        results = ds.map_batches(
            Analyzer,
            fn_constructor_args=(str(out.resolve()), args.model, readable),
            batch_size=args.batch_size,
            compute=ray.data.ActorPoolStrategy(size=args.actors),
            num_cpus=1,
            batch_format="numpy",
        )
        for row in results.iter_rows():
            i = int(row["index"])
            if row["ok"]:
                digests[i] = json.loads(row["digest"])
            elif row["skipped"]:
                skips[i] = str(row["error"])
            else:
                failures[i] = str(row["error"])
        ray.shutdown()

    # Final names over the analysed files in input order (the CLI's rule), then the summary.
    done = sorted(digests)
    for i, name in zip(done, asg_cxr.output_names([files[i] for i in done])):
        (out / PARTS / f"{i}.json").replace(out / name)
    try:
        (out / PARTS).rmdir()
    except OSError:
        pass
    summary = {
        "studies": asg_cxr.summarise([digests[i] for i in done]),
        "failed": [{"file": files[i], "error": failures[i]} for i in sorted(failures)],
        "skipped": [{"file": files[i], "reason": skips[i]} for i in sorted(skips)],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    seconds = time.perf_counter() - start
    print(
        f"analysed {len(done)} of {len(files)} files in {seconds:.1f} s "
        f"({len(done) / seconds:.2f} images/s, {args.actors} actors)",
        file=sys.stderr,
    )
    for i in sorted(skips):
        print(f"skipped: {skips[i]}", file=sys.stderr)
    for i in sorted(failures):
        print(f"failed: {failures[i]}", file=sys.stderr)
    if not done and skips and not failures:
        print(f"none of the {len(files)} inputs is a radiograph", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
