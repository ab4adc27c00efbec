"""Constants, MatMul → Linear, arithmetic with constants → Affine, BatchNorm and Affine folding."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation
from onnx2torch.node_converters.concat import OnnxConcat
from onnx2torch.node_converters.matmul import OnnxMatMul
from onnx2torch.node_converters.sum import OnnxSum
from torch import fx, nn

from ..fold import fold_input_scale, fold_output_affine
from ..modules import Affine, Pad, Permute, Reshape
from ..ops import CONV, CONV_TRANSPOSE, WEIGHTED
from .core import PassContext, round_pass, rule, single_user


def _binary_kind(ctx: PassContext, node: fx.Node) -> str | None:
    if node.op == "call_module":
        fn = ctx.module(node).math_op_function
        return {torch.add: "add", torch.sub: "sub", torch.mul: "mul"}.get(fn, "div")
    return {
        operator.add: "add",
        torch.add: "add",
        operator.sub: "sub",
        torch.sub: "sub",
        operator.mul: "mul",
        torch.mul: "mul",
        operator.truediv: "div",
        torch.div: "div",
    }.get(node.target)


_CANONICAL_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


def _per_sample_constant(ctx: PassContext, const: torch.Tensor, x: fx.Node) -> torch.Tensor | None:
    """``const`` as a per-sample tensor if it broadcasts onto ``x`` without changing x's shape."""
    shape = ctx.shape(x)
    if shape is None or const.dim() > len(shape):
        return None
    try:
        if torch.broadcast_shapes(shape, tuple(const.shape)) != shape:
            return None
    except RuntimeError:
        return None
    if const.dim() == len(shape):
        if const.shape[0] != 1:
            return None
        const = const[0]
    return const.float()


@rule(
    OnnxBinaryMathOperation,
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
)
def canonical_binary(ctx: PassContext, node: fx.Node) -> bool:
    """Arithmetic with one constant operand → `Affine`; between two tensors → operator.add/sub/mul."""
    if len(node.args) != 2 or node.kwargs:
        return False
    kind = _binary_kind(ctx, node)
    a, b = node.args
    a_const = not isinstance(a, fx.Node) or ctx.is_constant(a)
    b_const = not isinstance(b, fx.Node) or ctx.is_constant(b)
    if a_const and b_const:
        return False
    if not a_const and not b_const:
        if node.op == "call_function" and node.target is _CANONICAL_BINARY[kind]:
            return False
        if node.op == "call_module" and ctx.module(node).broadcast == 1:
            return False  # old-style broadcast with an axis: leave as is
        new = ctx.insert_function(node, _CANONICAL_BINARY[kind], (a, b), source_from=node)
        ctx.replace(node, new)
        return True
    x, c = (b, a) if a_const else (a, b)
    c = ctx.constant_value(c)
    if c is None or not c.is_floating_point():
        return False
    c = _per_sample_constant(ctx, c, x)
    if c is None:
        return False
    if kind == "add":
        affine = Affine(None, c)
    elif kind == "mul":
        affine = Affine(c, None)
    elif kind == "sub":
        affine = Affine(None, -c) if not a_const else Affine(-torch.ones_like(c), c)
    elif kind == "div" and not a_const:
        affine = Affine(1.0 / c, None)
    else:
        return False
    ctx.replace_with_module(node, affine, (x,), name="affine")
    return True


@rule(OnnxMatMul, torch.matmul, operator.matmul)
def matmul_to_linear(ctx: PassContext, node: fx.Node) -> bool:
    """MatMul by a constant 2-D matrix → `nn.Linear` (its bias comes from a following Add)."""
    x, w = node.args[:2]
    if not isinstance(x, fx.Node) or ctx.is_constant(x):
        return False
    w = ctx.constant_value(w)
    if w is None or w.dim() != 2:
        return False
    linear = nn.Linear(w.shape[0], w.shape[1], bias=False)
    with torch.no_grad():
        linear.weight.copy_(w.t())
    ctx.replace_with_module(node, linear, (x,), name="linear")
    return True


def _batchnorm_affine(bn: nn.Module, rank: int) -> Affine:
    scale = (
        bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        if bn.affine
        else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    )
    bias = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean * scale
    view = (-1,) + (1,) * (rank - 2)
    return Affine(scale.reshape(view), bias.reshape(view))


@rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def batchnorm_to_affine(ctx: PassContext, node: fx.Node) -> bool:
    """An inference-mode BatchNorm is a per-channel affine map (folded into its producer later)."""
    bn = ctx.module(node)
    if not bn.track_running_stats or bn.running_var is None:
        return False
    shape = ctx.shape(node)
    ctx.replace_with_module(node, _batchnorm_affine(bn, len(shape)), (node.args[0],), name="batchnorm")
    return True


