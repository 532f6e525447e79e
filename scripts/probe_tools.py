"""Helpers the analysis scripts share (scripts/nodule_probe.py, scripts/opacity_probe.py,
scripts/plugin_boxes.py): the held-out realcxr records, a run of `asg analyze` over files, and the
AUROC as a Mann-Whitney count (ties count half)."""
import argparse
import json
import os
import subprocess

from realcxr_split import split_of


def probe_args(contrast):
    """The probes' shared options, `--contrast` defaulting to `contrast` (display units)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--realcxr", default="../shared/realcxr")
    ap.add_argument("--asg", default="target/release/asg")
    ap.add_argument("--model")
    ap.add_argument("--contrast", type=float, nargs=2, default=list(contrast))
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def auroc(pos, neg):
    """The chance that a positive scores above a negative, ties counted half; NaN without both."""
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def held_out(realcxr, keep=lambda r: True):
    """The realcxr records of the validation and test splits that `keep` accepts."""
    with open(os.path.join(realcxr, "index.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if split_of(r["patient_group"]) != "train" and keep(r):
                yield r


def analyze(asg, model, files, out, jobs=2):
    """Runs `asg analyze --json out` over files (with --model when given); returns
    {file stem: the analysis JSON} for the files it wrote."""
    cmd = [asg, "analyze", "--jobs", str(jobs), "--json", out] + list(files)
    if model:
        cmd[2:2] = ["--model", model]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = {}
    for name in os.listdir(out):
        if name.endswith(".json"):
            with open(os.path.join(out, name)) as f:
                got[name[: -len(".json")]] = json.load(f)
    return got
