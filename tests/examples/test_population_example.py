"""examples/population_example.py end to end (slow: trains two Keras models in a child process)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "population_example.py"


def test_population_example_is_within_one_point_at_n16(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--n", "16", "--timesteps", "4", "--models", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    anns = [float(a) for a in re.findall(r"Keras \(ANN\) accuracy ([\d.]+) %", proc.stdout)]
    rows = [float(a) for a in re.findall(r"^\s+16\s+\d+\s+([\d.]+)", proc.stdout, re.M)]
    assert len(anns) == 2 and len(rows) == 2, proc.stdout
    for ann, snn in zip(anns, rows):
        assert ann > 90 and ann - snn <= 1.0, (ann, snn)