def _channel_vector(t: torch.Tensor | None, out_shape: tuple[int, ...], channel_axis: int) -> torch.Tensor | None:
    """Reduce a per-sample constant to one value per channel; None if it varies elsewhere."""
    if t is None:
        return None
    full = t.expand(out_shape).movedim(channel_axis, 0).reshape(out_shape[channel_axis], -1)
    if not torch.equal(full, full[:, :1].expand_as(full)):
        raise ValueError("not per-channel")
    return full[:, 0]


@rule(Affine, priority=10)
def fold_affine(ctx: PassContext, node: fx.Node) -> bool:
    """Fold an Affine into the Conv/Linear before it (BatchNorm folding, Dense bias Add, …)."""
    affine = ctx.module(node)
    producer = node.args[0]
    if producer.op == "call_module" and isinstance(ctx.module(producer), Affine) and single_user(producer) is node:
        first = ctx.module(producer)
        s1 = first.scale if first.scale is not None else torch.tensor(1.0)
        b1 = first.bias if first.bias is not None else torch.tensor(0.0)
        s2 = affine.scale if affine.scale is not None else torch.tensor(1.0)
        b2 = affine.bias if affine.bias is not None else torch.tensor(0.0)
        merged = Affine(s1 * s2, b1 * s2 + b2)
        ctx.replace_with_module(node, merged, (producer.args[0],), name="affine")
        return True
    if producer.op != "call_module" or single_user(producer) is not node:
        return False
    layer = ctx.module(producer)
    if not isinstance(layer, WEIGHTED):
        return False
    if isinstance(layer, CONV_TRANSPOSE) and layer.groups != 1:
        return False
    out_shape = ctx.shape(node)[1:]
    channel_axis = len(out_shape) - 1 if isinstance(layer, nn.Linear) else 0
    try:
        scale = _channel_vector(affine.scale, out_shape, channel_axis)
        bias = _channel_vector(affine.bias, out_shape, channel_axis)
    except (ValueError, RuntimeError):
        return False
    fold_output_affine(layer, scale, bias)
    ctx.replace(node, producer)
    return True


