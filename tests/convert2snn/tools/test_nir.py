"""NIR export: every consumer profile round-trips through a .nir file with every spike; residual Adds become
summed edges; what cannot be written is refused by name; non-NIR neurons warn."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import convert2snn
from convert2snn import UnsupportedLayerError
from convert2snn.tools import nir_consumers
from tests.convert2snn.tools.nir_nets import AvgCNN, ResidualCNN, sequence

nir = pytest.importorskip("nir")
from convert2snn.tools.nir import DT, from_nir  # noqa: E402

X = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
CONSUMERS = ["nir", "norse", "snntorch", "sinabs"]


def _key(graph, layer):
    """The node written for ``layer`` (nodes are numbered in graph order: 'n007_relu_2')."""
    return next(k for k in graph.nodes if k.split("_", 1)[-1] == layer)


def _convert(net, **options):
    return convert2snn.convert(net, calibration_data=X, progress=False, **options)


def _is_float_array(value) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


def _same_spikes(snn, imported, steps=24):
    xs = sequence(X[:16], steps)
    out_a, spikes_a = nir_consumers.reference(snn.network, xs)
    spikes_b = []
    hooks = [
        m.register_forward_hook(lambda mod, i, out: spikes_b.append(out.detach().clone()))
        for m in imported.modules()
        if isinstance(m, convert2snn.neurons.IFNeuron)
    ]
    with torch.no_grad():
        out_b = imported(xs)[-1]
    for h in hooks:
        h.remove()
    assert len(spikes_a) == len(spikes_b) >= 2
    return out_a, out_b, list(spikes_a.values()), spikes_b


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("target", [None, "consumer"])
def test_round_trip_reproduces_spikes_exactly(tmp_path, consumer, target):
    snn = _convert(AvgCNN(), nir_target=consumer if target else None)
    path = tmp_path / "snn.nir"
    if target:
        graph = snn.to_nir(path, consumer=consumer)
        assert graph.metadata["convert2snn.exact"] == "yes"
    else:
        with pytest.warns(UserWarning, match=f"convert with nir_target='{consumer}' for an exact export"):
            graph = snn.to_nir(path, consumer=consumer)
        assert graph.metadata["convert2snn.exact"] == "no"
        assert "v_init 0.5 (runs 0.0)" in graph.metadata["convert2snn.differences"]
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert list(nir.read(str(path)).nodes) == sorted(graph.nodes)  # numbered: a file reads back in graph order
    assert sorted(graph.nodes)[1:-1] == [k for k in graph.nodes if k not in ("input", "output")]
    assert kinds.count("LIF" if consumer == "snntorch" else "IF") == 2
    assert ("SumPool2d" in kinds) == (consumer in ("norse", "sinabs"))
    assert "Scale" not in kinds or consumer == "nir"
    floats = [(k, f, v.dtype) for k, n in graph.nodes.items() for f, v in vars(n).items() if _is_float_array(v)]
    # float32, as the network runs: snnTorch carries a membrane in float64 after a float64 τ (spikes then differ)
    assert floats and all(dtype == np.float32 for _, _, dtype in floats), [f for f in floats if f[2] != np.float32]
    imported = from_nir(path)
    assert all(n.tau is None for n in imported.modules() if isinstance(n, convert2snn.neurons.IFNeuron))  # no leak
    out_a, out_b, spikes_a, spikes_b = _same_spikes(snn, imported)
    for a, b in zip(spikes_a, spikes_b):
        assert torch.equal(a, b) and a.sum() > 0
    assert torch.allclose(out_a, out_b, atol=1e-6)


def test_default_export_is_for_the_conversion_target():
    assert _convert(AvgCNN(), nir_target="sinabs").to_nir().metadata["convert2snn.consumer"] == "sinabs"
    with pytest.warns(UserWarning):
        assert _convert(AvgCNN()).to_nir().metadata["convert2snn.consumer"] == "nir"


def test_residual_add_becomes_summed_edges():
    snn = _convert(ResidualCNN(), nir_target="nir")
    graph = snn.to_nir(consumer="nir")
    into = [s for s, d in graph.edges if d == _key(graph, "relu_2")]
    assert sorted(type(graph.nodes[s]).__name__ for s in into) == ["Conv2d", "Scale"]
    out_a, out_b, spikes_a, spikes_b = _same_spikes(snn, from_nir(graph))
    assert all(torch.equal(a, b) for a, b in zip(spikes_a, spikes_b))
    assert torch.allclose(out_a, out_b, atol=1e-6)


def test_residual_skip_is_a_bare_edge_for_depth_first_importers():
    """Norse and Sinabs order nodes depth-first: the skip's rescaling moves into the conv and the threshold."""
    snn = _convert(ResidualCNN(), nir_target="norse")
    graph = snn.to_nir(consumer="norse")
    assert graph.metadata["convert2snn.exact"] == "up to float rounding"
    # the file reads back in graph order: a removed skip node leaves no number for the next layer to reuse
    assert sorted(graph.nodes)[1:-1] == [k for k in graph.nodes if k not in ("input", "output")], list(graph.nodes)
    into = [s for s, d in graph.edges if d == _key(graph, "relu_2")]
    assert into == [_key(graph, "conv3"), _key(graph, "relu")]  # the long branch, then the skip from the neuron
    theta = np.asarray(graph.nodes[_key(graph, "relu_2")].v_threshold)
    scale = snn.network.get_submodule("relu_2_in_1").module.scale.flatten()
    assert np.allclose(theta[:, 0, 0], 1.0 / scale.numpy(), rtol=1e-6)
    out_a, out_b, spikes_a, spikes_b = _same_spikes(snn, from_nir(graph))
    for a, b in zip(spikes_a, spikes_b):
        assert float((a != b).float().mean()) < 1e-3
    assert torch.allclose(out_a, out_b, atol=1e-4)


