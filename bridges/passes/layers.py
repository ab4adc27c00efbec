"""Activations, pooling, padding, resizing: onnx2torch's and torch.functional's forms → modules."""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from onnx2torch.node_converters.activations import OnnxHardSigmoid, OnnxSoftmaxV1V11
from onnx2torch.node_converters.clip import OnnxClip
from onnx2torch.node_converters.global_average_pool import (
    OnnxGlobalAveragePool,
    OnnxGlobalAveragePoolWithKnownInputShape,
)
from onnx2torch.node_converters.min_max import OnnxMinMax
from onnx2torch.node_converters.pad import OnnxPadDynamic, OnnxPadStatic
from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.node_converters.resize import OnnxResize
from torch import fx, nn

from ..modules import Affine, OutputSoftmax, Pad, torch_pads
from ..ops import CONV
from .core import PassContext, is_output, rule, single_user

_ADAPTIVE_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_ADAPTIVE_MAX = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}


# -- activations -------------------------------------------------------------------------
_ACTIVATION_FUNCTIONS = {
    F.relu: nn.ReLU,
    torch.relu: nn.ReLU,
    "relu": nn.ReLU,
    F.relu6: nn.ReLU6,
    torch.sigmoid: nn.Sigmoid,
    F.sigmoid: nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    torch.tanh: nn.Tanh,
    F.tanh: nn.Tanh,
    "tanh": nn.Tanh,
}


@rule(*_ACTIVATION_FUNCTIONS)
def activation_function_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """F.relu, torch.sigmoid, ``x.tanh()``, … on one argument → the matching activation module."""
    if len(node.args) != 1:
        return False
    module = _ACTIVATION_FUNCTIONS[node.target]()
    ctx.replace_with_module(node, module, (node.args[0],), name=type(module).__name__.lower())
    return True


@rule(nn.Hardsigmoid, OnnxHardSigmoid, F.hardsigmoid, "hardsigmoid")
def hard_sigmoid_to_clip(ctx: PassContext, node: fx.Node) -> bool:
    """hard-sigmoid(x) = clip(α·x + β, 0, 1): a constant affine map (folded into the layer before it)
    and a clipped ReLU, which every conversion type takes."""
    x = node.args[0] if node.args else None
    if not isinstance(x, fx.Node):
        return False
    module = ctx.module(node) if node.op == "call_module" else None
    alpha, beta = (module.alpha, module.beta) if isinstance(module, OnnxHardSigmoid) else (1.0 / 6.0, 0.5)
    affine = ctx.insert_module(
        node, Affine(torch.tensor(float(alpha)), torch.tensor(float(beta))), (x,), name="hardsigmoid_affine"
    )
    clip = ctx.insert_module(affine, nn.Hardtanh(0.0, 1.0), (affine,), name="hardsigmoid", source_from=node)
    ctx.replace(node, clip)
    return True


# function → (module, the function's parameters after the input that the module takes, in order)
_PARAMETRIC_ACTIVATIONS = {
    F.leaky_relu: (nn.LeakyReLU, ("negative_slope",)),
    F.elu: (nn.ELU, ("alpha",)),
    F.celu: (nn.CELU, ("alpha",)),
    F.selu: (nn.SELU, ()),
    torch.selu: (nn.SELU, ()),
    F.silu: (nn.SiLU, ()),
    F.gelu: (nn.GELU, ("approximate",)),
    F.mish: (nn.Mish, ()),
    F.hardswish: (nn.Hardswish, ()),
    F.softplus: (nn.Softplus, ("beta", "threshold")),
    F.softsign: (nn.Softsign, ()),
    F.logsigmoid: (nn.LogSigmoid, ()),
    F.tanhshrink: (nn.Tanhshrink, ()),
    F.hardshrink: (nn.Hardshrink, ("lambd",)),
    F.softshrink: (nn.Softshrink, ("lambd",)),
}


@rule(*_PARAMETRIC_ACTIVATIONS)
def parametric_activation_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """F.elu(x, 0.5), F.gelu(x, approximate="tanh"), … → the module with those parameters
    (``inplace`` is dropped: the clean graph never computes in place)."""
    cls, names = _PARAMETRIC_ACTIVATIONS[node.target]
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False
    values = dict(zip(names, node.args[1:]))
    values.update({k: v for k, v in node.kwargs.items() if k in names})
    if any(isinstance(v, fx.Node) for v in values.values()) or set(node.kwargs) - set(names) - {"inplace"}:
        return False
    ctx.replace_with_module(node, cls(**values), (node.args[0],), name=cls.__name__.lower())
    return True


