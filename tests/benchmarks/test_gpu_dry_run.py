"""The GPU script (benchmarks/gpu/run.sh) runs end to end on the CPU, so it is known to work before
a GPU is ever lent (the device time is too short to debug it there)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_script_dry_run_passes_every_stage(tmp_path):
    env = dict(os.environ, DEVICE="cpu", OUT=str(tmp_path))
    proc = subprocess.run(
        ["bash", "benchmarks/gpu/run.sh", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    stages = report["stages"]
    assert list(stages) == ["environment", "kernel_tests", "tf32", "speed", "torchrun", "fine_tune"]
    assert all(stage["error"] is None for stage in stages.values()), stages
    assert "passed" in stages["kernel_tests"]["result"]["summary"]
    assert stages["tf32"]["result"]["runs"]["tf32_off"]["predictions_differing"] == 0.0  # CPU vs CPU: identical
    assert stages["speed"]["result"]["rows"][0]["ours_images_per_s"] > 0
    assert {row["code"].split()[0] for row in stages["speed"]["result"]["other_codes"]} == {"population", "temporal"}
    assert stages["torchrun"]["result"]["world"] == 1
    assert (
        stages["fine_tune"]["result"]["T2"]["images_per_s"] > 0
        and stages["fine_tune"]["result"]["T2"]["micro_batch"] == 32
    )
    # what comes back from the device: at most 8 files, none deeper than two folders
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) <= 8 and {p.name for p in files} == {"gpu.json", "speed.json", "gpu.log"}