@rule(OnnxConcat)
def canonical_concat(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch's Concat of non-constant inputs → ``torch.cat`` on the equivalent non-negative axis."""
    if any(not isinstance(a, fx.Node) or ctx.is_constant(a) for a in node.args):
        return False
    axis = ctx.module(node).axis
    rank = len(ctx.shape(node))
    new = ctx.insert_function(node, torch.cat, (list(node.args),), {"dim": axis % rank}, source_from=node)
    ctx.replace(node, new)
    return True


@rule(OnnxSum)
def canonical_sum(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch's Sum of two or more non-constant inputs → a chain of ``operator.add``."""
    args = list(node.args)
    if len(args) < 2 or any(not isinstance(a, fx.Node) or ctx.is_constant(a) for a in args):
        return False
    acc, anchor = args[0], node
    for other in args[1:]:
        acc = ctx.insert_function(anchor, operator.add, (acc, other), source_from=node)
        anchor = acc
    ctx.replace(node, acc)
    return True


@round_pass
def fold_constants(ctx: PassContext) -> int:
    """Replace input-independent computations with stored tensors (runs before the rules)."""
    count = 0
    consts = ctx.constants
    for node in list(ctx.gm.graph.nodes):
        if node.op == "get_attr" or node not in consts or node.op == "call_module" and not node.all_input_nodes:
            continue
        value = ctx.value(node)
        if not isinstance(value, torch.Tensor) or not any(u not in consts for u in node.users):
            continue
        name = ctx.fresh_name("const")
        ctx.gm.register_buffer(name, value.detach().clone())
        with ctx.gm.graph.inserting_before(node):
            attr = ctx.gm.graph.get_attr(name)
        node.replace_all_uses_with(attr)
        count += 1
    return count


def _compress(t: torch.Tensor) -> torch.Tensor:
    """``t`` with every axis along which it is constant reduced to size 1 (still broadcasts the same)."""
    for axis in range(t.dim()):
        first = t.narrow(axis, 0, 1)
        if t.shape[axis] > 1 and torch.equal(first.expand_as(t), t):
            t = first
    return t


def _reshaped_constant(t: torch.Tensor | None, src: tuple[int, ...], dst: tuple[int, ...]) -> torch.Tensor | None:
    return None if t is None else _compress(t.expand(src).reshape(dst))


def _per_sample_shape(ctx: PassContext, node: fx.Node) -> tuple[int, ...] | None:
    shape = ctx.shape(node)
    return None if shape is None else tuple(shape[1:])


@rule(Reshape, nn.Flatten)
def affine_after_unit_reshape(ctx: PassContext, node: fx.Node) -> bool:
    """``Affine → Reshape`` where the reshape only adds/drops unit axes → ``Reshape → Affine``.

    Brings a bias or BatchNorm affine of a Conv1D (exported as Conv2D + Squeeze) next to the
    layer it folds into, once the unit-axis reshapes cancel.
    """
    aff = node.args[0] if node.args else None
    if not isinstance(aff, fx.Node) or aff.op != "call_module" or not isinstance(ctx.module(aff), Affine):
        return False
    if len(aff.users) != 1 or node.op != "call_module" or type(ctx.module(node)) not in (Reshape, nn.Flatten):
        return False
    src, dst = _per_sample_shape(ctx, aff), _per_sample_shape(ctx, node)
    if src is None or dst is None or src == dst or [s for s in src if s != 1] != [s for s in dst if s != 1]:
        return False
    affine = ctx.module(aff)
    try:
        scale = _reshaped_constant(affine.scale, src, dst)
        bias = _reshaped_constant(affine.bias, src, dst)
    except RuntimeError:
        return False
    reshaped = ctx.insert_module(aff, Reshape(dst), (aff.args[0],), name="reshape", source_from=node)
    new = ctx.insert_module(reshaped, Affine(scale, bias), (reshaped,), name="affine", source_from=aff)
    ctx.replace(node, new)
    return True


@rule(Affine, priority=5)
def affine_before_crop(ctx: PassContext, node: fx.Node) -> bool:
    """``Crop → Affine`` with a per-channel affine → ``Affine → Crop`` (it can then fold backwards).

    A Keras Conv2DTranspose(padding='same') becomes ConvTranspose + crop; its BatchNorm
    comes after the crop.
    """
    crop = node.args[0]
    if crop.op != "call_module" or not isinstance(ctx.module(crop), Pad) or len(crop.users) != 1:
        return False
    pads = ctx.module(crop).pads
    if any(p > 0 for p in pads):
        return False
    out_shape = _per_sample_shape(ctx, node)
    if out_shape is None:
        return False
    rank = len(out_shape)
    cropped = {rank - 1 - i // 2 for i, p in enumerate(pads) if p != 0}  # F.pad order: last axis first
    affine = ctx.module(node)
    new = []
    for t in (affine.scale, affine.bias):
        if t is None:
            new.append(None)
            continue
        try:
            t = _compress(t.expand(out_shape))
        except RuntimeError:
            return False
        if any(t.shape[a] != 1 for a in cropped):
            return False
        new.append(t)
    moved = ctx.insert_module(crop.args[0], Affine(*new), (crop.args[0],), name="affine", source_from=node)
    crop.replace_input_with(crop.args[0], moved)
    ctx.replace(node, crop)
    return True


def _may_still_change(module: nn.Module) -> bool:
    return isinstance(module, (Reshape, nn.Flatten, Permute, Pad)) or type(module).__module__.startswith("onnx2torch")


def _input_bias_shift(layer: nn.Module, bias: torch.Tensor) -> torch.Tensor:
    """``layer`` (without its own bias) applied to a constant per-input-channel ``bias``: one value per output."""
    if isinstance(layer, nn.Linear):
        return layer.weight @ bias.to(layer.weight)
    extent = [d * (k - 1) + 1 for d, k in zip(layer.dilation, layer.kernel_size)]
    x = bias.to(layer.weight).reshape((1, -1) + (1,) * len(extent)).expand((1, layer.in_channels) + tuple(extent))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(extent)]
    return conv(x, layer.weight, None, stride=1, padding=0, dilation=layer.dilation, groups=layer.groups).reshape(-1)


@rule(Affine, priority=20)
def fold_affine_into_consumer(ctx: PassContext, node: fx.Node) -> bool:
    """A per-channel Affine whose only user is a Conv/Linear folds into that layer's input side.

    What is left of a BatchNorm placed after a ReLU. A bias shift folds only into a Conv
    without padding (padding zeros would not be shifted); a pure scale folds always.
    """
    user = single_user(node)
    if user is None or user.op != "call_module" or len(user.args) != 1 or user.kwargs:
        return False
    producer = node.args[0]
    if producer.op == "call_module" and _may_still_change(ctx.module(producer)):
        return False  # a reshape/pad that other rules may remove: the affine may yet fold backwards
    layer = ctx.module(user)
    if not isinstance(layer, (nn.Linear,) + CONV):
        return False
    in_shape = _per_sample_shape(ctx, node)
    if in_shape is None:
        return False
    channel_axis = len(in_shape) - 1 if isinstance(layer, nn.Linear) else 0
    affine = ctx.module(node)
    try:
        scale = _channel_vector(affine.scale, in_shape, channel_axis)
        bias = _channel_vector(affine.bias, in_shape, channel_axis)
    except (ValueError, RuntimeError):
        return False
    if bias is not None and bool(bias.any()) and isinstance(layer, CONV):
        if isinstance(layer.padding, str) or any(p != 0 for p in layer.padding) or layer.padding_mode != "zeros":
            return False
    with torch.no_grad():
        shift = _input_bias_shift(layer, bias) if bias is not None else None
        if scale is not None:
            fold_input_scale(layer, scale)
        if shift is not None:
            fold_output_affine(layer, None, shift)
    user.replace_input_with(node, node.args[0])
    ctx.gm.graph.erase_node(node)
    return True