@rule(operator.mul, priority=10)
def swish_to_silu(ctx: PassContext, node: fx.Node) -> bool:
    """x · sigmoid(x) (Keras swish: tf2onnx writes Mul(x, Sigmoid(x))) → nn.SiLU, one scalar activation."""
    if len(node.args) != 2 or node.kwargs:
        return False
    a, b = node.args
    for x, gate in ((a, b), (b, a)):
        if (
            isinstance(gate, fx.Node)
            and gate.op == "call_module"
            and isinstance(ctx.module(gate), nn.Sigmoid)
            and gate.args[0] is x
        ):
            ctx.replace_with_module(node, nn.SiLU(), (x,), name="silu")
            return True
    return False


def _clip_module(lo: float | None, hi: float | None) -> nn.Module | None:
    lo = -math.inf if lo is None else float(lo)
    hi = math.inf if hi is None else float(hi)
    if lo == 0.0 and hi == 6.0:
        return nn.ReLU6()
    if lo == 0.0 and hi == math.inf:
        return nn.ReLU()
    if math.isfinite(lo) and math.isfinite(hi):
        return nn.Hardtanh(lo, hi)
    return None


@rule(OnnxClip)
def onnx_clip_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch's Clip → nn.ReLU ([0, ∞)), nn.ReLU6 ([0, 6]) or nn.Hardtanh (finite bounds); other clips stay."""
    mod = ctx.module(node)
    lo, hi = mod.min_val, mod.max_val
    new = _clip_module(
        lo.item() if isinstance(lo, torch.Tensor) else lo, hi.item() if isinstance(hi, torch.Tensor) else hi
    )
    if new is None:
        return False
    ctx.replace_with_module(node, new, (node.args[0],), name=type(new).__name__.lower())
    return True


@rule(torch.clamp, torch.clip, "clamp", "clip", F.hardtanh)
def clamp_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """torch.clamp / clip / F.hardtanh with constant bounds → nn.ReLU, nn.ReLU6 or nn.Hardtanh (as for Clip)."""
    if node.target is F.hardtanh:
        lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
        hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
    else:
        lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
        hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
    if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
        return False
    new = _clip_module(lo, hi)
    if new is None:
        return False
    ctx.replace_with_module(node, new, (node.args[0],), name=type(new).__name__.lower())
    return True


@rule(OnnxMinMax)
def min_max_with_constant(ctx: PassContext, node: fx.Node) -> bool:
    """ONNX Max(x, c) / Min(x, c) with a scalar constant → ``torch.clamp(x, min=c)`` / ``(x, max=c)``."""
    if len(node.args) != 2 or node.kwargs:
        return False
    a, b = node.args
    x, c = (b, a) if isinstance(a, fx.Node) and ctx.is_constant(a) else (a, b)
    value = ctx.constant_value(c)
    if not isinstance(x, fx.Node) or ctx.is_constant(x) or value is None or value.numel() != 1:
        return False
    key = "min" if ctx.module(node)._op_type == "Max" else "max"
    new = ctx.insert_function(node, torch.clamp, (x,), {key: float(value)}, source_from=node)
    ctx.replace(node, new)
    return True


