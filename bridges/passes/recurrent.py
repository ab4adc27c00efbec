"""Recurrent layers: a Keras LSTM's ONNX export → one batch-first `LSTM` call.

tf2onnx exports a Keras LSTM as ``Transpose(x) → LSTM(layout=0, initial_h, initial_c)`` where
the initial states are zeros built from the input's *shape* (Shape → Slice → Concat →
Expand), followed by Squeeze/Transpose (``return_sequences=True``) or Slice/Squeeze (the
last step). None of that is batch-first, so the other rules leave it alone. These rules:

- drop initial states that are zeros computed from shapes only (the LSTM's default);
- replace ``Transpose → LSTM(layout=0) → …`` by ``LSTM(layout=1)`` on the batch-first input,
  followed by ``getitem`` and a `Reshape`/`nn.Flatten` — chosen by comparing values on the
  recorded example inputs, so only a rewrite that reproduces the original is made.

Also: onnx2torch's ``OnnxFunction("Tanh")`` (how it imports ONNX Tanh) becomes `nn.Tanh`.
"""

from __future__ import annotations

import copy
import operator

import torch
from onnx2torch.node_converters.functions import OnnxFunction
from onnx2torch.node_converters.shape import OnnxShape
from onnx2torch.node_converters.transpose import OnnxTranspose
from torch import fx, nn

from ..converters.lstm import LSTM
from ..modules import Permute, Reshape
from .core import BATCHES, PassContext, rule

_INITIAL_STATES = {"initial_h": 2, "initial_c": 3}  # keyword → positional index in LSTM.forward (after x)


@rule(OnnxFunction)
def onnx_tanh_to_module(ctx: PassContext, node: fx.Node) -> bool:
    """onnx2torch's OnnxFunction wrapping torch.tanh (one argument) → nn.Tanh."""
    if ctx.module(node).function is not torch.tanh or len(node.args) != 1:
        return False
    ctx.replace_with_module(node, nn.Tanh(), (node.args[0],), name="tanh")
    return True


def _shape_only(node: fx.Node) -> bool:
    """True if ``node`` depends on the graph inputs only through their shapes."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder":
            return False
        if n.op == "call_module" and isinstance(n.graph.owning_module.get_submodule(n.target), OnnxShape):
            continue
        if n.op == "call_method" and n.target == "size" or n.op == "call_function" and n.target is getattr:
            continue
        stack.extend(n.all_input_nodes)
    return True


def _zero_state(ctx: PassContext, value) -> bool:
    if not isinstance(value, fx.Node):
        return False
    if not ctx.has_values(value) or not _shape_only(value):
        return False
    return all(
        isinstance(ctx.value(value, r), torch.Tensor) and not bool(ctx.value(value, r).any())
        for r in range(len(BATCHES))
    )


@rule(LSTM, priority=-1)
def drop_zero_initial_states(ctx: PassContext, node: fx.Node) -> bool:
    """``initial_h``/``initial_c`` that are zeros made from shapes: the LSTM's own default."""
    changed = False
    kwargs = dict(node.kwargs)
    for key in _INITIAL_STATES:
        if key in kwargs and _zero_state(ctx, kwargs[key]):
            del kwargs[key]
            changed = True
    args = list(node.args)
    for index in _INITIAL_STATES.values():
        if len(args) > index and _zero_state(ctx, args[index]):
            args[index] = None
            changed = True
    while len(args) > 1 and args[-1] is None:
        args.pop()
    if changed:
        node.args, node.kwargs = tuple(args), kwargs
    return changed


