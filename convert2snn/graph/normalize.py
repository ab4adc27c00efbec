"""Weight normalisation: fold the per-edge scale multiplies of a freshly built SNN into weights.

The schemes place every neuron between ``Affine(1/λ)`` and ``Affine(λ)``, so each edge carries
values in the units of the ANN. `normalize` folds those scale-only Affines into an adjacent
Conv/Linear (weights·λ_in/λ_out, biases/λ_out: the classic data-based normalisation), merges
consecutive scales and moves positive per-channel scales past pooling, padding and flattening
towards a layer. Where no layer is adjacent (a residual Add, a Concat of differently scaled
branches) a scale stays as an elementwise multiply, so residual networks stay exact.

Cost is linear in the network: shapes are propagated once, every rewrite is local (it touches a
scale and its neighbours) and re-queues only the scales next to what it changed. The scales are
rewritten in graph order, always the first one some rewrite applies to, until none applies — the
order (and so the floating-point result) of rewriting the graph from its start after every step.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch import fx, nn

from bridges import ops
from bridges.fold import fold_input_scale, fold_output_affine
from bridges.modules import Affine, Pad

from ..errors import ConversionError
from ..neurons import SpikingMaxPool
from ..sequence import SeqAdd, SeqModule, propagate_shapes


def _seq_inner(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    mod = gm.get_submodule(node.target)
    return mod.module if isinstance(mod, SeqModule) else mod


def _is_scale(gm: fx.GraphModule, node: fx.Node) -> bool:
    inner = _seq_inner(gm, node)
    return isinstance(inner, Affine) and inner.scale is not None and inner.bias is None


@dataclass
class _Change:
    """What a rewrite of one scale did: the nodes whose inputs or users changed, and the nodes it erased."""

    touched: list[fx.Node]
    erased: list[fx.Node] = field(default_factory=list)


# A rewrite of one scale node; None when it does not apply.
Rewrite = Callable[[fx.GraphModule, fx.Node], "_Change | None"]


def normalize(snn: fx.GraphModule, example: torch.Tensor) -> int:
    """Fold scale-only Affines into adjacent Conv/Linear weights; returns how many rewrites were made."""
    propagate_shapes(snn, example.unsqueeze(0))
    queue: list[fx.Node] = []  # a heap: fx nodes order by their position in the graph
    queued: set[fx.Node] = set()
    erased: set[fx.Node] = set()

    def push(node: fx.Node) -> None:
        if node not in queued and node.op == "call_module" and _is_scale(snn, node):
            heapq.heappush(queue, node)
            queued.add(node)

    for node in snn.graph.nodes:
        push(node)
    rewrites = 0
    budget = 10 * len(snn.graph.nodes) + 100  # each rewrite removes or moves a scale: far fewer are needed
    while queue:
        if rewrites > budget:
            raise ConversionError("internal error: weight normalisation keeps rewriting; please report this model")
        node = heapq.heappop(queue)
        queued.discard(node)
        if node in erased or not _is_scale(snn, node):
            continue  # erased since it was queued
        for rewrite in _REWRITES:
            change = rewrite(snn, node)
            if change is not None:
                rewrites += 1
                erased.update(change.erased)
                for changed in change.touched:
                    if changed not in erased:
                        for neighbour in (changed, *changed.all_input_nodes, *changed.users):
                            push(neighbour)
                break
    rewrites += _fold_biases(snn)
    snn.graph.eliminate_dead_code()
    snn.graph.lint()
    snn.delete_all_unused_submodules()  # the folded scales' modules: not in the model's state or its files
    snn.recompile()
    propagate_shapes(snn, example.unsqueeze(0))  # every node's shape, for what comes next
    return rewrites


def _shape_meta(shape: tuple[int, ...]) -> SimpleNamespace:
    """Shape metadata for a node made by a rewrite (until the final shape propagation)."""
    return SimpleNamespace(shape=torch.Size(shape))


def _fold_into_producer(gm: fx.GraphModule, node: fx.Node) -> _Change | None:
    """Scale after a Conv/Linear with no other consumer → scale its output channels."""
    producer = node.args[0]
    layer = _seq_inner(gm, producer)
    if not isinstance(layer, ops.WEIGHTED) or len(producer.users) != 1:
        return None
    scale = gm.get_submodule(node.target).module.scale
    out_shape = producer.meta["tensor_meta"].shape[2:]
    vector = _per_channel(
        scale, tuple(out_shape), channel_axis=len(out_shape) - 1 if isinstance(layer, nn.Linear) else 0
    )
    if vector is None:
        return None
    users = list(node.users)
    fold_output_affine(layer, vector, None)
    node.replace_all_uses_with(producer)
    gm.graph.erase_node(node)
    return _Change([producer, *users], [node])


def _fold_biases(gm: fx.GraphModule) -> int:
    """Bias-only Affines (a tuned conversion's corrections) after a Conv/Linear with no other consumer
    → added to its bias; one pass in graph order, after the scales have been folded."""
    folded = 0
    for node in list(gm.graph.nodes):
        inner = _seq_inner(gm, node)
        if not (isinstance(inner, Affine) and inner.scale is None and inner.bias is not None):
            continue
        producer = node.args[0]
        layer = _seq_inner(gm, producer)
        if not isinstance(layer, ops.WEIGHTED) or len(producer.users) != 1:
            continue
        out_shape = tuple(producer.meta["tensor_meta"].shape[2:])
        vector = _per_channel(
            inner.bias, out_shape, channel_axis=len(out_shape) - 1 if isinstance(layer, nn.Linear) else 0
        )
        if vector is None:
            continue
        fold_output_affine(layer, None, vector)
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
        folded += 1
    return folded


def _fold_into_consumers(gm: fx.GraphModule, node: fx.Node) -> _Change | None:
    """Scale before Conv/Linear consumers → scale their input channels; other consumers keep the scale."""
    scale = gm.get_submodule(node.target).module.scale
    in_shape = tuple(node.meta["tensor_meta"].shape[2:])
    folded = []
    for user in list(node.users):
        layer = _seq_inner(gm, user)
        if not isinstance(layer, ops.WEIGHTED) or len(user.args) != 1:
            continue
        vector = _per_channel(scale, in_shape, channel_axis=len(in_shape) - 1 if isinstance(layer, nn.Linear) else 0)
        if vector is None:
            continue
        fold_input_scale(layer, vector)
        user.replace_input_with(node, node.args[0])
        folded.append(user)
    if not folded:
        return None
    source = node.args[0]
    if node.users:
        return _Change([source, *folded, node])
    gm.graph.erase_node(node)
    return _Change([source, *folded], [node])


def _push_back_through_add(gm: fx.GraphModule, node: fx.Node) -> _Change | None:
    """A scale after an Add/Sub (its only consumer) moves onto each of the Add's inputs."""
    producer = node.args[0]
    if (
        producer.op != "call_module"
        or not isinstance(gm.get_submodule(producer.target), SeqAdd)
        or len(producer.users) != 1
    ):
        return None
    module = gm.get_submodule(node.target)
    operands = list(dict.fromkeys(producer.args))  # an operand used twice (x + x) gets one copy
    copies = []
    for i, operand in enumerate(operands):
        copy_name = f"{node.target}_{i}"
        suffix = 0
        while hasattr(gm, copy_name):
            suffix += 1
            copy_name = f"{node.target}_{i}_{suffix}"
        gm.add_submodule(copy_name, copy.deepcopy(module))
        with gm.graph.inserting_before(producer):
            scaled = gm.graph.call_module(copy_name, (operand,))
        scaled.meta["tensor_meta"] = _shape_meta(
            torch.broadcast_shapes(operand.meta["tensor_meta"].shape, (1, 1) + tuple(module.module.scale.shape))
        )
        producer.args = tuple(scaled if a is operand else a for a in producer.args)
        copies.append(scaled)
    users = list(node.users)
    node.replace_all_uses_with(producer)
    gm.graph.erase_node(node)
    return _Change([producer, *operands, *copies, *users], [node])


def _merge_with_next(gm: fx.GraphModule, node: fx.Node) -> _Change | None:
    """Two scales in a row become one."""
    users = list(node.users)
    if len(users) != 1 or not _is_scale(gm, users[0]):
        return None
    nxt = gm.get_submodule(users[0].target).module
    nxt.scale = nxt.scale * gm.get_submodule(node.target).module.scale
    source = node.args[0]
    users[0].replace_input_with(node, source)
    gm.graph.erase_node(node)
    return _Change([source, users[0]], [node])


def _push_forward(gm: fx.GraphModule, node: fx.Node) -> _Change | None:
    """Move a positive per-channel scale past pooling / flatten / zero padding towards a layer."""
    users = list(node.users)
    if len(users) != 1:
        return None
    user = users[0]
    inner = _seq_inner(gm, user)
    scale = gm.get_submodule(node.target).module.scale
    if bool((scale <= 0).any()):
        return None
    in_shape = tuple(node.meta["tensor_meta"].shape[2:])
    if isinstance(inner, (SpikingMaxPool,) + ops.CHANNEL_WISE) or isinstance(inner, Pad) and inner.value == 0.0:
        vector = _per_channel(scale, in_shape, channel_axis=0)
        if vector is None:
            return None
        new_scale = vector.reshape((-1,) + (1,) * (len(in_shape) - 1))
    elif isinstance(inner, nn.Flatten) and inner.start_dim == 1 and inner.end_dim == -1:
        new_scale = scale.expand(in_shape).reshape(-1).clone()
    else:
        return None
    # rewire: x → user → scale'  instead of  x → scale → user
    followers = list(user.users)
    source = node.args[0]
    user.replace_input_with(node, source)
    gm.get_submodule(node.target).module.scale = new_scale
    with gm.graph.inserting_after(user):
        moved = gm.graph.call_module(node.target, (user,))
    user.replace_all_uses_with(moved)
    moved.args = (user,)
    moved.meta["tensor_meta"] = user.meta["tensor_meta"]  # a per-channel scale keeps the shape
    gm.graph.erase_node(node)
    return _Change([source, user, moved, *followers], [node])


def _per_channel(scale: torch.Tensor, shape: tuple[int, ...], channel_axis: int) -> torch.Tensor | None:
    """A per-sample scale as one value per channel, or None if it varies within a channel."""
    try:
        full = scale.expand(shape)
    except RuntimeError:
        return None
    moved = full.movedim(channel_axis, 0).reshape(shape[channel_axis], -1)
    if not torch.equal(moved, moved[:, :1].expand_as(moved)):
        return None
    return moved[:, 0].clone()


# in this order: folding into a layer first, moving a scale only where it cannot fold
_REWRITES: tuple[Rewrite, ...] = (
    _fold_into_producer,
    _fold_into_consumers,
    _merge_with_next,
    _push_back_through_add,
    _push_forward,
)
