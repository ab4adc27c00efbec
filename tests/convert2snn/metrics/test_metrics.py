"""Metrics: counters vs brute force, fan-out vs one-hot perturbation, SOPs, MACs, energy, correlation, tables."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import convert2snn
from convert2snn import metrics
from convert2snn.metrics import sinks
from convert2snn.neurons import IFNeuron

from ..nets import RandomNet


def _quiet(net, x, **kw):
    return convert2snn.convert(net, calibration_data=x, progress=False, **kw)


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)
        self.eval()

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class ConvChain(nn.Module):
    """Conv consumers with padding, stride 2 and groups, then a Linear consumer."""

    def __init__(self, pool: nn.Module | None = None):
        super().__init__()
        torch.manual_seed(2)
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = pool if pool is not None else nn.Identity()
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(6 * self._side() ** 2, 5)
        self.eval()

    def _side(self):
        with torch.no_grad():
            return self.c2(self.pool(torch.zeros(1, 4, 9, 9))).shape[-1]

    def trunk(self, x):
        return torch.relu(self.c1(x))

    def forward(self, x):
        h = torch.relu(self.c2(self.pool(self.trunk(x))))
        return self.fc(h.flatten(1))


@torch.no_grad()
def brute_fan_out(consumer, shape):
    """Synapses of each input element: one-hot perturbation of the real layers, count of changed outputs."""
    base = consumer(torch.zeros((1,) + shape))
    n = int(np.prod(shape))
    out = np.zeros(n)
    for i in range(n):
        x = torch.zeros(n)
        x[i] = 1.0
        out[i] = int(((consumer(x.reshape((1,) + shape)) - base).abs() > 0).sum())
    return out.reshape(shape)


@pytest.fixture(scope="module")
def mlp():
    x = torch.rand(200, 4) * 2 - 0.5
    return _quiet(TinyMLP(), x), x


def test_counters_agree_with_brute_force_if_dynamics(mlp):
    snn, x = mlp
    x = x[:40]
    T = 23
    currents = []
    neuron = next(m for m in snn.network.modules() if isinstance(m, IFNeuron))
    handle = neuron.register_forward_hook(lambda m, i, o: currents.append(i[0][0].clone()))
    snn.predict(x, timesteps=1)
    handle.remove()
    current = currents[0].double()  # [N, 6]: the (constant) input current of each neuron
    theta = neuron.v_threshold
    v = torch.full_like(current, neuron.v_init * theta)
    counts = torch.zeros_like(current)
    per_step = []
    for _ in range(T):  # integrate-and-fire with reset by subtraction, by hand
        v += current
        s = (v >= theta).double()
        v -= s * theta
        counts += s
        per_step.append(float(counts.sum()))
    layer = "relu"
    assert snn.spike_counts(x, T) == {layer: int(counts.sum())}
    assert np.array_equal(snn.spike_counts(x, T, per_neuron=True)[layer], counts.sum(0).long().numpy())
    hist = snn.spike_counts(x, T, mode=1)[layer]
    assert np.array_equal(hist, np.bincount(counts.long().reshape(-1).numpy()))
    assert hist.sum() == 40 * 6
    y = snn.ann_predict(x).argmax(1)
    result = snn.evaluate(x, y, timesteps=[1, 5, T])
    expected = [per_step[t - 1] / (40 * 6) for t in (1, 5, T)]
    assert result.spikes_per_neuron == pytest.approx(expected)
    assert result.layer_spikes_per_neuron[layer] == pytest.approx(expected)


def test_fan_out_of_linear_consumer_is_out_features(mlp):
    snn, _ = mlp
    fan = snn.fan_out()
    assert list(fan) == ["relu"] and fan["relu"].shape == (6,) and np.all(fan["relu"] == 3)


@pytest.mark.parametrize(
    "pool",
    [None, nn.MaxPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(3, stride=1)],
    ids=["direct", "maxpool2", "overlapping-maxpool", "overlapping-avgpool"],
)
def test_fan_out_equals_one_hot_perturbation(pool):
    net = ConvChain(pool)
    x = torch.rand(64, 1, 9, 9)
    snn = _quiet(net, x)
    fan = snn.fan_out()
    names = list(fan)  # neuron layers in graph order: after c1, after c2
    # c1's neurons drive (through the pooling) the strided, padded, grouped conv c2
    consumer = nn.Sequential(net.pool, nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False))
    with torch.no_grad():
        consumer[1].weight.copy_(net.c2.weight)
    assert np.array_equal(fan[names[0]], brute_fan_out(consumer, (4, 9, 9)))
    # c2's neurons drive the Linear layer through a flatten
    h = net.c2(net.pool(torch.zeros(1, 4, 9, 9)))
    assert np.all(fan[names[1]] == 5) and fan[names[1]].shape == tuple(h.shape[1:])
    # both algorithms agree (path counting is refused where windows overlap and one-hot inputs are used)
    exact = metrics.fan_out(snn.network, snn.bridge_info.input_shape, method="exact")
    assert all(np.array_equal(fan[k], exact[k]) for k in fan)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_fan_out_through_add_and_concat(seed):
    """Residual Add (a weightless synapse into the next neuron) and Concat: path counts = one-hot counts."""
    net = RandomNet(seed)
    snn = _quiet(net, torch.rand(64, 2, 8, 8))
    auto = snn.fan_out()
    exact = metrics.fan_out(snn.network, snn.bridge_info.input_shape, method="exact")
    assert all(np.array_equal(auto[k], exact[k]) for k in auto)
    first = auto["relu"]  # feeds the 3x3 conv c2 (padding 1) of `width` channels, maybe a residual add too
    width = net.c2.out_channels
    interior = first[:, 3, 3]
    assert np.all(interior >= 9 * width) and np.all(first[:, 0, 0] >= 4 * width)


def test_sops_equal_spikes_times_fan_out():
    net = ConvChain(nn.MaxPool2d(2))
    x = torch.rand(48, 1, 9, 9)
    snn = _quiet(net, x)
    consumer = nn.Sequential(net.pool, nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False))
    with torch.no_grad():
        consumer[1].weight.copy_(net.c2.weight)
    brute = {"relu": brute_fan_out(consumer, (4, 9, 9))}
    layers = list(snn.neuron_counts())
    brute[layers[1]] = np.full(snn.neuron_counts()[layers[1]], 5.0)
    y = snn.ann_predict(x).argmax(1)
    result = snn.evaluate(x, y, timesteps=[3, 10])
    for i, t in enumerate((3, 10)):
        per_neuron = snn.spike_counts(x, t, per_neuron=True)
        expected = {k: float((per_neuron[k] * brute[k].reshape(-1)).sum()) / len(x) for k in layers}
        for k in layers:
            assert result.layer_sops[k][i] == pytest.approx(expected[k], rel=1e-12)
        assert result.sops[i] == pytest.approx(sum(expected.values()), rel=1e-12)


def test_macs_and_energy_follow_the_presets():
    net = ConvChain(nn.MaxPool2d(2))
    x = torch.rand(32, 1, 9, 9)
    snn = _quiet(net, x)
    y = snn.ann_predict(x).argmax(1)
    result = snn.evaluate(x, y, timesteps=[4, 16])
    c1 = 9 * 9 * 4 * (1 * 9)  # output positions × channels × (in channels × kernel)
    c2 = 2 * 2 * 6 * (2 * 9)  # 4x4 pooled map, stride 2 → 2x2; 2 input channels per group
    fc = 5 * 24
    assert result.layer_macs == {"c1": c1, "c2": c2, "fc": fc}
    assert result.ann_macs == c1 + c2 + fc
    assert result.input_macs == c1  # the analog input drives c1 once per inference
    assert result.energy_model == {"name": "45nm-fp32", "e_mac_pj": 4.6, "e_ac_pj": 0.9}
    for i in range(2):
        assert result.snn_energy_pj[i] == pytest.approx(result.sops[i] * 0.9 + c1 * 4.6)
    assert result.ann_energy_pj == pytest.approx((c1 + c2 + fc) * 4.6)
    for preset, (mac, ac) in {"fp16": (1.5, 0.4), "int8": (0.23, 0.03), "2.0,0.5": (2.0, 0.5)}.items():
        other = result.with_energy(preset)
        assert other.ann_energy_pj == pytest.approx(result.ann_macs * mac)
        assert other.snn_energy_pj[1] == pytest.approx(result.sops[1] * ac + c1 * mac)
    assert snn.evaluate(x, y, [4], energy=(1.0, 0.1)).energy_model["name"] == "custom"
    with pytest.raises(convert2snn.InvalidInputError, match="unknown energy model"):
        metrics.energy_model("fp64")


def test_poisson_input_counts_input_synaptic_operations():
    net = TinyMLP()
    x = torch.rand(64, 4)
    snn = _quiet(net, x, encoding="poisson")
    result = snn.evaluate(x, snn.ann_predict(x).argmax(1), timesteps=[8])
    assert result.input_macs == 0.0
    assert "input" in result.layer_sops and snn.fan_out()["input"].tolist() == [6] * 4
    # each input spike drives fc1's 6 outputs: SOPs = 6 × input spikes; mean input rate ≈ 0.5
    assert result.layer_sops["input"][0] == pytest.approx(6 * 4 * 8 * float(x.mean()), rel=0.15)


def test_time_to_accuracy():
    ts, acc = [2, 4, 8, 16], [0.5, 0.981, 0.985, 0.9905]
    assert metrics.time_to_accuracy(ts, acc, 0.99, 0.01) == 4
    assert metrics.time_to_accuracy(ts, acc, 0.99, 0.001) == 16
    assert metrics.time_to_accuracy(ts, acc, 0.999, 0.001) is None


def test_streaming_pearson_matches_numpy():
    g = np.random.default_rng(0)
    a, b = g.normal(size=1000), g.normal(size=1000)
    b = b + 2 * a + 100.0
    m = sinks.Moments()
    for i in range(0, 1000, 137):
        m.update(torch.tensor(a[i : i + 137]), torch.tensor(b[i : i + 137]))
    assert m.r() == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)


def test_correlation_grows_with_t_and_reaches_one():
    net = RandomNet(1)
    x = torch.rand(64, 2, 8, 8)
    snn = _quiet(net, x, percentile=100.0)
    result = snn.evaluate(x, snn.ann_predict(x).argmax(1), timesteps=[2, 256])
    assert set(result.layer_correlation) == set(snn.neuron_counts())
    for low, high in result.layer_correlation.values():
        assert high > 0.999 and low < high


def test_neuron_counts_mode_1_skips_layers_after_average_pooling():
    class AfterAvg(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c = nn.Conv2d(1, 3, 3, padding=1)
            self.pool = nn.AvgPool2d(2)
            self.fc = nn.Linear(3 * 16, 2)

        def forward(self, x):
            h = torch.relu(self.pool(torch.relu(self.c(x))))
            return self.fc(h.flatten(1))

    snn = _quiet(AfterAvg(), torch.rand(32, 1, 8, 8))
    all_layers = snn.neuron_counts()
    assert len(all_layers) == 2 and snn.neuron_counts(mode=0) == all_layers
    assert snn.neuron_counts(mode=1) == {"relu": 3 * 64}
    with pytest.raises(convert2snn.InvalidInputError, match="mode"):
        snn.neuron_counts(mode=2)


def test_spike_trains_match_counts(mlp):
    snn, x = mlp
    trains = snn.spike_trains(x[:1], timesteps=17, neurons=4)
    spikes = trains["relu"]["spikes"]
    assert spikes.shape == (17, len(trains["relu"]["indices"])) and set(np.unique(spikes)) <= {0.0, 1.0}
    per_neuron = snn.spike_counts(x[:1], 17, per_neuron=True)["relu"]
    assert np.array_equal(spikes.sum(0), per_neuron[trains["relu"]["indices"]])


def test_result_tables(mlp, tmp_path):
    snn, x = mlp
    result = snn.evaluate(x, snn.ann_predict(x).argmax(1), timesteps=[4, 32])
    d = json.loads(result.to_json(tmp_path / "r.json"))
    assert d["timesteps"] == [4, 32] and d["sops"] == result.sops and "layer_correlation" in d
    assert convert2snn.EvaluationResult.from_dict(d).sops == result.sops
    lines = result.to_csv(tmp_path / "r.csv").splitlines()
    assert lines[0].startswith("T,accuracy,ann_accuracy,spikes_per_neuron,sops") and len(lines) == 3
    assert (tmp_path / "r.csv").read_text().splitlines() == lines
    layer_rows = result.to_csv(per_layer=True).splitlines()
    assert layer_rows[0] == "T,layer,neurons,spikes_per_neuron,sops,correlation" and len(layer_rows) == 3
    text = str(result)
    assert "E_SNN/E_ANN" in text and "time to accuracy" in text and "r(ANN,SNN)" in text
