"""Ops that only pick elements become `Slice`: crops (ONNX Slice, Keras Cropping), channel splits
(``chunk`` / ``split`` followed by indexing, ONNX Split), ``narrow`` and ``x[:, a:b]``.

Each candidate is *probed* rather than parsed: the op is run on one sample whose elements are
their own flat indices, so its output says where every element came from. When that is a slice
along each per-sample axis (an arithmetic progression of source coordinates, depending on that
axis only), the op is replaced by the `Slice` and checked on the recorded values; anything else
is left for the conversion to refuse by name. Probing sees the op's real semantics (negative
indices, clamped ends, ONNX's and torch's conventions) without re-implementing them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from onnx2torch.node_converters.slice import OnnxSlice, OnnxSliceV9
from onnx2torch.node_converters.split import OnnxSplit, OnnxSplit13
from torch import fx

from ..modules import Slice
from .core import BATCHES, PassContext, rule

# Float32 holds every integer up to 2^24 exactly: larger samples are not probed.
_MAX_PROBE_ELEMENTS = 1 << 24
# Ops that return several pieces of their input; `operator.getitem` on their result is probed.
_SPLITTERS = (torch.chunk, torch.split, torch.tensor_split, "chunk", "split", "tensor_split", "unbind")


def _is_splitter(ctx: PassContext, node: Any) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_module":
        return isinstance(ctx.module(node), (OnnxSplit, OnnxSplit13))
    return node.op in ("call_function", "call_method") and node.target in _SPLITTERS


def _call(ctx: PassContext, node: fx.Node, data: fx.Node, probe: torch.Tensor) -> Any:
    """``node``'s op on ``probe`` in place of ``data``; every other argument as recorded (constants)."""

    def value(a: Any) -> Any:
        if a is data:
            return probe
        if isinstance(a, fx.Node):
            if not ctx.is_constant(a):
                raise ValueError("a second input that is not constant")
            return ctx.value(a)
        return a

    args = fx.map_arg(node.args, value)
    kwargs = fx.map_arg(node.kwargs, value)
    if node.op == "call_module":
        return ctx.module(node)(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _slice_of(probe_out: Any, shape: tuple[int, ...]) -> Slice | None:
    """The `Slice` whose output is ``probe_out`` (flat source indices of a batch of ``shape``, batch
    axis first), or None. Every sample must keep its place: the batch axis is never sliced."""
    if not isinstance(probe_out, torch.Tensor) or probe_out.dim() != len(shape) or probe_out.shape[0] != shape[0]:
        return None
    out = probe_out.double().numpy()
    if out.size == 0 or not np.array_equal(out, np.round(out)):
        return None
    coords = np.unravel_index(out.astype(np.int64), shape)
    dims, starts, stops, steps = [], [], [], []
    for axis, source in enumerate(coords):
        # the source coordinate on this axis must depend on the output coordinate on this axis only
        line = np.moveaxis(source, axis, 0).reshape(source.shape[axis], -1)
        if not (line == line[:, :1]).all():
            return None
        positions = line[:, 0]
        start = int(positions[0])
        step = int(positions[1] - positions[0]) if len(positions) > 1 else 1
        if step < 1 or not np.array_equal(positions, start + step * np.arange(len(positions))):
            return None
        stop = start + step * (len(positions) - 1) + 1
        if (start, stop, step) != (0, shape[axis], 1):
            if axis == 0:
                return None  # the batch axis is cut: not a per-sample op
            dims.append(axis)
            starts.append(start)
            stops.append(stop)
            steps.append(step)
    return Slice(tuple(dims), tuple(starts), tuple(stops), tuple(steps))


# Samples in a probe: more than any recording has, so that an op cutting the batch axis shows.
_PROBE_BATCH = max(BATCHES) + 2


def _probe(ctx: PassContext, data: fx.Node, run: Callable[[torch.Tensor], Any]) -> Slice | None:
    shape = ctx.shape(data)
    if shape is None or len(shape) < 2 or shape[0] != BATCHES[0]:
        return None
    full = (_PROBE_BATCH,) + tuple(shape[1:])
    if math.prod(full) > _MAX_PROBE_ELEMENTS:
        return None
    probe = torch.arange(math.prod(full), dtype=torch.float32).reshape(full)
    try:
        with torch.no_grad():
            return _slice_of(run(probe), full)
    except Exception:  # noqa: BLE001 - the op does not take this probe: not a slice we know
        return None


def _matches(ctx: PassContext, module: Slice, data: fx.Node, node: fx.Node) -> bool:
    """The slice reproduces the recorded output of ``node`` in every recording."""
    for run in range(len(BATCHES)):
        x, y = ctx.value(data, run), ctx.value(node, run)
        if not isinstance(y, torch.Tensor) or not torch.equal(module(x), y):
            return False
    return True


def _replace(ctx: PassContext, node: fx.Node, data: fx.Node, module: Slice | None) -> bool:
    if module is None or not _matches(ctx, module, data, node):
        return False
    if not module.dims:
        ctx.replace(node, data)
    else:
        ctx.replace_with_module(node, module, (data,), name="slice")
    return True


@rule(OnnxSlice, OnnxSliceV9, torch.narrow, "narrow")
def slice_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """ONNX Slice / torch.narrow → `Slice` (dropped when it keeps everything), read off an index probe."""
    data = node.args[0] if node.args else None
    if not isinstance(data, fx.Node) or ctx.is_constant(data):
        return False
    return _replace(ctx, node, data, _probe(ctx, data, lambda p: _call(ctx, node, data, p)))


@rule(operator.getitem)
def indexing_to_slice(ctx: PassContext, node: fx.Node) -> bool:
    """``x[:, a:b]`` on a tensor, or piece i of a chunk / split of one."""
    source = node.args[0]
    if not isinstance(source, fx.Node) or ctx.is_constant(source):
        return False
    if _is_splitter(ctx, source):
        data = source.args[0]
        if not isinstance(data, fx.Node) or ctx.is_constant(data):
            return False

        def run(p: torch.Tensor) -> Any:
            return operator.getitem(_call(ctx, source, data, p), node.args[1])

        return _replace(ctx, node, data, _probe(ctx, data, run))
    if not isinstance(ctx.value(source), torch.Tensor):
        return False  # picks one output of a module with several (an LSTM's): not a slice
    return _replace(ctx, node, source, _probe(ctx, source, lambda p: _call(ctx, node, source, p)))


@rule(Slice)
def slice_of_slice(ctx: PassContext, node: fx.Node) -> bool:
    """Two slices in a row (an ONNX export slices one axis at a time) are one."""
    first = node.args[0]
    if not (isinstance(first, fx.Node) and first.op == "call_module" and isinstance(ctx.module(first), Slice)):
        return False
    if len(first.users) != 1:
        return False
    data = first.args[0]
    inner, outer = ctx.module(first), ctx.module(node)
    return _replace(ctx, node, data, _probe(ctx, data, lambda p: outer(inner(p))))
