"""Sweeps (batch conversion) and Mueller's percentile search."""

import csv
import json

import numpy as np
import pytest
import torch

import convert2snn
from convert2snn.errors import InvalidInputError
from convert2snn.tools.sweep import expand_configs, search_normalization

from ..nets import RandomNet


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = RandomNet(3).eval()
    x = torch.rand(160, 2, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1).numpy()
    return net, x[:96], x[96:], y[96:]


def test_expand_configs_grid_and_names():
    cfgs = expand_configs({"configs": [{"name": "base"}], "grid": {"percentile": [99.9, 100], "v_init": [0, 0.5]}})
    assert len(cfgs) == 5 and len({c["name"] for c in cfgs}) == 5
    assert all(c["conversion_type"] == "rate" for c in cfgs)
    assert {(c.get("percentile"), c.get("v_init")) for c in cfgs[1:]} == {(99.9, 0), (99.9, 0.5), (100, 0), (100, 0.5)}
    with pytest.raises(InvalidInputError, match=r"unknown sweep keys \['grids'\]"):
        expand_configs({"grids": {}})


def test_sweep_rows_equal_single_conversions_and_files_are_written(setup, tmp_path):
    net, x_cal, x_eval, y_eval = setup
    configs = [{"percentile": 100.0}, {"percentile": 99.0, "v_init": 0.0}, {"percentil": 99}]
    result = convert2snn.sweep(
        net, configs, (x_cal, x_eval, y_eval), timesteps=[4, 16], output_dir=tmp_path, progress=False
    )
    assert [r.error is None for r in result.rows] == [True, True, False]
    assert "Did you mean 'percentile'" in result.rows[2].error
    for row, cfg in zip(result.rows[:2], configs[:2]):
        direct = convert2snn.convert(net, calibration_data=x_cal, progress=False, **cfg).evaluate(
            x_eval, y_eval, timesteps=[4, 16]
        )
        assert row.result.accuracy == direct.accuracy and row.result.ann_accuracy == direct.ann_accuracy
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    md = (tmp_path / "results.md").read_text()
    assert md.count("\n|") >= 4 and "percentile=99.0" in md
    assert len(json.loads((tmp_path / "results.json").read_text())["rows"]) == 3
    for png in ("accuracy_vs_T.png", "pareto.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_percentile_search_picks_the_best_held_out_candidate(setup):
    net, x_cal, _, _ = setup
    from convert2snn.tools.sweep import bridge_once

    ann = bridge_once(net, x_cal[:1])
    percentiles = (99.0, 99.9, 100.0)
    snn, found = search_normalization(ann, x_cal, target_T=4, percentiles=percentiles, holdout=0.5, progress=False)
    accs = {float(h["step"].split()[1]): h["accuracy"] for h in found.history if h["step"].startswith("global")}
    assert set(accs) == set(percentiles)
    assert found.global_accuracy == max(accs.values()) == accs[found.global_percentile]
    assert found.labels == "ANN predictions" and found.holdout_samples == 48
    assert snn.options.percentile == found.global_percentile
    assert np.isfinite(snn.predict(x_cal[:4], timesteps=4).sum())
