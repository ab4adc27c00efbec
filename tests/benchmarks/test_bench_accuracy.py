"""bench_accuracy's recipe section on a small torch network: tuned rows, the table and the plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convert2snn
from tests.convert2snn.nets import RandomNet


def test_tuned_rows_table_and_plot(bench_accuracy, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand((96, 2, 8, 8), generator=g).numpy()
    net = RandomNet(0)
    y = net(torch.tensor(x)).argmax(1).numpy()  # labels = the ANN's predictions
    snn = convert2snn.convert(net, "rate", x, progress=False)
    row = bench_accuracy.run_tuned(snn, "threshold+bias", x, x[:32], y[:32], [1, 2], batch=32)
    assert row["timesteps"] == [1, 2] and len(row["accuracy"]) == 2 and row["samples"] == 32
    assert all(r["recipes"] == ["threshold", "bias"] and r["samples"] == 96 for r in row["per_T"])
    direct = convert2snn.tune(snn, x, timesteps=2, recipes="threshold+bias").evaluate(x[:32], y[:32], timesteps=[2])
    assert row["accuracy"][1] == pytest.approx(direct.accuracy[0])
    default = snn.evaluate(x[:32], y[:32], timesteps=[1, 2], correlation=False)
    results = {
        "title": "random net",
        "timesteps": [1, 2],
        "test_samples": 32,
        "ann_accuracy": 1.0,
        "keras_test_accuracy": 1.0,
        "ours": [
            {
                "name": "default",
                "config": bench_accuracy.DEFAULT_CFG,
                "samples": 32,
                "timesteps": [1, 2],
                "accuracy": default.accuracy,
                "spikes_per_neuron": default.spikes_per_neuron,
            }
        ],
        "sj": [],
        "codes": [],
        "bursts": [],
        "recipes": [row],
    }
    table = bench_accuracy.markdown(results)
    assert "| threshold+bias | 32 | " in table
    assert f"{100 * row['accuracy'][0]:.2f} / {row['spikes_per_neuron'][0]:.3g}" in table
    path = tmp_path / "recipes.png"
    bench_accuracy.plot_recipes(results, path)
    assert path.stat().st_size > 10_000
    assert np.isfinite(row["spikes_per_neuron"]).all()
