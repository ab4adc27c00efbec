"""Population conversion: transfer functions, exact counts, seeding, reset, mixed nets and LSTMs."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

import convert2snn
from convert2snn.errors import InvalidInputError
from convert2snn.neurons.population import (
    SIGMA_SIGMOID,
    PiecePopulationNode,
    PopulationActivationNode,
    PopulationIFNode,
)

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}
# max_z |Φ(z/σ_s) − sigmoid(z)| and max_z |2Φ(z/σ_t) − 1 − tanh(z)| at the documented σ
APPROXIMATION_ERROR = {"sigmoid": 0.0095, "tanh": 0.0189}


def _constant(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.unsqueeze(0).expand((steps,) + tuple(x.shape)).contiguous()


@pytest.mark.parametrize("n", [1, 3, 16])
@pytest.mark.parametrize("steps", [1, 7, 32])
def test_dithered_if_population_counts_round_n_t_x(n, steps):
    """Hermite's identity: the population's spike count after T steps is round(n·T·x)."""
    x = torch.rand(40, 5, generator=torch.Generator().manual_seed(n * 100 + steps))
    node = PopulationIFNode.dithered(n)
    with torch.no_grad():
        out = node(_constant(x, steps))
    assert torch.equal((out.sum(0) * n).round(), torch.floor(n * steps * x + 0.5))
    assert out.unique().sub(out.unique().mul(n).round().div(n)).abs().max() < 1e-6  # values k/n


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
@pytest.mark.parametrize("n, steps", [(4, 1), (4, 8), (16, 8), (64, 64)])
def test_dithered_activation_error_is_at_most_one_over_n_t(kind, n, steps):
    z = torch.linspace(-6, 6, 301)
    node = PopulationActivationNode(kind, n)
    with torch.no_grad():
        out = node(_constant(z.unsqueeze(0), steps))
    err = (out.mean(0)[0] - ACTIVATIONS[kind](z)).abs().max().item()
    assert err <= 1.0 / (n * steps) + 1e-6


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_mismatch_approaches_the_activation_as_n_grows(kind, seed):
    """Normal thresholds: error ≤ the Φ-approximation error + a DKW sampling bound 2/√n."""
    z = torch.linspace(-6, 6, 241)
    errors = []
    for n in (64, 1024, 16384):
        node = PopulationActivationNode.mismatched(kind, n, (z.numel(),), seed=seed)
        with torch.no_grad():
            out = node(z.reshape(1, 1, -1))
        err = (out[0, 0] - ACTIVATIONS[kind](z)).abs().max().item()
        assert err <= APPROXIMATION_ERROR[kind] + 2.0 / n**0.5, (n, err)
        errors.append(err)
    assert errors[-1] < errors[0]


def test_sigma_minimises_the_sigmoid_approximation():
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0)

    def err(sigma):
        return (normal.cdf(z / sigma) - torch.sigmoid(z)).abs().max().item()

    assert err(SIGMA_SIGMOID) == pytest.approx(APPROXIMATION_ERROR["sigmoid"], abs=2e-4)
    assert err(SIGMA_SIGMOID) < min(err(SIGMA_SIGMOID - 0.02), err(SIGMA_SIGMOID + 0.02), err(1.75))


@pytest.mark.parametrize(
    "make",
    [
        lambda: PopulationIFNode.dithered(8),
        lambda: PopulationIFNode.mismatched(8, (6,), sigma=0.2, seed=3),
        lambda: PopulationActivationNode("sigmoid", 8),
        lambda: PopulationActivationNode.mismatched("tanh", 8, (6,), seed=3),
    ],
)
def test_fast_path_equals_surrogate_path(make):
    """The no-grad loop and SpikingJelly's differentiable path give the same forward values."""
    x = _constant(torch.randn(3, 6, generator=torch.Generator().manual_seed(0)), 10)
    fast, slow = make(), make()
    with torch.no_grad():
        y_fast = fast(x)
    y_slow = slow(x.clone().requires_grad_(True))
    assert torch.allclose(y_fast, y_slow.detach(), atol=1e-6)


class MixedMLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(6, 12), nn.Linear(12, 10), nn.Linear(10, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc4(torch.tanh(self.fc3(torch.sigmoid(self.fc2(torch.relu(self.fc1(x)))))))


@pytest.fixture(scope="module")
def mixed():
    net = MixedMLP().eval()
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(1))
    return net, x


def _population(net, x, **kw):
    return convert2snn.convert(net, "population", calibration_data=x, progress=False, **kw)


def test_mixed_network_gets_the_right_node_per_layer_and_counts_neurons(mixed):
    net, x = mixed
    snn = _population(net, x, n=8, layer_n={"tanh": 4})
    kinds = {type(m).__name__ for m in snn.network.modules()}
    assert {"PopulationIFNode", "PopulationActivationNode"} <= kinds
    counts = snn.neuron_counts()
    assert sorted(counts.values()) == sorted([12 * 8, 10 * 8, 8 * 4]), counts
    with pytest.raises(InvalidInputError, match="Did you mean 'tanh'"):
        _population(net, x, layer_n={"tanhh": 4})
    with pytest.raises(InvalidInputError, match=r"n \(neurons per unit\) must be an integer"):
        _population(net, x, n=0)


def test_population_converges_to_the_ann(mixed):
    net, x = mixed
    snn = _population(net, x, n=32, percentile=100.0)
    with torch.no_grad():
        ann = net(x)
    out = torch.as_tensor(snn.predict(x, timesteps=256))
    assert (out.argmax(1) == ann.argmax(1)).float().mean() >= 0.97
    assert (out - ann).abs().max() <= 0.05 * ann.abs().max()


def test_seeded_threshold_mismatch_is_bit_identical(mixed):
    net, x = mixed
    a = _population(net, x, n=8, mismatch="threshold", seed=5).predict(x, timesteps=16)
    b = _population(net, x, n=8, mismatch="threshold", seed=5).predict(x, timesteps=16)
    c = _population(net, x, n=8, mismatch="threshold", seed=6).predict(x, timesteps=16)
    assert (a == b).all() and not (a == c).all()


def test_reset_net_restores_the_initial_state(mixed):
    net, x = mixed
    snn = _population(net, x, n=4)
    network = snn.network
    xs = _constant(x[:8], 5)
    with torch.no_grad():
        functional.reset_net(network)
        first = network(xs)
        carried = network(xs)  # state carries over
        functional.reset_net(network)
        again = network(xs)
    assert torch.equal(first, again) and not torch.equal(first, carried)


class SeqLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(h.squeeze(0))  # the last hidden state (what a Keras LSTM returns)


