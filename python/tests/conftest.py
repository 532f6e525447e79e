"""Fixtures: the CLI binaries (ASG_BIN, ASG_TRAIN: target/debug/asg and asg-train by default)
and phantom studies they make, so every test compares the package with the real CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary(env: str, name: str) -> Path:
    path = Path(os.environ.get(env, ROOT / "target" / "debug" / name))
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it (cargo build) or set {env}")
    return path


@pytest.fixture(scope="session")
def asg_bin() -> Path:
    return _binary("ASG_BIN", "asg")


@pytest.fixture(scope="session")
def asg_train() -> Path:
    return _binary("ASG_TRAIN", "asg-train")


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory, asg_train) -> Path:
    """Four phantom studies (DICOM, report per study) in the MIMIC-CXR layout, and a junk file."""
    out = tmp_path_factory.mktemp("phantoms")
    subprocess.run(
        [str(asg_train), "synth", "--n", "4", "--seed", "11", "--size", "384", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    (out / "files" / "junk.dcm").write_bytes(b"not a DICOM file")
    return out / "files"


@pytest.fixture(scope="session")
def model():
    import asg_cxr

    return asg_cxr.Model()


def run_cli(asg_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(asg_bin), *args], capture_output=True, text=True)


def without_timings(value):
    """A result with its timings taken out (they differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "timings"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def assert_same_json(a, b, where: str = "$") -> None:
    """Equal JSON values, numbers compared as float32 (the Rust side's precision: the CLI prints
    the shortest float32 text, Python holds the float32 value exactly as a float)."""
    import numpy as np

    if isinstance(a, dict) and isinstance(b, dict):
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_json(x, y, f"{where}[{i}]")
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        assert a == b, f"{where}: {a!r} != {b!r}"
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            assert a == b, f"{where}: {a} != {b}"
        else:
            fa, fb = np.float32(a), np.float32(b)
            assert fa == fb or (math.isnan(fa) and math.isnan(fb)), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def load_json(path: Path):
    return json.loads(path.read_text())