def _clip_bounds(ctx: PassContext, node) -> tuple[float, float] | None:
    """The interval a clipping activation (ReLU, ReLU6, Hardtanh, constant clamp) maps onto."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_module":
        mod = ctx.module(node)
        if type(mod) is nn.ReLU:
            return 0.0, math.inf
        if isinstance(mod, nn.Hardtanh):
            return float(mod.min_val), float(mod.max_val)
        return None
    if node.op == "call_function" and node.target is torch.clamp and len(node.args) == 1:
        lo, hi = node.kwargs.get("min"), node.kwargs.get("max")
        if isinstance(lo, fx.Node) or isinstance(hi, fx.Node) or set(node.kwargs) - {"min", "max"}:
            return None
        return (-math.inf if lo is None else float(lo)), (math.inf if hi is None else float(hi))
    return None


@rule(nn.ReLU, nn.Hardtanh, torch.clamp, priority=-1)
def merge_clips(ctx: PassContext, node: fx.Node) -> bool:
    """Two clips in a row are one clip onto the intersection (Keras ReLU(max_value=c) → Hardtanh(0, c))."""
    outer = _clip_bounds(ctx, node)
    prev = node.args[0] if node.args else None
    inner = _clip_bounds(ctx, prev)
    if outer is None or inner is None or len(prev.users) != 1:
        return False
    lo, hi = max(outer[0], inner[0]), min(outer[1], inner[1])
    if lo > hi:
        return False
    new = _clip_module(lo, hi)
    x = prev.args[0]
    if new is None:
        kwargs = {k: v for k, v in (("min", lo), ("max", hi)) if math.isfinite(v)}
        out = ctx.insert_function(node, torch.clamp, (x,), kwargs, source_from=node)
        ctx.replace(node, out)
    else:
        ctx.replace_with_module(node, new, (x,), name=type(new).__name__.lower())
    return True


@rule(nn.Softmax, OnnxSoftmaxV1V11, F.softmax, torch.softmax, "softmax")
def mark_output_softmax(ctx: PassContext, node: fx.Node) -> bool:
    """A softmax over the class axis that ends the network becomes `OutputSoftmax`."""
    if node.op == "call_module" and isinstance(ctx.module(node), OutputSoftmax):
        return False
    shape = ctx.shape(node)
    if node.op == "call_module":
        mod = ctx.module(node)
        dim = getattr(mod, "dim", None)
        if dim is None:
            dim = getattr(mod, "axis", None)
            if getattr(mod, "is_log", False) or dim is None or dim % len(shape) != len(shape) - 1:
                return False
    else:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dim is None or dim % len(shape) != len(shape) - 1:
        return False
    if isinstance(ctx.module(node) if node.op == "call_module" else None, nn.Softmax) and not is_output(node):
        return False
    new = OutputSoftmax(dim=-1) if is_output(node) and len(node.users) == 1 else nn.Softmax(dim=-1)
    if node.op == "call_module" and type(ctx.module(node)) is type(new):
        return False
    ctx.replace_with_module(node, new, (node.args[0],), name="softmax")
    return True


# -- pooling -----------------------------------------------------------------------------
@rule(OnnxGlobalAveragePool, OnnxGlobalAveragePoolWithKnownInputShape)
def global_average_pool(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch's GlobalAveragePool → ``nn.AdaptiveAvgPool*d(1)``."""
    rank = len(ctx.shape(node)) - 2
    ctx.replace_with_module(node, _ADAPTIVE_AVG[rank](1), (node.args[0],), name="global_avgpool")
    return True


def _reduce_spatial(ctx: PassContext, node: fx.Node, axes, keepdim: bool, table: dict) -> bool:
    x = node.args[0]
    in_shape = ctx.shape(x)
    if in_shape is None or not 3 <= len(in_shape) <= 5 or axes is None:
        return False
    rank = len(in_shape)
    axes = sorted(int(a) % rank for a in (axes if isinstance(axes, (list, tuple)) else [axes]))
    if axes != list(range(2, rank)):
        return False
    pooled = ctx.insert_module(node, table[rank - 2](1), (x,), name="global_pool", source_from=node)
    out = pooled if keepdim else ctx.insert_module(pooled, nn.Flatten(), (pooled,), name="flatten", source_from=node)
    ctx.replace(node, out)
    return True


@rule(OnnxReduceStaticAxes)
def onnx_reduce_to_pool(ctx: PassContext, node: fx.Node) -> bool:
    """ReduceMean/ReduceMax over all spatial axes (tf2onnx's global pooling) → adaptive pooling."""
    mod = ctx.module(node)
    table = {"ReduceMean": _ADAPTIVE_AVG, "ReduceMax": _ADAPTIVE_MAX}.get(mod.operation_type)
    if table is None:
        return False
    return _reduce_spatial(ctx, node, mod.axes, mod.keepdims, table)


@rule(torch.mean, "mean", torch.amax, "amax")
def torch_reduce_to_pool(ctx: PassContext, node: fx.Node) -> bool:
    """torch.mean / amax over all spatial axes → adaptive average / max pooling (+ nn.Flatten without keepdim)."""
    axes = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    table = _ADAPTIVE_AVG if node.target in (torch.mean, "mean") else _ADAPTIVE_MAX
    return _reduce_spatial(ctx, node, axes, bool(keepdim), table)


_POOL_FUNCTIONS = {
    F.max_pool1d: nn.MaxPool1d,
    F.max_pool2d: nn.MaxPool2d,
    F.max_pool3d: nn.MaxPool3d,
    F.avg_pool1d: nn.AvgPool1d,
    F.avg_pool2d: nn.AvgPool2d,
    F.avg_pool3d: nn.AvgPool3d,
    F.adaptive_avg_pool1d: nn.AdaptiveAvgPool1d,
    F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d,
    F.adaptive_avg_pool3d: nn.AdaptiveAvgPool3d,
    F.adaptive_max_pool2d: nn.AdaptiveMaxPool2d,
}


