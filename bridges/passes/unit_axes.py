"""1-D layers that the export turned into 2-D ones on a unit axis → 1-D layers again.

tf2onnx exports Keras Conv1D, MaxPooling1D, AveragePooling1D (and their padding) as
``ExpandDims → 2-D op with a 1×k window → Squeeze`` on ``[B, C, 1, W]`` tensors. Each rule
here turns one such 2-D op into ``Reshape(C, W) → 1-D op → Reshape(C', 1, W')``; the
reshape rules then cancel the reshapes that meet between consecutive layers, and bias /
BatchNorm affines fold into the `nn.Conv1d`.

A rule only fires next to a reshape (the ExpandDims/Squeeze of the pattern, or a layer
already rewritten), so a genuine 2-D network on images of height 1 is left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import fx, nn

from ..modules import Pad, Reshape
from .core import BATCHES, PassContext, rule


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv1d(conv: nn.Conv2d) -> nn.Module | None:
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        return None
    if conv.kernel_size[0] != 1 or conv.padding[0] != 0:
        return None
    new = nn.Conv1d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[1],
        stride=conv.stride[1],
        padding=conv.padding[1],
        dilation=conv.dilation[1],
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, :, 0, :])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _max_pool1d(pool: nn.MaxPool2d) -> nn.Module | None:
    k, s, p, d = (_pair(v) for v in (pool.kernel_size, pool.stride, pool.padding, pool.dilation))
    if k[0] != 1 or p[0] != 0 or pool.return_indices:
        return None
    return nn.MaxPool1d(k[1], stride=s[1], padding=p[1], dilation=d[1], ceil_mode=pool.ceil_mode)


def _avg_pool1d(pool: nn.AvgPool2d) -> nn.Module | None:
    k, s, p = (_pair(v) for v in (pool.kernel_size, pool.stride, pool.padding))
    if k[0] != 1 or p[0] != 0 or pool.divisor_override is not None:
        return None
    return nn.AvgPool1d(
        k[1], stride=s[1], padding=p[1], ceil_mode=pool.ceil_mode, count_include_pad=pool.count_include_pad
    )


def _pad1d(pad: Pad) -> nn.Module | None:
    if any(p != 0 for p in pad.pads[2:]):
        return None
    return Pad(tuple(pad.pads[:2]), pad.value)


# exact module type → its 1-D equivalent (None when the 2-D op really uses the unit axis)
TO_1D: dict[type, Callable[[nn.Module], nn.Module | None]] = {
    nn.Conv2d: _conv1d,
    nn.MaxPool2d: _max_pool1d,
    nn.AvgPool2d: _avg_pool1d,
    Pad: _pad1d,
}


def _unit_height(ctx: PassContext, node: fx.Node) -> tuple[int, int] | None:
    """(C, W) if ``node`` is ``[B, C, 1, W]`` in every recording."""
    shapes = [ctx.shape(node, r) for r in range(len(BATCHES))]
    if any(s is None or len(s) != 4 or s[0] != b or s[2] != 1 for s, b in zip(shapes, BATCHES)):
        return None
    return shapes[0][1], shapes[0][3]


def _is_reshape(ctx: PassContext, node) -> bool:
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return False
    mod = ctx.module(node)
    return type(mod) is Reshape or type(mod) is nn.Flatten


@rule(*TO_1D)
def unit_height_to_1d(ctx: PassContext, node: fx.Node) -> bool:
    """A 2-D op on ``[B, C, 1, W]`` that never looks along the unit axis → its 1-D form."""
    module = ctx.module(node)
    convert = TO_1D.get(type(module))
    x = node.args[0]
    if convert is None or len(node.args) != 1 or node.kwargs or not isinstance(x, fx.Node):
        return False
    if not (_is_reshape(ctx, x) or any(_is_reshape(ctx, u) for u in node.users)):
        return False
    src, dst = _unit_height(ctx, x), _unit_height(ctx, node)
    if src is None or dst is None:
        return False
    new = convert(module)
    if new is None:
        return False
    with torch.no_grad():
        check = new(ctx.value(x).reshape((BATCHES[0],) + src)).reshape(ctx.value(node).shape)
        if not torch.allclose(check, ctx.value(node), rtol=1e-5, atol=1e-6):
            return False
    squeezed = ctx.insert_module(x, Reshape(src), (x,), name="reshape", source_from=node)
    one_d = ctx.insert_module(squeezed, new, (squeezed,), name=type(new).__name__.lower(), source_from=node)
    out = ctx.insert_module(one_d, Reshape((dst[0], 1, dst[1])), (one_d,), name="reshape", source_from=node)
    ctx.replace(node, out)
    return True
