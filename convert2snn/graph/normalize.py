"""Weight normalisation: fold the per-edge scale multiplies of a freshly built SNN into weights.

The schemes place every neuron between ``Affine(1/λ)`` and ``Affine(λ)``, so each edge carries
values in the units of the ANN. `normalize` folds those scale-only Affines into an adjacent
Conv/Linear (weights·λ_in/λ_out, biases/λ_out: the classic data-based normalisation), merges
consecutive scales and moves positive per-channel scales past pooling, padding and flattening
towards a layer. Where no layer is adjacent (a residual Add, a Concat of differently scaled
branches) a scale stays as an elementwise multiply, so residual networks stay exact.
"""

from __future__ import annotations

import copy

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


def normalize(snn: fx.GraphModule, example: torch.Tensor) -> int:
    """Fold scale-only Affines into adjacent Conv/Linear weights; returns how many were folded."""
    folded = 0
    for _ in range(100):
        propagate_shapes(snn, example.unsqueeze(0))
        changed = 0
        for node in list(snn.graph.nodes):
            if node.graph is None or not _is_scale(snn, node):
                continue
            if (
                _fold_into_producer(snn, node)
                or _fold_into_consumers(snn, node)
                or _merge_with_next(snn, node)
                or _push_back_through_add(snn, node)
                or _push_forward(snn, node)
            ):
                changed += 1
                break
        snn.graph.eliminate_dead_code()
        snn.graph.lint()
        snn.recompile()
        folded += changed
        if not changed:
            return folded
    raise ConversionError("internal error: weight normalisation did not converge; please report this model")


def _fold_into_producer(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Scale after a Conv/Linear with no other consumer → scale its output channels."""
    producer = node.args[0]
    layer = _seq_inner(gm, producer)
    if not isinstance(layer, ops.WEIGHTED) or len(producer.users) != 1:
        return False
    scale = gm.get_submodule(node.target).module.scale
    out_shape = producer.meta["tensor_meta"].shape[2:]
    vector = _per_channel(
        scale, tuple(out_shape), channel_axis=len(out_shape) - 1 if isinstance(layer, nn.Linear) else 0
    )
    if vector is None:
        return False
    fold_output_affine(layer, vector, None)
    node.replace_all_uses_with(producer)
    gm.graph.erase_node(node)
    return True


def _fold_into_consumers(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Scale before Conv/Linear consumers → scale their input channels; other consumers keep the scale."""
    scale = gm.get_submodule(node.target).module.scale
    in_shape = tuple(node.meta["tensor_meta"].shape[2:])
    folded = False
    for user in list(node.users):
        layer = _seq_inner(gm, user)
        if not isinstance(layer, ops.WEIGHTED) or len(user.args) != 1:
            continue
        vector = _per_channel(scale, in_shape, channel_axis=len(in_shape) - 1 if isinstance(layer, nn.Linear) else 0)
        if vector is None:
            continue
        fold_input_scale(layer, vector)
        user.replace_input_with(node, node.args[0])
        folded = True
    if folded and not node.users:
        gm.graph.erase_node(node)
    return folded


def _push_back_through_add(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A scale after an Add/Sub (its only consumer) moves onto each of the Add's inputs."""
    producer = node.args[0]
    if (
        producer.op != "call_module"
        or not isinstance(gm.get_submodule(producer.target), SeqAdd)
        or len(producer.users) != 1
    ):
        return False
    module = gm.get_submodule(node.target)
    for i, operand in enumerate(producer.args):
        copy_name = f"{node.target}_{i}"
        suffix = 0
        while hasattr(gm, copy_name):
            suffix += 1
            copy_name = f"{node.target}_{i}_{suffix}"
        gm.add_submodule(copy_name, copy.deepcopy(module))
        with gm.graph.inserting_before(producer):
            scaled = gm.graph.call_module(copy_name, (operand,))
        producer.replace_input_with(operand, scaled) if producer.args.count(operand) == 1 else None
        if producer.args.count(operand) > 1:
            producer.args = tuple(scaled if a is operand else a for a in producer.args)
    node.replace_all_uses_with(producer)
    gm.graph.erase_node(node)
    return True


def _merge_with_next(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Two scales in a row become one."""
    users = list(node.users)
    if len(users) != 1 or not _is_scale(gm, users[0]):
        return False
    nxt = gm.get_submodule(users[0].target).module
    nxt.scale = nxt.scale * gm.get_submodule(node.target).module.scale
    users[0].replace_input_with(node, node.args[0])
    gm.graph.erase_node(node)
    return True


def _push_forward(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Move a positive per-channel scale past pooling / flatten / zero padding towards a layer."""
    users = list(node.users)
    if len(users) != 1:
        return False
    user = users[0]
    inner = _seq_inner(gm, user)
    scale = gm.get_submodule(node.target).module.scale
    if bool((scale <= 0).any()):
        return False
    in_shape = tuple(node.meta["tensor_meta"].shape[2:])
    if isinstance(inner, (SpikingMaxPool,) + ops.CHANNEL_WISE) or isinstance(inner, Pad) and inner.value == 0.0:
        vector = _per_channel(scale, in_shape, channel_axis=0)
        if vector is None:
            return False
        new_scale = vector.reshape((-1,) + (1,) * (len(in_shape) - 1))
    elif isinstance(inner, nn.Flatten) and inner.start_dim == 1 and inner.end_dim == -1:
        new_scale = scale.expand(in_shape).reshape(-1).clone()
    else:
        return False
    # rewire: x → user → scale'  instead of  x → scale → user
    user.replace_input_with(node, node.args[0])
    gm.get_submodule(node.target).module.scale = new_scale
    with gm.graph.inserting_after(user):
        moved = gm.graph.call_module(node.target, (user,))
    user.replace_all_uses_with(moved)
    moved.args = (user,)
    gm.graph.erase_node(node)
    return True


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
