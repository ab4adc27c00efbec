"""Neuron nodes: exact spike counts, the fast path equals SpikingJelly's path, state and reset."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional

from convert2snn.neurons import IFNeuron, MembraneReadout, SpikingMaxPool
from convert2snn.sequence import SeqModule, constant_sequence


@settings(max_examples=60, deadline=None)
@given(x=st.floats(0.0, 1.0), steps=st.integers(1, 300))
def test_if_count_is_rounded_rate_with_error_centering(x, steps):
    """Constant input x (θ = 1, v0 = θ/2): after T steps the count is round(x·T), never floor."""
    node = IFNeuron(v_init=0.5)
    with torch.no_grad():
        spikes = node(torch.full((steps, 1), x))
    count = int(spikes.sum())
    assert spikes.max() <= 1 and spikes.min() >= 0
    # n spikes ⇔ 0.5 + xT − n ∈ [0, 1) (reset by subtraction keeps the residue)
    assert 0.0 <= 0.5 + x * steps - count + 1e-4 and 0.5 + x * steps - count < 1.0 + 1e-4


def test_if_without_centering_floors():
    node = IFNeuron(v_init=0.0)
    with torch.no_grad():
        assert int(node(torch.full((10, 1), 0.39)).sum()) == math.floor(0.39 * 10)


def test_fast_path_matches_surrogate_path():
    torch.manual_seed(0)
    x = torch.randn(40, 3, 7) * 0.7
    fast, slow = IFNeuron(v_init=0.5), IFNeuron(v_init=0.5)
    with torch.no_grad():
        s_fast = fast(x)
    slow.train()
    s_slow = slow(x.clone().requires_grad_(True))
    assert torch.equal(s_fast, s_slow.detach())
    assert torch.allclose(fast.v, slow.v.detach(), atol=1e-6)


def test_lif_leaks():
    node = IFNeuron(v_init=0.0, tau=2.0)
    with torch.no_grad():
        # v: 0.6, 0.9, 1.05 → spike at the third step (leak halves v before each input)
        out = node(torch.full((3, 1), 0.6))
    assert out[:, 0].tolist() == [0.0, 0.0, 1.0]


def test_state_carries_over_chunks_and_resets():
    torch.manual_seed(1)
    x = torch.rand(64, 2, 5)
    node = IFNeuron()
    with torch.no_grad():
        whole = node(x)
        functional.reset_net(node)
        assert node.v == 0.5  # reset_net restores the initial potential
        parts = torch.cat([node(x[:10]), node(x[10:37]), node(x[37:])])
    assert torch.equal(whole, parts)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 40))
def test_spiking_max_pool_is_exact_on_cumulative_counts(seed, steps):
    gen = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(steps, 2, 3, 6, 6, generator=gen) < 0.3).float()
    pool = SpikingMaxPool(torch.nn.MaxPool2d(2))
    with torch.no_grad():
        out = torch.cat([pool(spikes[: steps // 2]), pool(spikes[steps // 2 :])]) if steps > 1 else pool(spikes)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    expected = torch.nn.functional.max_pool2d(spikes.cumsum(0).flatten(0, 1), 2).reshape(out.shape)
    assert torch.equal(out.cumsum(0), expected)


def test_readout_reports_running_mean_across_chunks():
    x = torch.arange(12, dtype=torch.float32).reshape(6, 1, 2)
    r = MembraneReadout()
    out = torch.cat([r(x[:2]), r(x[2:])])
    expected = x.cumsum(0) / torch.arange(1, 7).reshape(6, 1, 1)
    assert torch.allclose(out, expected)
    functional.reset_net(r)
    assert torch.allclose(r(x[:1]), x[:1])


def test_seq_module_computes_constant_input_once():
    calls = []
    lin = torch.nn.Linear(3, 2)
    lin.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    seq = SeqModule(lin)
    x = torch.randn(4, 3)
    out = seq(constant_sequence(x, 50))
    assert calls == [4]  # one batch of 4, not 50 × 4
    assert out.shape == (50, 4, 2) and out.stride(0) == 0
    assert torch.allclose(out[17], lin(x))
    full = seq(x.unsqueeze(0).repeat(50, 1, 1))
    assert calls[-1] == 200 and torch.allclose(full, out)
