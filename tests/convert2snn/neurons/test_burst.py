"""Burst spikes (``max_spikes_per_step`` Γ): up to Γ spikes a step, each counted as a spike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional

import convert2snn
from convert2snn.errors import UnsupportedLayerError
from convert2snn.neurons import IFNeuron
from tests.convert2snn.nets import RandomNet


def reference(x_seq: torch.Tensor, threshold: float, v_init: float, burst: int) -> torch.Tensor:
    v = torch.full_like(x_seq[0], v_init * threshold)
    out = []
    for x in x_seq:
        v = v + x
        count = torch.clamp(torch.floor(v / threshold), 0, burst)
        v = v - count * threshold
        out.append(count)
    return torch.stack(out)


@pytest.mark.parametrize("burst", [1, 2, 5])
def test_a_burst_fires_one_spike_per_threshold_reached(burst):
    x = torch.randn(12, 4, 7, generator=torch.Generator().manual_seed(burst)) * 2.5 + 1.0
    node = IFNeuron(0.7, v_init=0.5, max_spikes=burst)
    with torch.no_grad():
        out = node(x)
    torch.testing.assert_close(out, reference(x, 0.7, 0.5, burst))
    if burst > 1:
        assert float(out.max()) == burst  # some steps reach the cap


def test_the_surrogate_path_fires_the_same_bursts():
    x = torch.randn(10, 3, 5, generator=torch.Generator().manual_seed(0)) * 3.0
    node = IFNeuron(1.0, v_init=0.5, max_spikes=3)
    with torch.no_grad():
        inference = node(x)
    functional.reset_net(node)
    node.train()
    trained = node(x.clone().requires_grad_(True))
    assert torch.equal(trained.detach(), inference)
    trained.sum().backward()  # the surrogate gradient reaches the input


def test_the_limit_of_a_burst_neuron_is_clipped_at_its_burst_size():
    node = IFNeuron(2.0, max_spikes=4)
    x = torch.linspace(-3, 12, 31).reshape(1, 1, 31)
    torch.testing.assert_close(node.limit_module()(x), torch.clamp(x / 2.0, 0, 4))


def test_a_burst_conversion_is_exact_in_the_limit_and_counts_every_spike():
    x = torch.rand((64, 2, 8, 8), generator=torch.Generator().manual_seed(1)).numpy()
    single = convert2snn.convert(RandomNet(3), "rate", x, progress=False)
    burst = convert2snn.convert(RandomNet(3), "rate", x, progress=False, max_spikes_per_step=4)
    # the conversion's own limit check passed; the readouts agree at long T
    np.testing.assert_allclose(burst.predict(x[:8], timesteps=512), single.predict(x[:8], timesteps=2048), atol=0.05)
    # spikes: a count of k in one step is k spikes (a Γ-burst network at T fires like Γ·T binary steps)
    counts = burst.spike_counts(x[:8], timesteps=4)
    binary = single.spike_counts(x[:8], timesteps=16)
    for layer in counts:
        assert counts[layer] == pytest.approx(binary[layer], rel=0.25, abs=8), layer
    result = burst.evaluate(x[:8], np.zeros(8, dtype=int), timesteps=[1, 4])
    total_neurons = sum(burst.neuron_counts().values())
    assert result.spikes_per_neuron[1] > result.spikes_per_neuron[0] > 0
    assert result.spikes_per_neuron[1] * total_neurons == pytest.approx(sum(counts.values()) / 8, rel=1e-5)


def test_nir_export_refuses_bursts_and_per_channel_starts():
    pytest.importorskip("nir")
    from tests.convert2snn.nets import SmallCNN

    x = torch.rand((32, 1, 8, 8), generator=torch.Generator().manual_seed(0)).numpy()
    burst = convert2snn.convert(SmallCNN(), "rate", x, progress=False, max_spikes_per_step=2)
    with pytest.raises(UnsupportedLayerError, match=r"fires bursts of up to 2 spikes, which no NIR node states"):
        burst.to_nir()
    started = convert2snn.convert(SmallCNN(), "rate", x, progress=False, timesteps=2, recipes="potential")
    assert any(key.endswith(":v_init") for key in started.scales)
    with pytest.raises(UnsupportedLayerError, match="starts per channel"):
        started.to_nir()
