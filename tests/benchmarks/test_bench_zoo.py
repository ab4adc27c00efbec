"""benchmarks/bench_zoo.py: two models end to end (fast), and the whole zoo with the issue's bars (slow):
every ReLU-family model converts with every conversion type, its T → ∞ limit equals the clipped ANN to
float precision, rate coding's error falls with T (≤ 0.05 at T = 256), and every other model is refused
by layer name within 2 s of the bridge."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_zoo  # noqa: E402

# model → words its rate refusal must contain
REFUSED = {
    "efficientnet_b0": ("SiLU", "Multiply of two tensors"),
    "mobilenet_v3_small": ("Hardswish",),
    "convnext_tiny": ("LayerNorm", "GELU"),
    "keras:EfficientNetB0": ("SiLU", "Multiply of two tensors"),
    "keras:EfficientNetV2B0": ("SiLU", "Multiply of two tensors"),
    "keras:MobileNetV3Small": ("Multiply of two tensors",),
}
# model → words of its refusal by the bridge (ops ONNX or onnx2torch cannot express)
REFUSED_BY_THE_BRIDGE = {
    "keras:ConvNeXtTiny": ("grouped Conv2D", "Keras layer 'convnext_tiny_stage_0_block_0_depthwise_conv'"),
}


def _check_converted(row: dict) -> None:
    assert "bridge_error" not in row, row
    assert row["bridge_diff"] < 1e-5, row["bridge_diff"]
    for kind in ("rate", "population", "temporal"):
        entry = row[kind]
        assert "refusal" not in entry and "error" not in entry, (kind, entry)
        assert entry["limit_check"] < 1e-5, (kind, entry["limit_check"])
    for kind in ("rate", "population"):
        assert row[kind]["error_T256"] < row[kind]["error_T64"], (kind, row[kind])
    assert row["rate"]["error_T256"] <= 0.05, row["rate"]


def _check_refused(row: dict, words) -> None:
    assert "bridge_error" not in row, row
    assert row["bridge_diff"] < 1e-4, row["bridge_diff"]
    rate = row["rate"]
    assert rate["refused_after_s"] <= 2.0, rate
    assert "cannot be converted with conversion_type='rate'" in rate["refusal"], rate["refusal"]
    for word in words:
        assert word in rate["refusal"], (word, rate["refusal"])


def test_zoo_benchmark_reports_a_converted_and_a_refused_model(tmp_path, capsys):
    out = tmp_path / "zoo.json"
    assert (
        bench_zoo.main(["--models", "squeezenet1_0", "mobilenet_v3_small", "--skip-scaling", "--json", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    squeezenet, mobilenet = result["rows"]
    _check_converted(squeezenet)
    _check_refused(mobilenet, REFUSED["mobilenet_v3_small"])
    table = capsys.readouterr().out
    assert "| squeezenet1_0 | 64 |" in table and "| mobilenet_v3_small | 64 |" in table
    assert "refused in" in table and "Hardswish" in table


@pytest.mark.slow
@pytest.mark.parametrize("key", list(bench_zoo.ZOO))
def test_every_zoo_model_converts_exactly_or_is_refused_quickly(key):
    if key.startswith("keras:"):
        pytest.importorskip("tensorflow")
    row = bench_zoo.run_model(key, bench_zoo.ZOO[key])
    if key in REFUSED_BY_THE_BRIDGE:
        for word in REFUSED_BY_THE_BRIDGE[key]:
            assert word in row["bridge_error"], (word, row["bridge_error"])
    elif key in REFUSED:
        _check_refused(row, REFUSED[key])
    else:
        _check_converted(row)
