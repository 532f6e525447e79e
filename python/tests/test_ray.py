"""The Ray example on a local cluster: its outputs equal `asg analyze IN_DIR --json OUT_DIR`'s."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, assert_same_json, load_json, run_cli, without_timings

EXAMPLE = ROOT / "python" / "examples" / "ray_archive.py"


def test_ray_example_outputs_equal_the_clis(asg_bin, phantoms, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install './python[ray]')")
    cli_out, ray_out = tmp_path / "cli", tmp_path / "ray"
    cli = run_cli(asg_bin, "analyze", str(phantoms), "--json", str(cli_out))
    assert cli.returncode != 0 and "junk.dcm" in cli.stderr  # the junk file fails, the rest is written
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), str(phantoms), str(ray_out), "--actors", "2", "--batch-size", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-3000:]  # one input failed, as with the CLI
    assert "analysed 4 of 5 files" in run.stderr, run.stderr[-3000:]
    names = sorted(p.name for p in cli_out.iterdir())
    assert names == sorted(p.name for p in ray_out.iterdir())
    assert len(names) == 5 and "summary.json" in names
    for name in names:
        assert_same_json(
            without_timings(load_json(ray_out / name)), without_timings(load_json(cli_out / name)), name
        )
    failed = load_json(ray_out / "summary.json")["failed"]
    assert [f["file"] for f in failed] == [str(phantoms / "junk.dcm")]
