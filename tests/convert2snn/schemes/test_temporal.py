"""Temporal conversion: oscillatory nodes (ttfs, phase) and whole networks against their references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

import convert2snn
from convert2snn.errors import InvalidInputError
from convert2snn.graph.limits import quantized_ann
from convert2snn.neurons.temporal import CycleDelay, CycleMaxPool, CycleReadout, PhaseNode, StepSynapse, TTFSNode
from convert2snn.simulate import simulate

from ..nets import RandomNet


def _silent(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# -- single neurons ------------------------------------------------------------------------------
@pytest.mark.parametrize("period", [2, 3, 4, 8, 16, 32])
def test_ttfs_spike_time_decodes_to_the_rounded_input(period):
    g = torch.Generator().manual_seed(period)
    v = torch.rand(4000, generator=g) * 1.6 - 0.3  # below 0, inside [0, 1], above 1
    node = TTFSNode(period, integrate_cycle=0)
    spikes = node(v.expand(3 * period, -1).contiguous())  # charge in cycle 0, fire in cycle 1
    assert spikes.sum(0).max() <= 1, "more than one spike per neuron"
    assert spikes[:period].sum() == 0 and spikes[2 * period :].sum() == 0, "spikes outside the firing cycle"
    phase = spikes[period : 2 * period].argmax(0).float()
    decoded = torch.where(spikes.sum(0) > 0, (period - phase) / period, torch.zeros_like(v))
    clipped = v.clamp(0, 1)
    assert float((decoded - clipped).abs().max()) <= 0.5 / period + 1e-6  # the code's resolution
    expected = torch.round(clipped * period) / period
    away_from_ties = ((clipped * period) % 1 - 0.5).abs() > 1e-4
    assert torch.equal(decoded[away_from_ties], expected[away_from_ties])
    assert spikes[:, v <= 0.5 / period - 1e-6].sum() == 0, "zero / tiny activations must never spike"


def test_ttfs_charges_only_in_its_cycle():
    node = TTFSNode(4, integrate_cycle=1)
    x = torch.zeros(12, 1)
    x[:4] = 5.0  # cycle 0: ignored
    x[4:8] = 0.5  # cycle 1: integrated → v = 0.5 → fires at phase 2 of cycle 2
    out = node(x)
    assert out.flatten().tolist() == [0.0] * 10 + [1.0, 0.0]


@pytest.mark.parametrize("period", [4, 8])
def test_phase_node_time_average_converges_to_its_input(period):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, generator=g)
    for cycles in (2, 8, 32):
        node = PhaseNode(period)
        out = node(x.expand(cycles * period, -1).contiguous())
        average = out.mean(0)
        # the membrane's residual is less than one cycle's charge: error below K / T = 1 / cycles
        assert float((average - x).abs().max()) < 1.0 / cycles + 1e-6, cycles
        theta0 = period / (1 - 2.0**-period)
        weights = torch.tensor([theta0 * 2.0 ** -(1 + k) for k in range(period)] + [0.0])
        assert bool(torch.isclose(out.unique().unsqueeze(1), weights).any(1).all()), (
            "outputs must be phase-weighted spikes"
        )


def test_phase_node_codes_one_cycle_as_binary_expansion():
    # charge delivered before the cycle: 13/15 of the maximum = 0b1101 in units of θ0/16
    node = PhaseNode(4)
    node.v = torch.tensor([13 / 15 * 4 + 1e-5])  # + a hair: the exact sum is a float rounding tie
    out = node(torch.zeros(4, 1))
    assert (out.flatten() != 0).int().tolist() == [1, 1, 0, 1]
    assert float(out.sum() / 4) == pytest.approx(13 / 15)


def test_step_synapse_holds_until_the_cycle_ends_across_chunks():
    s = torch.zeros(12, 2)
    s[1, 0] = 1
    s[6, 1] = 1
    whole = StepSynapse(4)(s)
    expected = torch.zeros(12, 2)
    expected[1:4, 0] = 1
    expected[6:8, 1] = 1
    assert torch.equal(whole, expected)
    syn = StepSynapse(4)
    chunked = torch.cat([syn(s[:3]), syn(s[3:7]), syn(s[7:])])
    assert torch.equal(chunked, expected)


def test_cycle_delay_and_readout_across_chunks():
    x = torch.arange(1.0, 13.0).reshape(12, 1)
    delay = CycleDelay(1, 4, source_cycle=1)  # replays steps 4…7 (cycle 1) at steps 8…11
    out = torch.cat([delay(x[:5]), delay(x[5:9]), delay(x[9:])])
    assert out.flatten().tolist() == [0.0] * 8 + [5.0, 6.0, 7.0, 8.0]
    delay = CycleDelay(2, 4, source_cycle=0)
    pieces = [delay(x[i : i + 3]) for i in range(0, 12, 3)]
    assert torch.cat(pieces).flatten().tolist() == [0.0] * 8 + [1.0, 2.0, 3.0, 4.0]
    assert all(p.stride() == (0, 0) for p in pieces[:2])  # nothing to show: a silent chunk
    readout = CycleReadout(4, cycle=1)
    r = torch.cat([readout(x[:6]), readout(x[6:])]).flatten()
    assert r[:4].tolist() == [0.0] * 4
    assert float(r[7]) == pytest.approx((5 + 6 + 7 + 8) / 4) and float(r[-1]) == float(r[7])
    assert readout.latency == 8


# -- networks --------------------------------------------------------------------------------------
def _convert(net, x, **options):
    return _silent(convert2snn.convert, net, "temporal", x, progress=False, **options)


@pytest.mark.parametrize("seed", [0, 1, 3, 7])
@pytest.mark.parametrize("period", [4, 16])
def test_ttfs_network_equals_the_quantized_ann(seed, period):
    """Deep stacks (residual Add with delays, Concat, max/avg pooling): exact w.r.t. the ANN with
    activations clipped at λ and rounded to K levels."""
    net = RandomNet(seed)
    x = torch.rand(48, 2, 8, 8, generator=torch.Generator().manual_seed(seed))
    snn = _convert(net, x, period=period)
    out = snn.predict(x, timesteps=snn.latency)
    ref = quantized_ann(snn.ann, snn.scales, period)(x).detach().numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_ttfs_error_against_the_ann_shrinks_with_the_period():
    net = RandomNet(3)
    x = torch.rand(64, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    errors = []
    for period in (4, 16, 64):
        snn = _convert(net, x, period=period, percentile=100.0)
        out = snn.predict(x, timesteps=snn.latency)
        ann = snn.ann_predict(x)
        errors.append(float(np.abs(out - ann).max() / np.abs(ann).max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors


def test_ttfs_at_most_one_spike_per_neuron_and_latency():
    net = RandomNet(1)
    x = torch.rand(16, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    snn = _convert(net, x, period=8)
    depth = sum(isinstance(m, TTFSNode) for m in snn.network.modules())
    assert snn.latency == (depth + 1) * 8  # a chain: one cycle per neuron layer plus the readout's
    histogram = snn.spike_counts(x, timesteps=snn.latency, mode=1)  # h[k]: (sample, neuron) pairs with k spikes
    assert len(histogram) == depth
    for layer, h in histogram.items():
        assert len(h) == 2 and h[1] > 0, (layer, h)  # every neuron fires 0 or 1 times, some fire
    res = snn.evaluate(x, snn.ann_predict(x).argmax(1), timesteps=[snn.latency], correlation=False)
    assert 0 < res.spikes_per_neuron[0] <= 1.0


def test_time_chunks_do_not_change_ttfs_or_phase_results():
    net = RandomNet(0)  # residual: exercises CycleDelay
    x = torch.rand(8, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    for code in ("ttfs", "phase"):
        snn = _convert(net, x, period=4, code=code)
        steps = snn.latency or 24
        whole = simulate(snn.network, x, [steps], progress=False).outputs[steps]
        chunked = simulate(snn.network, x, [steps], progress=False, chunk=3).outputs[steps]
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
        functional.reset_net(snn.network)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_idle_cycles_are_skipped_with_bit_identical_results(monkeypatch, seed):
    """A ttfs layer fires in one of its (depth + 1) cycles: outside it the node returns a `silent`
    chunk and the layers after it compute one sample of one step. The same simulation with the
    silent chunks materialised as zeros (every layer computing every step) must agree exactly."""
    from convert2snn.neurons import temporal as temporal_nodes

    net = RandomNet(seed)  # residual / concat / plain, max or average pooling
    x = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(seed))
    snn = _convert(net, x, period=4)
    batches = []
    convs = [m for m in snn.network.modules() if isinstance(m, nn.Conv2d)]
    hooks = [c.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0])) for c in convs]
    fast = snn.evaluate(x, np.zeros(6, dtype=int), timesteps=[5, snn.latency], correlation=False)
    out_fast = snn.predict(x, timesteps=snn.latency)
    assert 1 in batches, "silent chunks must reach the convolutions as one sample"
    for h in hooks:
        h.remove()
    monkeypatch.setattr(temporal_nodes, "silent", lambda like: torch.zeros(like.shape, dtype=like.dtype))
    dense = snn.evaluate(x, np.zeros(6, dtype=int), timesteps=[5, snn.latency], correlation=False)
    np.testing.assert_array_equal(snn.predict(x, timesteps=snn.latency), out_fast)
    assert dense.spikes_per_neuron == fast.spikes_per_neuron and dense.accuracy == fast.accuracy
    assert (
        dense.layer_spikes_per_neuron == fast.layer_spikes_per_neuron and dense.sops == fast.sops and fast.sops[1] > 0
    )


def test_residual_branches_are_delayed_to_meet():
    snn = _convert(RandomNet(0), torch.rand(8, 2, 8, 8), period=4)
    delays = [m for m in snn.network.modules() if isinstance(m, CycleDelay)]
    assert [d.cycles for d in delays] == [1]
    assert any("delayed by 1 cycle" in n for n in snn.report.notes)


def test_phase_network_converges_to_the_clipped_ann():
    net = RandomNet(2)
    x = torch.rand(32, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    snn = _convert(net, x, code="phase", period=4, percentile=100.0)
    ann = snn.ann_predict(x)
    res = simulate(snn.network, torch.as_tensor(x), [8, 64, 512], progress=False).outputs
    errors = [float(np.abs(res[t] - ann).max() / np.abs(ann).max()) for t in (8, 64, 512)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02, errors


class PoolOfCurrents(nn.Module):
    """Max pooling of currents that are not neuron outputs: of a sum of branches, and Conv → BN →
    MaxPool → ReLU (Keras Xception's order), both feeding a residual Add."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(2, 4, 3, padding=1)
        self.c, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.skip = nn.Conv2d(4, 4, 1, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 2 * 2, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = self.pool(torch.relu(self.a(x)) + torch.relu(self.b(x)))  # 4×4
        y = self.pool2(self.bn(self.c(h))) + self.skip(h)  # 2×2, residual
        return self.fc(torch.relu(y).flatten(1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_pooling_of_currents_is_exact_one_cycle_later(seed):
    net = PoolOfCurrents(seed).eval()
    x = torch.rand(24, 2, 8, 8, generator=torch.Generator().manual_seed(seed))
    snn = _convert(net, x, period=8)
    pools = [m for m in snn.network.modules() if isinstance(m, CycleMaxPool)]
    assert len(pools) == 2 and any("takes one more cycle" in n for n in snn.report.notes)
    out = snn.predict(x, timesteps=snn.latency)
    ref = quantized_ann(snn.ann, snn.scales, 8)(x).detach().numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    whole = simulate(snn.network, x, [snn.latency], progress=False).outputs[snn.latency]
    chunked = simulate(snn.network, x, [snn.latency], progress=False, chunk=5).outputs[snn.latency]
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_cycle_max_pool_replays_the_pooled_cycle_mean_across_chunks():
    x = torch.zeros(12, 1, 1, 4)  # K = 4; the current of cycle 1 (steps 4…7) is pooled, shown in cycle 2
    x[4:8, 0, 0] = torch.tensor(
        [[1.0, 0.0, 2.0, 0.0], [1.0, 4.0, 2.0, 0.0], [1.0, 0.0, 2.0, 0.0], [1.0, 0.0, 2.0, 8.0]]
    )
    pool = CycleMaxPool(nn.MaxPool1d(2), 4, source_cycle=1)
    pieces = [pool(x[i : i + 3]) for i in range(0, 12, 3)]
    out = torch.cat(pieces)
    assert out.shape == (12, 1, 1, 2)
    assert out[:8].abs().sum() == 0 and pieces[0].stride() == (0, 0, 0, 0)  # silent before
    assert out[8:, 0, 0].tolist() == [[1.0, 2.0]] * 4  # means (1, 1, 2, 2) pooled by pairs


@pytest.mark.parametrize(
    "options, message",
    [
        ({"code": "tfs"}, "code must be one of 'ttfs', 'phase', got 'tfs'"),
        ({"period": 1}, "period (steps per oscillation cycle, K) must be an integer in [2, 1024], got 1"),
        ({"period": 8.0}, "period (steps per oscillation cycle, K) must be an integer in [2, 1024], got 8.0"),
        ({"code": "phase", "period": 32}, "period=32 with code='phase'"),
        ({"encoding": "poisson"}, "encoding='poisson' is not available"),
        ({"n": 4}, "unknown option 'n' for conversion_type='temporal'"),
    ],
)
def test_bad_temporal_options(options, message):
    with pytest.raises(InvalidInputError) as err:
        convert2snn.convert(RandomNet(0), "temporal", torch.rand(4, 2, 8, 8), progress=False, **options)
    assert message in str(err.value)


def test_partial_results_before_the_latency_are_warned_about():
    x = torch.rand(4, 2, 8, 8)
    snn = _convert(RandomNet(2), x, period=4)
    with pytest.warns(UserWarning, match=f"complete only after {snn.latency} steps"):
        snn.predict(x, timesteps=snn.latency - 1)


def test_evaluate_and_predict_default_to_the_latency():
    """Without timesteps a single-spike network is evaluated where its answer is complete, not at
    the rate code's (4, 8, 16, 32): chance accuracy with a warning before."""
    x = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    snn = _convert(RandomNet(2), x, period=8)
    assert snn.latency > 32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "partial results" warning
        result = snn.evaluate(x, snn.ann_predict(x).argmax(1), correlation=False)
        scores = snn.predict(x)
    assert result.timesteps == [snn.latency]
    np.testing.assert_array_equal(scores, snn.predict(x, timesteps=snn.latency))


def test_temporal_save_load_round_trip(tmp_path):
    x = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    for code in ("ttfs", "phase"):
        snn = _convert(RandomNet(1), x, period=8, code=code)
        snn.save(tmp_path / f"{code}.pt")
        again = convert2snn.load(tmp_path / f"{code}.pt")
        steps = snn.latency or 16
        assert again.latency == snn.latency
        np.testing.assert_array_equal(again.predict(x, timesteps=steps), snn.predict(x, timesteps=steps))


def test_data_free_temporal_is_recorded_and_refused_when_strict():
    from convert2snn.errors import ApproximationError

    x = torch.rand(1, 2, 8, 8)
    snn = _silent(convert2snn.convert, RandomNet(2), "temporal", example_input=x, progress=False)
    assert snn.latency == 80 and "data-free normalisation" in snn.report.approximations[0]
    with pytest.raises(ApproximationError, match="strict=True"):
        _silent(convert2snn.convert, RandomNet(2), "temporal", example_input=x, progress=False, strict=True)
