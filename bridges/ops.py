"""The clean-graph vocabulary: every module class and function a clean graph may contain, declared once.

A clean graph (`bridges.canonicalize`) is made of the ops declared here. Each declaration says
what every later stage needs to know about the op, so that adding an op to the vocabulary is its
converter or pass plus one `declare` call here:

- its **groups** below (weighted layer, ReLU-like activation, average / max pooling, a map that
  only moves values, ...): the only lists of layer types in the project; conversion schemes
  decide support and handling by group;
- ``bounds``: how per-element [low, high] intervals pass through the op (data-free scales). An
  op without bounds is refused there by name, never assumed to be monotone;
- ``arguments`` / ``construct``: how its constructor arguments are saved and how it is rebuilt,
  for a model file that contains no code (`convert2snn.graph.serialize`); by default the
  arguments are read from the module's attributes of the same name, as torch's layers keep them;
- ``macs``: multiply-accumulates per sample, for weighted layers.

A module is looked up by the most specific declared class in its hierarchy (`spec`), as the
conversion rules do, so a subclass computes (bounds, MACs) as its declared base; saving asks
for its exact class (``exact=True``), since a file can only rebuild declared classes. Functions
are looked up by identity; ``name`` is how files refer to them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .converters.lstm import LSTM
from .modules import Affine, OutputSoftmax, Pad, Permute, Reshape, Slice

Interval = tuple[torch.Tensor, torch.Tensor]
# bounds(op, inputs, kwargs) -> output interval(s); ``op`` is the module or the function, ``inputs``
# the node's arguments with every tensor replaced by its interval
Bounds = Callable[[Any, tuple, dict], Any]

# -- groups (the one place that lists layer types) ---------------------------------------------------
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
WEIGHTED = (nn.Linear,) + CONV + CONV_TRANSPOSE
RELU_LIKE = (
    nn.ReLU,
    nn.Hardtanh,
)  # activations clipped below at 0 (Hardtanh: only with min_val = 0); ReLU6 is a Hardtanh
SQUASHING = (nn.Sigmoid, nn.Tanh)
# Other activations that apply one scalar function to every element (no per-channel parameters)
SCALAR_ACTIVATIONS = (
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Softplus,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Hardshrink,
    nn.Softshrink,
    nn.SiLU,
    nn.GELU,
    nn.Mish,
    nn.Hardswish,
)
DIPPING = (nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish)  # fall to one minimum, then rise; the others rise
AVG_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
MAX_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
ADAPTIVE_POOL = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
POOL = AVG_POOL + MAX_POOL
MOVES_VALUES = (
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    Reshape,
    Permute,
    Slice,
)  # elements moved or dropped, none computed
# Maps that commute with averaging over time, so a spiking network runs them once per time step:
# Conv/Linear, average pooling, reshapes, upsampling, padding and constant affine maps.
AFFINE_MAPS = WEIGHTED + AVG_POOL + MOVES_VALUES + (nn.Upsample, Pad, Affine)
# Maps that act on each channel separately: a positive per-channel scale commutes with them.
CHANNEL_WISE = AVG_POOL + MAX_POOL + (nn.Upsample,)
SOFTMAX = (nn.Softmax, OutputSoftmax)
RECURRENT = (LSTM,)


@dataclass(frozen=True)
class OpSpec:
    """What every stage needs to know about one op of the clean-graph vocabulary."""

    key: Any  # the module class or the function
    name: str  # class name, or the function's name in model files
    bounds: Bounds
    macs: Callable[[nn.Module, tuple[int, ...], tuple[int, ...]], int] | None = None
    arguments: Callable[[nn.Module, dict], None] | None = None  # adjusts the attribute-read constructor arguments
    construct: Callable[[dict], nn.Module] | None = None  # rebuilds the module from saved arguments


_SPECS: dict[Any, OpSpec] = {}
_FUNCTIONS_BY_NAME: dict[str, Callable] = {}


def declare(*keys: Any, bounds: Bounds, macs=None, arguments=None, construct=None, name: str | None = None) -> None:
    """Add ops to the vocabulary (a key declared twice is an error: each op has one declaration)."""
    for key in keys:
        if key in _SPECS:
            raise ValueError(f"{getattr(key, '__name__', key)} is declared twice in the clean-graph vocabulary")
        spec_name = name or key.__name__
        _SPECS[key] = OpSpec(key, spec_name, bounds, macs, arguments, construct)
        if not isinstance(key, type):
            _FUNCTIONS_BY_NAME[spec_name] = key


def spec(op: Any, *, exact: bool = False) -> OpSpec | None:
    """The declaration of a module (its class, or with ``exact=False`` the nearest declared base
    class) or of a function; None when it is not in the vocabulary."""
    keys = ((type(op),) if exact else type(op).__mro__) if isinstance(op, nn.Module) else (op,)
    for key in keys:
        try:
            if key in _SPECS:
                return _SPECS[key]
        except TypeError:  # an unhashable call target
            return None
    return None


def module_classes() -> dict[str, type]:
    """Every declared module class by name."""
    return {s.name: s.key for s in _SPECS.values() if isinstance(s.key, type)}


def function_named(name: str) -> Callable | None:
    """The declared function whose model-file name is ``name``; None when there is none."""
    return _FUNCTIONS_BY_NAME.get(name)


def op_name(op: Any) -> str:
    """How messages name an op: its class name, or a function's name."""
    if isinstance(op, nn.Module):
        return type(op).__name__
    return getattr(op, "__name__", str(op))