@rule(*_POOL_FUNCTIONS)
def pool_function_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, … with constant arguments → the pooling module."""
    if any(isinstance(a, fx.Node) for a in list(node.args[1:]) + list(node.kwargs.values())):
        return False
    try:
        module = _POOL_FUNCTIONS[node.target](*node.args[1:], **node.kwargs)
    except TypeError:
        return False
    ctx.replace_with_module(node, module, (node.args[0],), name=type(module).__name__.lower())
    return True


# -- padding -----------------------------------------------------------------------------
@rule(OnnxPadStatic)
def onnx_pad_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch's static Pad in constant mode → `Pad`."""
    mod = ctx.module(node)
    if mod.mode != "constant":
        return False
    ctx.replace_with_module(node, Pad(tuple(mod.pads), mod.constant_value), (node.args[0],), name="pad")
    return True


@rule(OnnxPadDynamic)
def onnx_pad_dynamic_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """Pad whose pads (and value) are constants (tf2onnx's ZeroPadding) → `Pad`."""
    mod = ctx.module(node)
    if mod.mode != "constant" or len(node.args) < 2:
        return False
    pads = ctx.constant_value(node.args[1])
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("constant_value", 0.0)
    if isinstance(value, fx.Node):
        value = ctx.constant_value(value)
        if value is None or value.numel() != 1:
            return False
    if pads is None or value is None:
        return False
    ctx.replace_with_module(node, Pad(torch_pads(pads.tolist()), float(value)), (node.args[0],), name="pad")
    return True


@rule(nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)
def torch_pad_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """nn.ZeroPad*d / nn.ConstantPad*d → `Pad`."""
    mod = ctx.module(node)
    ctx.replace_with_module(node, Pad(tuple(mod.padding), getattr(mod, "value", 0.0)), (node.args[0],), name="pad")
    return True


@rule(nn.Sequential)
def inline_sequential(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch wraps Pad+Conv in a Sequential for asymmetric padding: call its parts one by one."""
    seq = ctx.module(node)
    current, anchor = node.args[0], node
    for i, child in enumerate(seq):
        current = ctx.insert_module(anchor, child, (current,), name=f"{node.target}_{i}", source_from=node)
        anchor = current
    ctx.replace(node, current)
    return True


@rule(Pad)
def merge_pad_into_conv(ctx: PassContext, node: fx.Node) -> bool:
    """Zero padding that is symmetric on every spatial axis moves into the next Conv's padding."""
    pad = ctx.module(node)
    conv_node = single_user(node)
    if pad.value != 0.0 or conv_node is None or conv_node.op != "call_module":
        return False
    conv = ctx.module(conv_node)
    if not isinstance(conv, CONV) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    n = conv.weight.dim() - 2
    pads = list(pad.pads) + [0] * max(0, 2 * (n + 2) - len(pad.pads))
    spatial = pads[: 2 * n]
    if any(p != 0 for p in pads[2 * n :]):
        return False
    per_axis = [(spatial[2 * i], spatial[2 * i + 1]) for i in range(n)][::-1]  # F.pad lists the last axis first
    if any(lo != hi or lo < 0 for lo, hi in per_axis):
        return False
    conv.padding = tuple(p + lo for p, (lo, _) in zip(conv.padding, per_axis))
    conv_node.replace_input_with(node, node.args[0])
    ctx.gm.graph.erase_node(node)
    return True


# -- resizing ----------------------------------------------------------------------------
@rule(OnnxResize)
def onnx_resize_to_upsample(ctx: PassContext, node: fx.Node) -> bool:
    """A Resize with constant integer scales in nearest mode → `nn.Upsample`."""
    mod = ctx.module(node)
    if mod.onnx_mode != "nearest":
        return False
    x = node.args[0]
    in_shape, out_shape = ctx.shape(x), ctx.shape(node)
    if in_shape is None or out_shape is None or in_shape[:2] != out_shape[:2]:
        return False
    factors = []
    for i, o in zip(in_shape[2:], out_shape[2:]):
        if o % i:
            return False
        factors.append(o // i)
    new = nn.Upsample(scale_factor=tuple(float(f) for f in factors), mode="nearest")
    with torch.no_grad():
        if not torch.equal(new(ctx.value(x)), ctx.value(node)):
            return False  # another coordinate transform: keep onnx2torch's exact module
    ctx.replace_with_module(node, new, (x,), name="upsample")
    return True