def test_leaky_neurons_export_with_their_time_constant():
    snn = _convert(AvgCNN(), neuron="lif", tau=20.0, nir_target="nir")
    graph = snn.to_nir(consumer="nir")
    lif = graph.nodes[_key(graph, "relu")]
    assert isinstance(lif, nir.LIF)
    assert np.allclose(lif.tau, 20.0 * DT) and np.allclose(lif.r, 20.0)
    out_a, out_b, spikes_a, spikes_b = _same_spikes(snn, from_nir(graph))
    assert all(torch.equal(a, b) for a, b in zip(spikes_a, spikes_b))


class MaxCNN(AvgCNN):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)


class CatCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, padding=1), nn.Linear(4 * 64, 3)

    def forward(self, x):
        return self.fc(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1).flatten(1))


class GroupedCNN(AvgCNN):
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=4)


class PaddedPoolCNN(AvgCNN):
    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)


class TwoBranchResidual(ResidualCNN):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv3(torch.relu(self.conv2(h))) + self.down(h))
        return self.fc(self.pool(h).flatten(1))


class SharedBranch(ResidualCNN):
    def __init__(self):
        super().__init__()
        self.fc2 = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        c = self.conv3(torch.relu(self.conv2(h)))  # feeds the residual Add and another neuron
        a = torch.relu(c + h)
        return self.fc(self.pool(a).flatten(1)) + self.fc2(self.pool(torch.relu(c)).flatten(1))


class TwoHeads(AvgCNN):
    def __init__(self):
        super().__init__()
        self.fc2 = nn.Linear(12 * 2 * 2, 10)

    def forward(self, x):
        h = torch.relu(self.conv2(self.pool(torch.relu(self.conv1(x))))).flatten(1)
        return self.fc(h) + self.fc2(h)  # the readout sums two layers: two edges into the output