# -- interval bounds --------------------------------------------------------------------------------
def _monotone(m: Any, args: tuple, _kwargs: dict) -> Interval:
    """Non-decreasing elementwise maps and maps that move or pool values: apply to both ends."""
    low, high = args[0]
    return m(low), m(high)


_MINIMA: dict[tuple[type, str], float] = {}


def _minimum_at(m: nn.Module) -> float:
    """Where a `DIPPING` activation has its minimum (ternary search in float64, once per class and
    parameters)."""
    key = (type(m), m.extra_repr())
    if key not in _MINIMA:
        a, b = -10.0, 10.0
        with torch.no_grad():
            for _ in range(200):
                m1, m2 = a + (b - a) / 3, b - (b - a) / 3
                v1, v2 = m(torch.tensor([m1, m2], dtype=torch.float64)).tolist()
                a, b = (m1, b) if v1 > v2 else (a, m2)
        _MINIMA[key] = (a + b) / 2
    return _MINIMA[key]


def _dipping(m: Any, args: tuple, _kwargs: dict) -> Interval:
    """Activations with one minimum: the smaller end value, or the minimum when it lies inside."""
    low, high = args[0]
    at = _minimum_at(m)
    f_low, f_high = m(low), m(high)
    inside = (low <= at) & (at <= high)
    bottom = m(torch.full_like(low, at))
    return torch.where(inside, bottom, torch.minimum(f_low, f_high)), torch.maximum(f_low, f_high)


# Activations that rise for the usual parameters but fall, then rise, for others: a negative slope
# or alpha turns the left branch downwards, towards a minimum at 0.
_DIPPING_WHEN = {
    nn.LeakyReLU: lambda m: m.negative_slope < 0,
    nn.ELU: lambda m: m.alpha < 0,
    nn.CELU: lambda m: m.alpha < 0,
}


def _scalar_bounds(m: Any, args: tuple, kwargs: dict) -> Interval:
    """A scalar activation that is monotone, or dipping for some parameters (`_DIPPING_WHEN`)."""
    dipping = _DIPPING_WHEN.get(type(m))
    return (_dipping if dipping is not None and dipping(m) else _monotone)(m, args, kwargs)


def _unit_interval(m: Any, args: tuple, _kwargs: dict) -> Interval:
    """Softmax: every output lies in [0, 1]."""
    low, _ = args[0]
    shape = m(low).shape
    return torch.zeros(shape), torch.ones(shape)


