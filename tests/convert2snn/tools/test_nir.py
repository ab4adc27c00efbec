"""NIR export: a round trip through a .nir file reproduces every spike; unmappable layers are named."""

import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

import convert2snn
from convert2snn import UnsupportedLayerError
from convert2snn.neurons import IFNeuron

nir = pytest.importorskip("nir")
from convert2snn.tools.nir import from_nir  # noqa: E402


class AvgCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(6 * 2 * 2, 10)
        self.fc2 = nn.Linear(10, 3)
        self.eval()

    def forward(self, x):
        h = torch.relu(self.conv2(self.pool(torch.relu(self.conv1(x)))))
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def _spikes(network, x_seq):
    trains = []
    hooks = [
        m.register_forward_hook(lambda mod, i, out: trains.append(out.detach().clone()))
        for m in network.modules()
        if isinstance(m, IFNeuron)
    ]
    with torch.no_grad():
        functional.reset_net(network)
        out = network(x_seq)
        functional.reset_net(network)
    for h in hooks:
        h.remove()
    return out, trains


def test_round_trip_reproduces_spikes_exactly(tmp_path):
    x = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    snn = convert2snn.convert(AvgCNN(), calibration_data=x, progress=False)
    path = tmp_path / "snn.nir"
    graph = snn.to_nir(path)
    assert "convert2snn.warning" in graph.metadata
    assert sum(isinstance(n, nir.IF) for n in graph.nodes.values()) == 3
    imported = from_nir(path)
    x_seq = x[:16].unsqueeze(0).expand(24, 16, 1, 8, 8).contiguous()
    out_a, spikes_a = _spikes(snn.network, x_seq)
    out_b, spikes_b = _spikes(imported, x_seq)
    assert len(spikes_a) == len(spikes_b) == 3
    for a, b in zip(spikes_a, spikes_b):
        assert torch.equal(a, b) and a.sum() > 0
    assert torch.allclose(out_a, out_b, atol=1e-6)


def test_layers_without_nir_equivalent_are_named():
    class MaxCNN(AvgCNN):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2)

    x = torch.rand(16, 1, 8, 8)
    snn = convert2snn.convert(MaxCNN(), calibration_data=x, progress=False)
    with pytest.raises(UnsupportedLayerError, match=r"layer 'pool' \(SpikingMaxPool\) has no NIR equivalent"):
        snn.to_nir()
    with pytest.raises(convert2snn.InvalidInputError, match="rate-converted"):
        convert2snn.convert(AvgCNN(), "population", calibration_data=x, progress=False).to_nir()


def test_cli_export_writes_a_nir_file(tmp_path, monkeypatch, capsys):
    from convert2snn.__main__ import main

    x = torch.rand(32, 1, 8, 8)
    convert2snn.convert(AvgCNN(), calibration_data=x, progress=False).save(tmp_path / "snn.c2s")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "snn.c2s", "--format", "nir", "-o", "out/model.nir"]) == 0
    assert "NIR graph with" in capsys.readouterr().out
    graph = nir.read(str(tmp_path / "out" / "model.nir"))
    assert sum(isinstance(n, nir.IF) for n in graph.nodes.values()) == 3
    assert main(["export", "nothere.c2s", "-o", "x.nir"]) == 2
    assert "does not exist" in capsys.readouterr().err
