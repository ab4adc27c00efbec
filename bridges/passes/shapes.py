"""Shape ops: reshape chains → Flatten/Reshape, transposes → Permute, identities dropped."""

from __future__ import annotations

import operator

import torch
from onnx2torch.node_converters.cast import OnnxCast
from onnx2torch.node_converters.dropout import OnnxDropoutDynamic
from onnx2torch.node_converters.flatten import OnnxFlatten
from onnx2torch.node_converters.identity import OnnxCopyIdentity
from onnx2torch.node_converters.reshape import OnnxReshape
from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes, OnnxSqueezeStaticAxes
from onnx2torch.node_converters.transpose import OnnxTranspose
from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes, OnnxUnsqueezeStaticAxes
from torch import fx, nn

from ..modules import Permute, Reshape
from .core import BATCHES, PassContext, rule, single_user


def _batch_shapes(ctx: PassContext, node: fx.Node) -> tuple[int, ...] | None:
    """The per-sample shape of ``node`` if its first axis is the batch in both recordings."""
    shapes = [ctx.shape(node, run) for run in range(len(BATCHES))]
    if any(s is None or len(s) == 0 for s in shapes):
        return None
    if any(s[0] != b for s, b in zip(shapes, BATCHES)):
        return None
    if any(s[1:] != shapes[0][1:] for s in shapes):
        return None
    return shapes[0][1:]


@rule(
    OnnxReshape,
    OnnxFlatten,
    nn.Flatten,
    Reshape,
    OnnxSqueezeStaticAxes,
    OnnxSqueezeDynamicAxes,
    OnnxUnsqueezeStaticAxes,
    OnnxUnsqueezeDynamicAxes,
    nn.Unflatten,
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    "view",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
)
def canonical_reshape(ctx: PassContext, node: fx.Node) -> bool:
    """Any batch-preserving reshape becomes `nn.Flatten` (to 1-D samples) or `Reshape`."""
    x = node.args[0] if node.args else None
    if not isinstance(x, fx.Node) or ctx.is_constant(x):
        return False
    src, dst = _batch_shapes(ctx, x), _batch_shapes(ctx, node)
    if src is None or dst is None:
        return False
    if src == dst:
        ctx.replace(node, x)
        return True
    current = ctx.module(node) if node.op == "call_module" else None
    if len(dst) == 1:
        if type(current) is nn.Flatten and current.start_dim == 1 and current.end_dim == -1:
            return False
        ctx.replace_with_module(node, nn.Flatten(), (x,), name="flatten")
        return True
    if type(current) is Reshape:
        return False
    ctx.replace_with_module(node, Reshape(dst), (x,), name="reshape")
    return True


@rule(torch.transpose, "transpose", torch.swapaxes, "swapaxes", torch.swapdims, "swapdims")
def transpose_to_permute(ctx: PassContext, node: fx.Node) -> bool:
    """Swapping two axes (channel shuffle: ``x.transpose(1, 2)``) is a `Permute` when the batch stays first."""
    x = node.args[0]
    shape = ctx.shape(x) if isinstance(x, fx.Node) and not ctx.is_constant(x) else None
    dims = list(node.args[1:3]) + [node.kwargs[k] for k in ("dim0", "dim1") if k in node.kwargs]
    if shape is None or len(dims) != 2 or not all(isinstance(d, int) for d in dims):
        return False
    a, b = (d % len(shape) for d in dims)
    if 0 in (a, b) and a != b:
        return False
    perm = list(range(len(shape)))
    perm[a], perm[b] = perm[b], perm[a]
    ctx.replace_with_module(node, Permute(tuple(perm)), (x,), name="permute")
    return True


@rule(torch._assert, torch._assert_async)
def drop_assertion(ctx: PassContext, node: fx.Node) -> bool:
    """A traced shape assertion (torchvision's ``torch._assert``) that held on the recordings: the
    input shape is fixed, so it always holds; its condition's nodes die with it."""
    condition = node.args[0] if node.args else None
    held = all(bool(v) for v in (ctx.value(condition, run) for run in range(len(BATCHES))) if v is not None)
    if node.users or not held:
        return False
    ctx.gm.graph.erase_node(node)
    return True


@rule("torchvision.ops.stochastic_depth.stochastic_depth")  # by name: bridges never imports torchvision
def drop_stochastic_depth(ctx: PassContext, node: fx.Node) -> bool:
    """``stochastic_depth(x, p, mode, training=False)`` is the identity at inference."""
    training = node.kwargs.get("training", node.args[3] if len(node.args) > 3 else True)
    if training is not False:
        return False
    ctx.replace(node, node.args[0])
    return True


@rule(OnnxTranspose, "permute", torch.permute, Permute)
def canonical_permute(ctx: PassContext, node: fx.Node) -> bool:
    """Transpose / permute keeping the batch axis first → `Permute` (identities dropped, two in a row
    composed, a ``Permute → Flatten → Linear`` folded into the Linear's columns)."""
    x = node.args[0]
    if not isinstance(x, fx.Node) or ctx.is_constant(x):
        return False
    if node.op == "call_module":
        mod = ctx.module(node)
        perm = getattr(mod, "perm", None) if not isinstance(mod, Permute) else mod.dims
    else:
        perm = node.args[1:] if len(node.args) > 2 else node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")
    if perm is None:
        return False
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
        ctx.replace(node, x)
        return True
    if perm[0] != 0:
        return False
    prev = x
    if prev.op == "call_module" and isinstance(ctx.module(prev), Permute) and len(prev.users) == 1:
        # two permutations in a row compose into one
        first = ctx.module(prev).dims
        composed = tuple(first[p] for p in perm)
        ctx.replace_with_module(node, Permute(composed), (prev.args[0],), name="permute")
        return True
    if isinstance(ctx.module(node) if node.op == "call_module" else None, Permute):
        return _absorb_permute_into_linear(ctx, node)
    ctx.replace_with_module(node, Permute(perm), (x,), name="permute")
    return True