def apply_weight(m: nn.Module, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``m``'s linear map (a weighted layer) with weight ``w`` and no bias."""
    if isinstance(m, nn.Linear):
        return F.linear(t, w)
    if isinstance(m, CONV):
        return m._conv_forward(t, w, None)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[w.dim() - 2]
    return fn(t, w, None, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


def _weighted_bounds(m: nn.Module, args: tuple, _kwargs: dict) -> Interval:
    """Weights split by sign: the low end meets the positive weights' low inputs and the negative weights' high ones."""
    low, high = args[0]
    pos, neg = m.weight.clamp(min=0), m.weight.clamp(max=0)
    bias = 0.0 if m.bias is None else m.bias.reshape((-1,) + (1,) * (low.dim() - 2))
    low_out = apply_weight(m, low, pos) + apply_weight(m, high, neg) + bias
    high_out = apply_weight(m, high, pos) + apply_weight(m, low, neg) + bias
    return low_out, high_out


def _affine_bounds(m: Affine, args: tuple, _kwargs: dict) -> Interval:
    low, high = args[0]
    scale = m.scale if m.scale is not None else torch.tensor(1.0)
    bias = m.bias if m.bias is not None else torch.tensor(0.0)
    a, b = low * scale + bias, high * scale + bias
    return torch.minimum(a, b), torch.maximum(a, b)


def _lstm_bounds(m: LSTM, args: tuple, _kwargs: dict) -> tuple[Interval, Interval, Interval]:
    """y and h = o·tanh(c) lie in [−1, 1]; |c_t| ≤ t since c_t = f·c_{t−1} + i·g with |i·g| ≤ 1."""
    x = args[0][0]
    y, y_h, y_c = m(x)
    steps = float(x.shape[1] if m.layout == 1 else x.shape[0])
    return tuple((torch.full_like(v, -b), torch.full_like(v, b)) for v, b in ((y, 1.0), (y_h, 1.0), (y_c, steps)))


def _add_bounds(_fn: Any, args: tuple, _kwargs: dict) -> Interval:
    (al, ah), (bl, bh) = args[:2]
    return al + bl, ah + bh


def _sub_bounds(_fn: Any, args: tuple, _kwargs: dict) -> Interval:
    (al, ah), (bl, bh) = args[:2]
    return al - bh, ah - bl


def _mul_bounds(_fn: Any, args: tuple, _kwargs: dict) -> Interval:
    (al, ah), (bl, bh) = args[:2]
    corners = torch.stack([al * bl, al * bh, ah * bl, ah * bh])
    return corners.amin(0), corners.amax(0)


def _cat_bounds(_fn: Any, args: tuple, kwargs: dict) -> Interval:
    parts = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    return torch.cat([p[0] for p in parts], dim=dim), torch.cat([p[1] for p in parts], dim=dim)


def _getitem_bounds(_fn: Any, args: tuple, _kwargs: dict) -> Any:
    value, index = args
    if isinstance(value[0], torch.Tensor):  # an interval: index both ends
        return value[0][index], value[1][index]
    return value[index]  # a tuple of intervals (a module with several outputs)


# -- MACs ---------------------------------------------------------------------------------------------
def _linear_macs(m: nn.Linear, _in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    return int(np.prod(out_shape)) * m.in_features


def _conv_macs(m: nn.Module, _in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    return int(np.prod(out_shape)) * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))


def _conv_transpose_macs(m: nn.Module, in_shape: tuple[int, ...], _out_shape: tuple[int, ...]) -> int:
    return int(np.prod(in_shape)) * (m.out_channels // m.groups) * int(np.prod(m.kernel_size))


# -- saving ---------------------------------------------------------------------------------------------
def _bias_flag(module: nn.Module, kwargs: dict) -> None:
    kwargs["bias"] = module.bias is not None


def _affine_arguments(module: Affine, kwargs: dict) -> None:
    kwargs["scale"] = None if module.scale is None else list(module.scale.shape)
    kwargs["bias"] = None if module.bias is None else list(module.bias.shape)


def _affine_construct(kwargs: dict) -> Affine:
    return Affine(
        None if kwargs["scale"] is None else torch.zeros(kwargs["scale"]),
        None if kwargs["bias"] is None else torch.zeros(kwargs["bias"]),
    )


def _lstm_arguments(module: LSTM, kwargs: dict) -> None:
    kwargs.update(
        W=list(module.weight_ih.shape),
        R=list(module.weight_hh.shape),
        B=None,
        P=None if module.peephole is None else list(module.peephole.shape),
        activations=[
            type(module.input_gate).__name__,
            type(module.cell_gate).__name__,
            type(module.cell_activation).__name__,
        ],
    )


def _lstm_construct(kwargs: dict) -> LSTM:
    p = kwargs["P"]
    return LSTM(
        torch.zeros(kwargs["W"]),
        torch.zeros(kwargs["R"]),
        None,
        None if p is None else torch.zeros(p),
        direction=kwargs["direction"],
        layout=kwargs["layout"],
        activations=tuple(kwargs["activations"]),
    )


# -- the vocabulary ---------------------------------------------------------------------------------
declare(nn.Linear, bounds=_weighted_bounds, macs=_linear_macs, arguments=_bias_flag)
declare(*CONV, bounds=_weighted_bounds, macs=_conv_macs, arguments=_bias_flag)
declare(*CONV_TRANSPOSE, bounds=_weighted_bounds, macs=_conv_transpose_macs, arguments=_bias_flag)
declare(nn.ReLU, nn.ReLU6, nn.Hardtanh, *SQUASHING, bounds=_monotone)
declare(*(a for a in SCALAR_ACTIVATIONS if a not in DIPPING), bounds=_scalar_bounds)
declare(*DIPPING, bounds=_dipping)
declare(*SOFTMAX, bounds=_unit_interval)
declare(*POOL, bounds=_monotone)
declare(*MOVES_VALUES, nn.Upsample, Pad, bounds=_monotone)
declare(Affine, bounds=_affine_bounds, arguments=_affine_arguments, construct=_affine_construct)
declare(LSTM, bounds=_lstm_bounds, arguments=_lstm_arguments, construct=_lstm_construct)
declare(operator.add, name="add", bounds=_add_bounds)
declare(operator.sub, name="sub", bounds=_sub_bounds)
declare(operator.mul, name="mul", bounds=_mul_bounds)
declare(torch.cat, name="cat", bounds=_cat_bounds)
declare(operator.getitem, name="getitem", bounds=_getitem_bounds)  # picks one of an LSTM's outputs

__all__ = [
    "OpSpec",
    "declare",
    "spec",
    "module_classes",
    "function_named",
    "op_name",
    "apply_weight",
    "CONV",
    "CONV_TRANSPOSE",
    "WEIGHTED",
    "RELU_LIKE",
    "SQUASHING",
    "AVG_POOL",
    "MAX_POOL",
    "ADAPTIVE_POOL",
    "POOL",
    "MOVES_VALUES",
    "AFFINE_MAPS",
    "CHANNEL_WISE",
    "SOFTMAX",
    "RECURRENT",
]
