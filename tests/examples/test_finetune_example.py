"""examples/finetune_example.py end to end on sklearn's digits (slow: trains an ANN and fine-tunes twice)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune_example.py"


def test_finetune_example_improves_on_the_conversion_both_ways():
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    accuracy = {
        name: float(v) for name, v in re.findall(r"^  (ANN|converted|fine-tuned \(\w+ \w+\))\s+([\d.]+)%", out, re.M)
    }
    assert set(accuracy) == {"ANN", "converted", "fine-tuned (one call)", "fine-tuned (own loop)"}, out
    assert (
        accuracy["fine-tuned (one call)"] > accuracy["converted"]
        and accuracy["fine-tuned (own loop)"] > accuracy["converted"]
    )
    assert "single-step mode predicts as multi-step on 100.00% of the test images" in out
    assert "identical predictions: True" in out
