"""The clean-graph vocabulary (`bridges.ops`): one declaration per op, sound interval bounds, and
every module class a clean graph may contain saved and rebuilt from code-free files."""

from __future__ import annotations

import operator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

from bridges import ops
from bridges.converters.lstm import LSTM
from bridges.modules import Affine, OutputSoftmax, Pad, Permute, Reshape, Slice
from convert2snn.graph.serialize import graph_from_spec, graph_to_spec
from convert2snn.statistics import interval_maxima


def test_an_op_is_declared_once_and_looked_up_by_its_nearest_declared_class():
    with pytest.raises(ValueError, match="ReLU is declared twice"):
        ops.declare(nn.ReLU, bounds=lambda m, args, kwargs: args[0])

    class MyReLU(nn.ReLU):
        pass

    assert ops.spec(MyReLU()) is ops.spec(nn.ReLU()) and ops.spec(MyReLU(), exact=True) is None
    assert ops.spec(nn.ReLU6()).name == "ReLU6" and ops.spec(operator.add).name == "add"
    assert ops.function_named("cat") is torch.cat and ops.spec(torch.relu) is None


def _random_box(shape, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    return torch.minimum(a, b), torch.maximum(a, b), g


MODULES = {
    "linear": (lambda: nn.Linear(6, 4), (2, 6)),
    "conv": (lambda: nn.Conv2d(2, 3, 3, padding=1, groups=1), (2, 2, 5, 5)),
    "grouped conv": (lambda: nn.Conv2d(4, 4, 3, stride=2, groups=2), (2, 4, 7, 7)),
    "conv transpose": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2), (2, 2, 4, 4)),
    "affine": (
        lambda: Affine(torch.tensor([-2.0, 0.5, 1.0]).reshape(3, 1), torch.tensor([1.0, -1.0, 0.0]).reshape(3, 1)),
        (2, 3, 4),
    ),
    "max pool": (lambda: nn.MaxPool2d(2), (2, 1, 4, 4)),
    "avg pool": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    "relu6": (lambda: nn.ReLU6(), (2, 5)),
    "softmax": (lambda: OutputSoftmax(dim=1), (2, 5)),
    "pad": (lambda: Pad((1, 1), -3.0), (2, 5)),
    # scalar activations: rising ones (both ends) and ones that dip to a minimum (inside the box or not)
    **{type(a).__name__: ((lambda a=a: a), (2, 40)) for a in (nn.ELU(0.7), nn.Softplus(2.0), nn.LeakyReLU(0.2))},
    **{type(a).__name__: ((lambda a=a: a), (2, 40)) for a in (nn.SiLU(), nn.GELU(), nn.Hardswish(), nn.Mish())},
}


@pytest.mark.parametrize("name", list(MODULES))
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_declared_bounds_contain_every_output_of_the_box(name, seed):
    make, shape = MODULES[name]
    torch.manual_seed(seed)
    module = make()
    low, high, g = _random_box(shape, seed)
    out_low, out_high = ops.spec(module).bounds(module, ((low, high),), {})
    with torch.no_grad():
        for _ in range(8):  # random points of the box, and its corners
            x = low + (high - low) * torch.rand(shape, generator=g)
            y = module(x)
            assert bool((y >= out_low - 1e-5).all() and (y <= out_high + 1e-5).all()), name


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_bounds_of_functions_are_sound(seed):
    (al, ah, g), (bl, bh, _) = _random_box((3, 4), seed), _random_box((3, 4), seed + 1)
    for fn in (operator.add, operator.sub, operator.mul):
        lo, hi = ops.spec(fn).bounds(fn, ((al, ah), (bl, bh)), {})
        for _ in range(8):
            a = al + (ah - al) * torch.rand((3, 4), generator=g)
            b = bl + (bh - bl) * torch.rand((3, 4), generator=g)
            y = fn(a, b)
            assert bool((y >= lo - 1e-6).all() and (y <= hi + 1e-6).all()), fn.__name__


@pytest.mark.parametrize("activation", [nn.SiLU(), nn.GELU(), nn.GELU("tanh"), nn.Hardswish(), nn.Mish()])
def test_the_minimum_of_a_dipping_activation_is_its_lower_bound(activation):
    """The bound is tight: over an interval around the minimum it is the minimum (dense grid)."""
    z = torch.linspace(-4.0, 4.0, 400_001, dtype=torch.float64)
    low, high = ops.spec(activation).bounds(activation, ((torch.tensor([-4.0]), torch.tensor([4.0])),), {})
    assert float(low) == pytest.approx(float(activation(z).min()), abs=1e-6)  # float32 bounds
    assert float(high) == pytest.approx(float(activation(z).max()), abs=1e-6)