@pytest.mark.parametrize(
    ("net", "options", "consumer", "message"),
    [
        (MaxCNN, {}, "nir", r"layer 'pool' \(SpikingMaxPool\) has no NIR equivalent: max pooling of spikes"),
        (CatCNN, {}, "nir", r"\(SeqCat\) has no NIR equivalent: NIR 1.0 has no concatenation node"),
        (GroupedCNN, {}, "norse", r"layer 'conv2': a grouped Conv2d \(groups=4\) is built wrongly by norse"),
        (PaddedPoolCNN, {}, "sinabs", r"layer 'pool': a padded average pool; sinabs's SumPool2d has no padding"),
        (AvgCNN, {"max_spikes_per_step": 2}, "nir", r"layer 'relu': the IF neuron fires bursts of up to 2 spikes"),
        (AvgCNN, {"timesteps": 2, "recipes": "potential"}, "nir", "starts per channel"),
        (AvgCNN, {"neuron": "lif"}, "norse", r"layer 'relu': norse's NIR importer does not run a LIF neuron's leak"),
        (ResidualCNN, {}, "snntorch", r"layer 'relu_2' adds two branches \(a residual Add\), which snntorch cannot"),
        (TwoBranchResidual, {}, "sinabs", r"layer 'relu_2': a residual Add whose branches both hold layers"),
        (SharedBranch, {}, "norse", r"layer 'output': norse's importer .* would run it before its input 'fc2'"),
        (TwoHeads, {}, "snntorch", r"the output adds two branches \('.*'\), which snntorch cannot run"),
    ],
)
def test_what_nir_cannot_state_is_refused_by_name(net, options, consumer, message):
    snn = _convert(net().eval(), **options)
    with pytest.raises(UnsupportedLayerError, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the default neurons' warning, before the refusal
        snn.to_nir(consumer=consumer)


def test_bad_requests_are_named():
    with pytest.raises(convert2snn.InvalidInputError, match="unknown NIR consumer 'lava'; known: nir, norse"):
        _convert(AvgCNN()).to_nir(consumer="lava")
    with pytest.raises(convert2snn.InvalidInputError, match="not .population.: its units .* have no NIR node"):
        convert2snn.convert(AvgCNN(), "population", calibration_data=X[:16], progress=False).to_nir()


def test_cli_export_writes_a_nir_file_for_a_consumer(tmp_path, monkeypatch, capsys):
    from convert2snn.__main__ import main

    _convert(AvgCNN(), nir_target="norse").save(tmp_path / "exact.c2s")
    _convert(AvgCNN()).save(tmp_path / "default.c2s")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "exact.c2s", "--format", "nir", "-o", "out/model.nir"]) == 0
    out = capsys.readouterr().out
    assert "NIR graph for norse with" in out and "note:" not in out
    graph = nir.read(str(tmp_path / "out" / "model.nir"))
    assert sum(isinstance(n, nir.IF) for n in graph.nodes.values()) == 2
    assert main(["export", "default.c2s", "--consumer", "snntorch", "-o", "d.nir"]) == 0
    out = capsys.readouterr().out
    assert "note: snntorch runs other neurons" in out and "--option nir_target=snntorch" in out
    _convert(ResidualCNN(), nir_target="sinabs").save(tmp_path / "residual.c2s")
    assert main(["export", "residual.c2s", "-o", "r.nir"]) == 0
    out = capsys.readouterr().out
    assert "note: sinabs runs this SNN's neurons; its spikes equal ours up to float rounding" in out
    assert main(["export", "nothere.c2s", "-o", "x.nir"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("consumer", ["norse", "sinabs"])
def test_fine_tuned_exact_conversion_still_exports_exactly(consumer):
    """Backpropagation with learned thresholds keeps the consumer's neurons: the export stays exact."""
    from tests.convert2snn.tools.nir_nets import digits

    x, y = digits()
    snn = _convert(AvgCNN(), nir_target=consumer)
    neurons = [m for m in snn.network.modules() if isinstance(m, convert2snn.neurons.IFNeuron)]
    thresholds = [float(n.v_threshold) for n in neurons]
    weight = snn.network.conv1.module.weight.detach().clone()
    snn.fine_tune(x[:128].numpy(), y[:128].numpy(), timesteps=4, batch_size=32, learn_thresholds=True, progress=False)
    assert [float(n.v_threshold) for n in neurons] != thresholds and not torch.equal(
        snn.network.conv1.module.weight, weight
    )
    assert all(n.reset_mode == ("zero" if consumer == "norse" else "subtract") for n in neurons)
    graph = snn.to_nir(consumer=consumer)
    assert graph.metadata["convert2snn.exact"] == "yes"
    out_a, out_b, spikes_a, spikes_b = _same_spikes(snn, from_nir(graph))
    assert all(torch.equal(a, b) for a, b in zip(spikes_a, spikes_b))
    assert torch.allclose(out_a, out_b, atol=1e-6)
