"""Calibration statistics equal numpy's order statistics, across batches and per channel."""

import numpy as np
import pytest
import torch
from torch import fx, nn

from convert2snn.statistics import collect_statistics, input_key


class Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(x)


@pytest.mark.parametrize("percentile", [100.0, 99.99, 99.9, 99.0, 90.0])
@pytest.mark.parametrize("batch_size", [7, 1000])
def test_layer_percentile_is_exact(percentile, batch_size):
    gen = torch.Generator().manual_seed(int(percentile * 10) + batch_size)
    x = torch.randn(300, 3, 5, 5, generator=gen)
    gm = fx.symbolic_trace(Probe())
    stats = collect_statistics(gm, x, ["act"], min_percentile=percentile, batch_size=batch_size, progress=False)
    values = torch.relu(x).numpy().reshape(-1)
    expected = np.percentile(values, percentile, method="inverted_cdf")
    assert float(stats["act"].scale(percentile)) == pytest.approx(float(expected), abs=0)


def test_per_channel_and_larger_percentiles_from_one_pass():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(200, 4, 3, 3, generator=gen) * torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1)
    gm = fx.symbolic_trace(Probe())
    stats = collect_statistics(gm, x, ["act"], min_percentile=99.0, per_channel=True, batch_size=33, progress=False)
    relu = torch.relu(x).numpy()
    for p in (99.0, 99.9, 100.0):
        got = stats["act"].scale(p).numpy()
        expected = [np.percentile(relu[:, c].reshape(-1), p, method="inverted_cdf") for c in range(4)]
        np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))
    with pytest.raises(ValueError, match="only"):
        stats["act"].scale(50.0)


@pytest.mark.parametrize("percentile", [100.0, 99.9, 99.0])
def test_input_range_is_the_inputs_lower_and_upper_order_statistics(percentile):
    """A node whose input range is measured: [low, high] of its INPUT, both tails exact."""
    gen = torch.Generator().manual_seed(int(percentile * 10))
    x = torch.randn(250, 3, 4, 4, generator=gen) * 2 + 0.5
    gm = fx.symbolic_trace(Probe())
    stats = collect_statistics(
        gm, x, ["act"], min_percentile=percentile, batch_size=64, progress=False, input_ranges=["act"]
    )
    values = x.numpy().reshape(-1)
    low, high = stats[input_key("act")].range(percentile)
    assert high == float(np.percentile(values, percentile, method="inverted_cdf"))
    assert low == float(-np.percentile(-values, percentile, method="inverted_cdf"))
    assert float(stats["act"].scale(percentile)) == float(  # the output's statistics are still kept
        np.percentile(np.maximum(values, 0), percentile, method="inverted_cdf")
    )
    with pytest.raises(ValueError, match="no input range"):
        stats["act"].range(percentile)