def _absorb_permute_into_linear(ctx: PassContext, node: fx.Node) -> bool:
    """Permute → Flatten → Linear: fold the permutation into the Linear's columns.

    Keras flattens NHWC tensors; after the NCHW export a Transpose stands before the
    Flatten. Reordering the Linear's input columns makes the Transpose unnecessary.
    """
    flat = single_user(node)
    if flat is None or flat.op != "call_module" or type(ctx.module(flat)) is not nn.Flatten:
        return False
    lin = single_user(flat)
    if lin is None or lin.op != "call_module" or not isinstance(ctx.module(lin), nn.Linear):
        return False
    x = node.args[0]
    shape = ctx.shape(x)
    if shape is None:
        return False
    dims = ctx.module(node).dims
    per_sample = shape[1:]
    # position j of the permuted flat vector reads element index[j] of the unpermuted one
    index = torch.arange(int(torch.tensor(per_sample).prod())).reshape(per_sample)
    index = index.permute(tuple(d - 1 for d in dims[1:])).reshape(-1)
    linear = ctx.module(lin)
    with torch.no_grad():
        new_weight = torch.empty_like(linear.weight)
        new_weight[:, index] = linear.weight
        linear.weight.copy_(new_weight)
    flat.replace_input_with(node, x)
    ctx.gm.graph.erase_node(node)
    return True


@rule(OnnxCast)
def drop_identity_cast(ctx: PassContext, node: fx.Node) -> bool:
    """A Cast to the dtype its input already has → that input."""
    x = node.args[0]
    if not isinstance(x, fx.Node) or ctx.is_constant(x):
        return False
    a, b = ctx.value(x), ctx.value(node)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype:
        ctx.replace(node, x)
        return True
    return False


@rule(
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    OnnxCopyIdentity,
    OnnxDropoutDynamic,
    "contiguous",
    "clone",
    torch.nn.functional.dropout,
    "detach",
)
def drop_identity(ctx: PassContext, node: fx.Node) -> bool:
    """Dropout (inference), Identity and copies carry their input through unchanged."""
    x = node.args[0] if node.args else None
    if not isinstance(x, fx.Node):
        return False
    if node.op == "call_module" and isinstance(ctx.module(node), OnnxDropoutDynamic):
        # returns (output, mask) only when the mask is used; keep exotic uses untouched
        if any(u.op == "call_function" and u.target is operator.getitem for u in node.users):
            return False
    ctx.replace(node, x)
    return True


def _is_reshape(ctx: PassContext, node: fx.Node) -> bool:
    """A batch-preserving reshape in canonical form (`Reshape` or a full `nn.Flatten`)."""
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return False
    mod = ctx.module(node)
    return type(mod) is Reshape or type(mod) is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1


@rule(Reshape, nn.Flatten, priority=-1)
def reshape_of_reshape(ctx: PassContext, node: fx.Node) -> bool:
    """A reshape of a reshape reads the first one's input (the middle one may then go)."""
    if not _is_reshape(ctx, node) or not _is_reshape(ctx, node.args[0]):
        return False
    node.replace_input_with(node.args[0], node.args[0].args[0])
    return True


def _without_units(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


@rule(Reshape, nn.Flatten, priority=-1)
def squeeze_before_permute(ctx: PassContext, node: fx.Node) -> bool:
    """``Permute → Reshape`` that only drops unit axes → ``Reshape → Permute`` on the remaining axes.

    Keras Conv1D / pooling-1D export as ExpandDims → 2-D op → Squeeze: once the 2-D ops are 1-D
    again (see ``unit_axes``), this lets the unit-axis reshapes meet and cancel.
    """
    if not _is_reshape(ctx, node):
        return False
    perm_node = node.args[0]
    if perm_node.op != "call_module" or not isinstance(ctx.module(perm_node), Permute) or len(perm_node.users) != 1:
        return False
    src, mid, dst = _batch_shapes(ctx, perm_node.args[0]), _batch_shapes(ctx, perm_node), _batch_shapes(ctx, node)
    if src is None or mid is None or dst is None or dst != _without_units(mid) or len(dst) < 1:
        return False
    kept = [i for i, s in enumerate(src) if s != 1]
    order = [d - 1 for d in ctx.module(perm_node).dims[1:] if src[d - 1] != 1]
    perm = (0,) + tuple(kept.index(i) + 1 for i in order)
    squeezed = ctx.insert_module(
        perm_node, Reshape(_without_units(src)), (perm_node.args[0],), name="reshape", source_from=perm_node
    )
    out = squeezed
    if perm != tuple(range(len(perm))):
        out = ctx.insert_module(squeezed, Permute(perm), (squeezed,), name="permute", source_from=perm_node)
    ctx.replace(node, out)
    return True
