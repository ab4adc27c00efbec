"""bench_finetune's table and plot from a results dict, and its ANN-epoch reference on a small network."""

from __future__ import annotations

import numpy as np
import torch

import convert2snn
from tests.convert2snn.nets import RandomNet


def test_table_and_plot(bench_finetune, tmp_path):
    results = {
        "title": "t",
        "ann_accuracy": 0.8,
        "samples": 100,
        "train_samples": 1000,
        "epochs": 2,
        "ann_epoch_s": 10.0,
        "rows": [
            {"timesteps": 1, "start": "default", "before": 0.1, "after_epoch": [0.6, 0.7], "epoch_s": [40.0, 60.0]},
            {"timesteps": 4, "start": "default", "before": 0.5, "after_epoch": [0.75, 0.79], "epoch_s": [100.0, 100.0]},
            {"timesteps": 8, "start": "default", "before": 0.7, "after_epoch": [0.78], "epoch_s": [200.0]},
        ],
    }
    lines = bench_finetune.table(results).splitlines()
    assert lines[0].startswith("| T | ANN | converted | fine-tuned 1 ep | fine-tuned 2 ep | gap to ANN")
    assert lines[2] == "| 1 | 80.00% | 10.00% | 60.00% | 70.00% | -10.00 pp | 50 | 5.0 |"
    assert lines[3] == "| 4 | 80.00% | 50.00% | 75.00% | 79.00% | -1.00 pp | 100 | 10.0 |"
    assert lines[4] == "| 8 | 80.00% | 70.00% | 78.00% | – | -2.00 pp | 200 | 20.0 |"  # a shorter run
    bench_finetune.plot(results, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_ann_epoch_reference_trains_a_copy(bench_finetune, monkeypatch):
    x = torch.rand((64, 2, 8, 8), generator=torch.Generator().manual_seed(0)).numpy()
    snn = convert2snn.convert(RandomNet(1), "rate", x, progress=False)
    before = {k: v.clone() for k, v in snn.ann.state_dict().items()}
    steps = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    seconds = bench_finetune.ann_epoch_seconds(snn, x, np.arange(64) % 5, batch=16, lr=1e-2)
    assert seconds > 0 and len(steps) == 4  # one epoch: 64 images in batches of 16
    assert all(torch.equal(before[k], v) for k, v in snn.ann.state_dict().items())  # a copy trained
