"""Nearest-neighbour upsampling written as a Tile/Expand chain → `nn.Upsample`.

tf2onnx exports Keras UpSampling2D (channels-last) as ``Reshape → Tile → Transpose → Reshape
→ … → Tile → Reshape``. The rule finds the chain of shape ops around a Tile and replaces it
by ``nn.Upsample(scale_factor, 'nearest')`` on the NCHW tensor before the chain (plus a
`Permute` when the chain ends channels-last), accepted only if it reproduces the chain's
recorded values exactly.
"""

from __future__ import annotations

import torch
from onnx2torch.node_converters.expand import OnnxExpand
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.node_converters.tile import OnnxTile
from onnx2torch.node_converters.transpose import OnnxTranspose
from torch import fx, nn

from ..modules import Permute, Reshape
from .core import BATCHES, PassContext, rule

_CHAIN_TYPES = (OnnxTile, OnnxExpand, OnnxReshape, OnnxTranspose, Reshape, Permute, nn.Flatten)


def _chain_op(ctx: PassContext, node) -> bool:
    """A data-movement op whose only non-constant input is its first argument."""
    if not isinstance(node, fx.Node) or node.op != "call_module" or not isinstance(ctx.module(node), _CHAIN_TYPES):
        return False
    return bool(node.args) and all(ctx.is_constant(a) for a in node.all_input_nodes if a is not node.args[0])


def _factors(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(src) != len(dst) or len(src) < 3 or src[:2] != dst[:2]:
        return None
    out = []
    for i, o in zip(src[2:], dst[2:]):
        if o % i:
            return None
        out.append(o // i)
    return tuple(out) if any(f > 1 for f in out) else None


@rule(OnnxTile, OnnxExpand)
def tile_chain_to_upsample(ctx: PassContext, node: fx.Node) -> bool:
    """A Tile/Expand chain of shape ops that repeats each pixel → ``nn.Upsample(nearest)`` (+ `Permute` when it
    ends channels-last), checked against the chain's recorded values."""
    if not _chain_op(ctx, node):
        return False
    start = node
    while _chain_op(ctx, start.args[0]):
        start = start.args[0]
    src = start.args[0]
    if not isinstance(src, fx.Node) or ctx.is_constant(src):
        return False
    chain, cur = [node], node
    while len(cur.users) == 1 and _chain_op(ctx, next(iter(cur.users))):
        cur = next(iter(cur.users))
        chain.append(cur)
    src_shape = ctx.shape(src)
    if src_shape is None or not 3 <= len(src_shape) <= 5:
        return False
    rank = len(src_shape)
    to_last = (0,) + tuple(range(2, rank)) + (1,)
    for dst in reversed(chain):
        dst_shape = ctx.shape(dst)
        if dst_shape is None:
            continue
        for channels_last in (False, True):
            nchw = (
                tuple(dst_shape[i] for i in (0, rank - 1) + tuple(range(1, rank - 1))) if channels_last else dst_shape
            )
            if len(dst_shape) != rank or (factors := _factors(src_shape, nchw)) is None:
                continue
            up = nn.Upsample(scale_factor=tuple(float(f) for f in factors), mode="nearest")
            with torch.no_grad():
                expected = [up(ctx.value(src, r)) for r in range(len(BATCHES))]
                if channels_last:
                    expected = [e.permute(to_last) for e in expected]
                if not all(torch.equal(e, ctx.value(dst, r)) for r, e in enumerate(expected)):
                    continue
            out = ctx.insert_module(src, up, (src,), name="upsample", source_from=node)
            if channels_last:
                out = ctx.insert_module(out, Permute(to_last), (out,), name="permute", source_from=node)
            ctx.replace(dst, out)
            return True
    return False
