"""examples/temporal_example.py end to end (slow: trains the digits CNN in a child process)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "temporal_example.py"


def test_temporal_example_single_spike_code_is_within_one_point_below_one_spike(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--schemes", "rate", "temporal ttfs K=16"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "temporal_example.json").read_text())
    ttfs = [r for r in result["rows"] if r["scheme"] == "temporal ttfs K=16"]
    assert len(ttfs) == 1 and ttfs[0]["timesteps"] == 64  # 3 spiking layers + readout: 4 cycles of 16
    assert result["ann_accuracy"] - ttfs[0]["accuracy"] <= 0.01 and ttfs[0]["spikes_per_neuron"] <= 1.0
    assert (tmp_path / "temporal_vs_rate.png").stat().st_size > 10_000
    assert "temporal ttfs K=16" in proc.stdout and "E_SNN/E_ANN" in proc.stdout