def test_lstm_gates_become_populations_and_match_the_ann(tmp_path):
    net = SeqLSTM().eval()
    x = torch.rand(48, 6, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(net, (x[:1],), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    snn = convert2snn.convert(path, "population", calibration_data=x.numpy(), n=64, progress=False)
    gates = [m for m in snn.network.modules() if isinstance(m, PopulationActivationNode)]
    assert len(gates) == 5  # input, forget, output gates (sigmoid); cell candidate and output (tanh)
    with torch.no_grad():
        ann = net(x)
    out = torch.as_tensor(snn.predict(x.numpy(), timesteps=32))
    assert (out.argmax(1) == ann.argmax(1)).float().mean() >= 0.95
    assert (out - ann).abs().max() <= 0.1 * ann.abs().max()


def test_population_without_calibration_data_uses_worst_case_scales(mixed, tmp_path):
    net, x = mixed
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the once-per-process data-free warning is tested with rate
        snn = convert2snn.convert(net, "population", example_input=x[:1], n=8, progress=False)
    assert any("data-free" in a for a in snn.report.approximations)
    with torch.no_grad():
        y = net(x).argmax(1).numpy()
    assert snn.evaluate(x, y, timesteps=256).accuracy[0] >= 0.95
    lstm = SeqLSTM().eval()
    xs = torch.rand(48, 6, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(lstm, (xs[:1],), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    snn = convert2snn.convert(path, "population", input_range=(-1, 1), n=32, progress=False)
    with torch.no_grad():
        y = lstm(xs).argmax(1).numpy()
    assert snn.evaluate(xs.numpy(), y, timesteps=64).accuracy[0] >= 0.9


# -- any scalar activation, piece by piece ---------------------------------------------------------------
PIECEWISE = [nn.SiLU(), nn.GELU(), nn.ELU(), nn.LeakyReLU(0.1), nn.Hardswish(), nn.Mish(), nn.Softplus()]


def _activation_net(activation: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), activation, nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()


@pytest.mark.parametrize("activation", PIECEWISE, ids=lambda a: type(a).__name__)
def test_any_scalar_activation_converts_piece_by_piece_and_converges(activation):
    net = _activation_net(activation)
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(1)) * 6 - 3
    snn = _population(net, x, n=16, percentile=100.0)  # the T → ∞ limit was checked against the ANN
    (layer, scale), *_ = ((k, v) for k, v in snn.report.scales.items() if "low" in v)
    with torch.no_grad():
        pre = net[0](x)
        ann = net(x)
    assert scale["low"] == pytest.approx(float(pre.min())) and scale["high"] == pytest.approx(float(pre.max()))
    assert any(f"layer '{layer}': {type(activation).__name__} on its input range" in n for n in snn.report.notes)
    errors = [float((torch.as_tensor(snn.predict(x, t)) - ann).abs().max() / ann.abs().max()) for t in (16, 256)]
    assert errors[1] < errors[0] and errors[1] <= 0.02, errors
    with pytest.raises(convert2snn.UnsupportedLayerError, match="Use conversion_type='population'"):
        convert2snn.convert(net, "rate", x, progress=False)


def test_a_piecewise_population_is_saved_loaded_and_made_analog_per_layer(tmp_path):
    net = _activation_net(nn.SiLU())
    x = torch.rand(32, 6, generator=torch.Generator().manual_seed(1)) * 6 - 3
    snn = _population(net, x, n=8)
    assert sum(isinstance(m, PiecePopulationNode) for m in snn.network.modules()) == 2  # falling + rising
    snn.save(tmp_path / "silu.c2s")
    again = convert2snn.load(tmp_path / "silu.c2s")
    assert torch.equal(torch.as_tensor(snn.predict(x, 16)), torch.as_tensor(again.predict(x, 16)))
    layer = next(k for k, v in snn.report.scales.items() if "low" in v)
    analog = _population(net, x, n=8, layer_n={layer: 0})
    assert not any(isinstance(m, PiecePopulationNode) for m in analog.network.modules())
    with pytest.raises(convert2snn.ApproximationError, match="random thresholds drawn from it"):
        _population(net, x, n=8, mismatch="threshold", strict=True)


def test_an_analog_piecewise_layer_needs_no_range_and_narrow_ranges_convert():
    """layer_n = 0 keeps f exact on any input (no clamp to a calibrated range in its reference), and a
    percentile below 50 still gives low ≤ high; both were internal errors."""
    net = _activation_net(nn.SiLU())
    x = torch.rand(64, 6, generator=torch.Generator().manual_seed(2)) * 0.2  # a narrow input range
    layer = next(k for k, v in _population(net, x, n=8).report.scales.items() if "low" in v)
    analog = _population(net, x, n=8, layer_n={layer: 0})
    assert not any("low" in v for v in analog.report.scales.values())
    with torch.no_grad():
        expected = net(x)
    got = torch.as_tensor(analog.predict(x, 256))
    assert torch.allclose(got, expected, atol=0.05 * float(expected.abs().max()))
    low_percentile = _population(net, x, n=8, percentile=40.0)
    ranges = [v for v in low_percentile.report.scales.values() if "low" in v]
    assert ranges and all(r["low"] <= r["high"] for r in ranges)


def test_without_calibration_data_the_input_range_is_a_sound_bound(mixed):
    net = _activation_net(nn.GELU())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert2snn.convert(net, "population", example_input=torch.zeros(1, 6), input_range=(-1, 1), n=8)
    scale = next(v for v in snn.report.scales.values() if "low" in v)
    x = torch.rand(4096, 6, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        pre = net[0](x)
    assert scale["low"] <= float(pre.min()) and float(pre.max()) <= scale["high"]