@pytest.mark.parametrize(
    "activation", [nn.LeakyReLU(-0.3), nn.ELU(-0.5), nn.CELU(-0.7), nn.LeakyReLU(0.2), nn.ELU(1.0)], ids=repr
)
def test_bounds_of_activations_that_dip_for_some_parameters_are_sound(activation):
    """A negative slope or alpha makes LeakyReLU / ELU / CELU fall, then rise: taking both ends as
    the bounds (right for the usual parameters) would invert them."""
    for lo, hi in ((-10.0, 1.0), (-1.0, 3.0), (0.5, 2.0), (-3.0, -1.0)):
        z = torch.linspace(lo, hi, 100_001)
        low, high = ops.spec(activation).bounds(activation, ((torch.tensor([lo]), torch.tensor([hi])),), {})
        assert float(low) <= float(activation(z).min()) + 1e-6 and float(activation(z).max()) <= float(high) + 1e-6
        assert float(low) == pytest.approx(float(activation(z).min()), abs=1e-4)  # tight, too


def test_data_free_bounds_refuse_an_op_without_a_declaration():
    gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.ReLU()))
    with pytest.raises(Exception) as err:
        interval_maxima(gm, (4,), (0.0, 1.0), ["2"])
    assert "PReLU" in str(err.value) and "pass calibration_data" in str(err.value)


def test_every_module_class_of_the_vocabulary_is_saved_and_rebuilt():
    instances = [
        nn.Conv1d(2, 3, 3),
        nn.Conv2d(2, 3, 3, bias=False),
        nn.Conv3d(1, 2, 1),
        nn.ConvTranspose1d(2, 2, 2),
        nn.ConvTranspose2d(2, 3, 2, stride=2),
        nn.ConvTranspose3d(1, 1, 1),
        nn.Linear(3, 2),
        nn.ReLU(),
        nn.ReLU6(),
        nn.Hardtanh(0.0, 2.0),
        nn.LeakyReLU(0.1),
        nn.ELU(),
        *(cls() for cls in ops.SCALAR_ACTIVATIONS),
        nn.GELU(approximate="tanh"),
        nn.Softplus(beta=2.0, threshold=10.0),
        nn.Sigmoid(),
        nn.Tanh(),
        nn.Softmax(dim=1),
        OutputSoftmax(dim=1),
        nn.MaxPool1d(2),
        nn.MaxPool2d(2, 1),
        nn.MaxPool3d(1),
        nn.AdaptiveMaxPool1d(1),
        nn.AdaptiveMaxPool2d(2),
        nn.AdaptiveMaxPool3d(1),
        nn.AvgPool1d(2),
        nn.AvgPool2d(3, 2, 1),
        nn.AvgPool3d(1),
        nn.AdaptiveAvgPool1d(1),
        nn.AdaptiveAvgPool2d((2, 1)),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Unflatten(1, (2, 2)),
        nn.Identity(),
        Reshape((4,)),
        Permute((0, 2, 1)),
        nn.Upsample(scale_factor=2.0),
        Pad((1, 0), 0.5),
        Slice((1, 2), (0, 1), (2, 3), (1, 2)),
        Affine(torch.ones(3), None),
        LSTM(torch.randn(2, 8, 3), torch.randn(2, 8, 2), torch.randn(2, 16), None, "bidirectional", 1),
    ]
    assert {type(m) for m in instances} == set(ops.module_classes().values())  # every declared class
    root = nn.Module()
    graph = fx.Graph()
    x = graph.placeholder("x")
    for i, module in enumerate(instances):
        root.add_module(f"m{i}", module)
        graph.call_module(f"m{i}", (x,))
    graph.output(x)
    gm = fx.GraphModule(root, graph)
    rebuilt = graph_from_spec(graph_to_spec(gm), gm.state_dict())
    for i, module in enumerate(instances):
        copy = rebuilt.get_submodule(f"m{i}")
        assert type(copy) is type(module) and repr(copy) == repr(module), repr(module)
        for key, value in module.state_dict().items():
            assert torch.equal(copy.state_dict()[key], value), (repr(module), key)
    lstm = rebuilt.get_submodule(f"m{len(instances) - 1}")
    assert lstm.direction == "bidirectional" and lstm.layout == 1 and lstm.hidden_size == 2