def _time_major_input(ctx: PassContext, node: fx.Node) -> fx.Node | None:
    """The batch-first tensor whose (1, 0, 2) transpose feeds a layout-0 LSTM, if any."""
    x = node.args[0]
    if not isinstance(x, fx.Node) or x.op != "call_module":
        return None
    mod = ctx.module(x)
    perm = (
        tuple(mod.dims)
        if isinstance(mod, Permute)
        else tuple(getattr(mod, "perm", None) or ())
        if isinstance(mod, OnnxTranspose)
        else None
    )
    if perm != (1, 0, 2) or not isinstance(x.args[0], fx.Node):
        return None
    source = x.args[0]
    if any(ctx.shape(source, r) is None or ctx.shape(source, r)[0] != b for r, b in enumerate(BATCHES)):
        return None
    return source


def _batch_first(ctx: PassContext, node: fx.Node) -> bool:
    shapes = [ctx.shape(node, r) for r in range(len(BATCHES))]
    return (
        all(s is not None and len(s) >= 2 and s[0] == b for s, b in zip(shapes, BATCHES))
        and shapes[0][1:] == shapes[1][1:]
    )


def _downstream(ctx: PassContext, start: fx.Node) -> fx.Node | None:
    """Follow single-user shape ops from ``start`` to the first batch-first value."""
    node = start
    for _ in range(8):
        if _batch_first(ctx, node):
            return node
        users = list(node.users)
        if len(users) != 1 or users[0].op == "output":
            return None
        nxt = users[0]
        others = [a for a in nxt.all_input_nodes if a is not node]
        if any(not ctx.is_constant(a) for a in others):
            return None
        node = nxt
    return None


@rule(LSTM)
def lstm_batch_first(ctx: PassContext, node: fx.Node) -> bool:
    """``Transpose → LSTM(layout=0) → getitem → squeeze/slice/transpose`` → ``LSTM(layout=1) → getitem → reshape``."""
    lstm = ctx.module(node)
    if lstm.layout != 0 or len(node.args) != 1 or node.kwargs:
        return False  # initial states or sequence lengths still present: leave as is
    source = _time_major_input(ctx, node)
    if source is None:
        return False
    getitems = list(node.users)
    if not getitems or any(u.op != "call_function" or u.target is not operator.getitem for u in getitems):
        return False
    new_module = copy.deepcopy(lstm)
    new_module.layout = 1
    with torch.no_grad():
        outs = [new_module(ctx.value(source, r)) for r in range(len(BATCHES))]
    plans = []
    for g in getitems:
        target = _downstream(ctx, g)
        if target is None:
            return False
        plan = None
        expected = [ctx.value(target, r) for r in range(len(BATCHES))]
        for index in (1, 0, 2):  # Y_h first: the "last step" of a forward LSTM is Y_h
            for keep in (1, 2):  # [B, features] or [B, steps, features]
                values = [o[index].reshape(o[index].shape[:keep] + (-1,)) for o in outs]
                if all(
                    isinstance(e, torch.Tensor) and e.shape == v.shape and torch.allclose(e, v, rtol=1e-5, atol=1e-6)
                    for e, v in zip(expected, values)
                ):
                    plan = (index, tuple(values[0].shape[1:]))
                    break
            if plan:
                break
        if plan is None:
            return False
        plans.append((target, plan))
    target_name = ctx.fresh_name(str(node.target))
    ctx.gm.add_submodule(target_name, new_module)
    with ctx.gm.graph.inserting_after(source):
        new_node = ctx.gm.graph.call_module(target_name, (source,))
    # tf2onnx names the LSTM node itself after the op (LSTM__33); the Transpose carries the Keras layer
    name_of = node.args[0] if ctx.source_of(node) == str(node.target) else node
    ctx.sources[new_node.name] = ctx.source_of(name_of)
    for target, (index, shape) in plans:
        item = ctx.insert_function(new_node, operator.getitem, (new_node, index), source_from=name_of)
        module = nn.Flatten() if len(shape) == 1 else Reshape(shape)
        out = ctx.insert_module(
            item, module, (item,), name="flatten" if len(shape) == 1 else "reshape", source_from=name_of
        )
        target.replace_all_uses_with(out)
    return True
