"""examples/train_example.py end to end: Keras training child → conversion → table and plot."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tf

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_example.py"


def test_train_example_runs_end_to_end(tmp_path):
    plot = tmp_path / "plot" / "acc.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--out",
            str(tmp_path / "out"),
            "--plot",
            str(plot),
            "--epochs",
            "3",
            "--timesteps",
            "4",
            "16",
            "--limit",
            "120",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for step in ("[1/3]", "[2/3]", "[3/3]"):
        assert step in out
    rows = re.findall(r"^\s*(\d+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+(-?[\d.]+) \|\s+([\d.]+)\s*$", out, re.M)
    assert [int(r[0]) for r in rows] == [4, 16], out
    ann = float(rows[0][1])
    assert ann > 50  # 3 epochs on digits already learn something
    for _, ann_row, snn, loss, spikes in rows:
        assert float(ann_row) == ann and 0 <= float(snn) <= 100 and float(spikes) >= 0
        assert abs(float(ann_row) - float(snn) - float(loss)) < 0.011
    assert plot.exists() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
    assert (tmp_path / "out" / "model.keras").exists() and (tmp_path / "out" / "result.json").exists()
