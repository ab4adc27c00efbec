"""Networks people bring: torchvision families convert exactly (in the T → ∞ limit) or are refused by
layer name before calibration; the structures behind them (a module called at several places,
channel splits and shuffles, crops, eval-mode identities, hard-sigmoid, deep chains) on small
networks. The whole zoo with Keras Applications: ``benchmarks/bench_zoo.py`` (and the slow test)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import convert2snn
from bridges.modules import Affine, Slice
from convert2snn import UnsupportedLayerError, schemes
from convert2snn.graph import normalize as normalize_module
from convert2snn.graph.limits import clipped_ann


def _randomised(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.5)
    return model


def _error_vs_clipped(snn, x, steps: int) -> float:
    with torch.no_grad():
        ref = clipped_ann(snn.ann, snn.scales)(snn.bridge_info.to_model_layout(torch.as_tensor(x))).numpy()
    out = snn.predict(x, steps)
    return float(np.abs(out - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5", "densenet121"])
def test_torchvision_families_convert_and_approach_the_clipped_ann(name):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    snn = convert2snn.convert(_randomised(name), "rate", x, percentile=100, progress=False)
    errors = [_error_vs_clipped(snn, x, t) for t in (16, 128)]
    assert errors[1] < errors[0] and errors[1] < 0.1, errors


@pytest.mark.parametrize(
    "name, words, activation",
    [
        ("efficientnet_b0", ["Multiply of two tensors", "layers 'mul', 'mul_1'"], "SiLU: not a ReLU-like activation"),
        ("mobilenet_v3_small", ["Multiply of two tensors", "Retrain"], "Hardswish: not a ReLU-like activation"),
        ("convnext_tiny", ["LayerNorm: normalises each sample", "layer_norm"], "GELU: not a ReLU-like activation"),
    ],
)
def test_refusals_come_right_after_the_bridge_and_name_the_layers(name, words, activation, monkeypatch):
    """Gates and per-sample norms are refused by every type; the activations by all but population."""
    monkeypatch.setattr(convert2snn.stages, "collect_statistics", lambda *a, **k: pytest.fail("calibration ran"))
    x = torch.rand(2, 3, 32, 32)
    ann = convert2snn.bridge(_randomised(name), x[:1])
    for kind in schemes.available():
        t0 = time.perf_counter()
        with pytest.raises(UnsupportedLayerError) as err:
            convert2snn.convert(ann, kind, x, progress=False)
        assert time.perf_counter() - t0 < 30  # generous on a loaded machine; the zoo benchmark measures it
        for word in words:
            assert word in str(err.value), (kind, word)
        assert (activation in str(err.value)) == (kind != "population"), kind
    # hard-sigmoid alone is a clipped ReLU: MobileNetV3's refusals are its hard-swish and its gates only
    assert "Hardsigmoid" not in str(err.value)


class SharedReLU(nn.Module):
    """One ReLU module called at three places on tensors of different widths (torchvision's Bottleneck)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b, self.c = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 4, 1), nn.Conv2d(4, 8, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 8 * 8, 3)

    def forward(self, x):
        x = self.relu(self.a(x))
        x = self.relu(self.b(x) * 3.0)
        return self.fc(self.relu(self.c(x)).flatten(1))


def test_a_module_called_at_several_places_gets_one_scale_per_call():
    net = SharedReLU()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    snn = convert2snn.convert(net, "rate", x, percentile=100, per_channel=False, progress=False)
    assert list(snn.report.scales) == ["relu", "relu#2", "relu#3"]
    with torch.no_grad():
        first = torch.relu(net.a(x))
        second = torch.relu(net.b(first) * 3.0)
        third = torch.relu(net.c(second))
    for layer, activation in zip(("relu", "relu#2", "relu#3"), (first, second, third)):
        assert snn.report.scales[layer]["lambda"] == pytest.approx(float(activation.max()), rel=1e-5)
    assert net.relu is not None and sum(isinstance(m, nn.ReLU) for m in net.modules()) == 1  # not modified
    assert _error_vs_clipped(snn, x, 256) < 0.02


class Moves(nn.Module):
    """Values moved, not computed: a channel split and shuffle, a crop, a strided pick, narrow."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.left, self.right = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(2 * 6 * 3 + 4 * 3 * 6, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))  # [8, 8, 8]
        a, b = x.chunk(2, dim=1)
        y = torch.cat([torch.relu(self.left(a)), torch.relu(self.right(b))], dim=1)
        y = y.reshape(y.shape[0], 2, 4, 8, 8).transpose(1, 2).reshape(y.shape[0], 8, 8, 8)  # channel shuffle
        crop = y[:, :2, 1:-1, 1:-1:2]  # [2, 6, 3]
        picked = torch.narrow(y, 1, 4, 4)[:, :, ::3, 1:7]  # [4, 3, 6]
        return self.head(torch.cat([crop.flatten(1), picked.flatten(1)], dim=1))


@pytest.mark.parametrize("kind", ["rate", "population", "temporal"])
def test_channel_splits_shuffles_and_crops_become_slices_and_convert(kind):
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    snn = convert2snn.convert(Moves(), kind, x, percentile=100, progress=False)
    kinds = [type(m).__name__ for m in snn.ann.modules()]
    assert kinds.count("Slice") >= 4 and "Permute" in kinds
    steps = snn.latency or 512
    assert _error_vs_clipped(snn, x, steps) < (0.2 if kind == "temporal" else 0.02)


def test_onnx_slices_from_a_cropping_layer(tmp_path):
    class Crop(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(7)
            self.conv, self.fc = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(3 * 6 * 4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x))[:, :, 1:-1, 2:-2].flatten(1))

    path = tmp_path / "crop.onnx"
    torch.onnx.export(
        Crop().eval(),
        (torch.rand(1, 2, 8, 8),),
        str(path),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
    )
    x = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(8))
    snn = convert2snn.convert(str(path), "rate", x, percentile=100, progress=False)
    slices = [m for m in snn.ann.modules() if isinstance(m, Slice)]
    assert len(slices) == 1 and slices[0].dims == (2, 3) and slices[0].starts == (1, 2)
    np.testing.assert_allclose(snn.ann_predict(x), Crop().eval()(x).detach().numpy(), rtol=1e-5, atol=1e-6)


class EvalIdentities(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        torch._assert(x.shape[1] == 1, "one channel")
        y = torchvision.ops.stochastic_depth(torch.relu(self.conv(x)), 0.3, "row", training=False)
        return self.fc(nn.functional.hardsigmoid(y).flatten(1))


def test_eval_mode_identities_and_assertions_are_dropped_and_hard_sigmoid_is_a_clipped_relu():
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(10))
    snn = convert2snn.convert(EvalIdentities(), "rate", x, percentile=100, progress=False)
    kinds = [type(m).__name__ for m in snn.ann.children()]
    assert kinds == ["Conv2d", "ReLU", "Affine", "Hardtanh", "Flatten", "Linear"] or "Hardtanh" in kinds
    assert all(n.op != "call_function" for n in snn.ann.graph.nodes), snn.ann.graph
    assert _error_vs_clipped(snn, x, 512) < 0.01


def test_weight_normalisation_is_linear_in_depth(monkeypatch):
    """Shapes are propagated a fixed number of times, not once per rewrite: a 150-layer chain converts."""
    calls = []
    propagate = normalize_module.propagate_shapes
    monkeypatch.setattr(normalize_module, "propagate_shapes", lambda *a: calls.append(1) or propagate(*a))
    torch.manual_seed(11)
    layers = []
    for i in range(150):
        layers += [nn.Conv2d(1 if i == 0 else 2, 2, 3, padding=1), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(2 * 4 * 4, 2)).eval()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(12))
    snn = convert2snn.convert(net, "rate", x, progress=False)
    assert len(calls) == 2  # once before the rewrites, once after
    leftover = [m for m in snn.network.modules() if isinstance(m, Affine)]
    assert not leftover  # every λ_in/λ_out folded into a Conv/Linear
    assert _error_vs_clipped(snn, x, 256) < 0.05


def test_indexing_that_cuts_the_batch_is_not_taken_for_a_slice():
    class BatchCut(nn.Module):
        def forward(self, x):
            return torch.relu(x[:4]).flatten(1)

    with pytest.raises(UnsupportedLayerError, match="getitem has no rate-coded equivalent"):
        convert2snn.convert(BatchCut(), "rate", torch.rand(8, 2, 3), progress=False)
