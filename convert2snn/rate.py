"""Rate conversion: ReLU units → integrate-and-fire neurons whose spike rate times λ is the activation.

Construction (exact in the T → ∞ limit, checked against the λ-clipped ANN at conversion):

- every ReLU / ReLU6 / clipped ReLU becomes ``Affine(1/λ) → IFNeuron(θ = 1) → Affine(λ)``:
  the neuron sees its input current in units of λ and each edge carries values in the
  units of the ANN;
- `normalize` then folds those scales into the weights where a Conv/Linear is adjacent
  (weights·λ_in/λ_out, biases/λ_out — the classic data-based normalisation); where no layer
  is adjacent (a residual Add, a Concat of differently scaled branches) the scale stays as an
  elementwise multiply, so residual networks stay exact;
- max pooling becomes `SpikingMaxPool` (exact on time averages), average pooling and other
  linear maps run per time step, the final softmax is dropped, the output is a
  `MembraneReadout`.
"""
from __future__ import annotations

import copy
import operator

import torch
from torch import fx, nn

from bridges.fold import WEIGHTED_TYPES, fold_input_scale, fold_output_affine
from bridges.modules import Affine, OutputSoftmax, Pad, Permute, Reshape

from .build import SNNBuilder, conversion_rule
from .calibrate import interval_maxima
from .conversion import ConversionType, conversion_type, refuse_unsupported
from .errors import ApproximationError, ConversionError
from .options import RateOptions
from .nodes import IFNeuron, MembraneReadout, SpikingMaxPool
from .sequence import SeqAdd, SeqCat, SeqModule, propagate_shapes

# How far the SNN's T → ∞ limit may differ from the λ-clipped ANN (relative): float32 rounding only.
LIMIT_TOLERANCE = 1e-4
ACTIVATION_TYPES = (nn.ReLU, nn.Hardtanh)  # nn.ReLU6 is a Hardtanh
MAX_POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                  nn.AdaptiveMaxPool3d)
LINEAR_TYPES = WEIGHTED_TYPES + (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.Flatten, nn.Unflatten, nn.Upsample, nn.Identity, Reshape, Permute, Pad, Affine,
)
# channel-wise maps that commute with a positive per-channel scale
_SCALE_COMMUTING = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                    nn.AdaptiveAvgPool3d, nn.Upsample)

_REFUSALS: dict[type, tuple[str, str]] = {
    nn.Sigmoid: ("a sigmoid cannot be represented by spike rates of IF neurons",
                 "Use conversion_type='population' (populations with normally distributed thresholds represent sigmoid)."),
    nn.Tanh: ("tanh cannot be represented by spike rates of IF neurons (it is negative for negative inputs)",
              "Use conversion_type='population' (two-sided populations represent tanh)."),
    nn.LeakyReLU: ("a negative slope would need negative spikes", "Retrain with ReLU (or LeakyReLU(0))."),
    nn.ELU: ("ELU is negative for negative inputs", "Retrain with ReLU."),
    nn.Softmax: ("a softmax inside the network is not rate-codable", "Only a final softmax is supported (it is dropped)."),
}


def _clip_value(module: nn.Module) -> float | None:
    if isinstance(module, nn.Hardtanh):
        return float(module.max_val)
    return None


def activation_nodes(ann: fx.GraphModule) -> list[fx.Node]:
    """ANN nodes that become spiking neurons."""
    return [n for n in ann.graph.nodes if n.op == "call_module" and isinstance(ann.get_submodule(n.target), ACTIVATION_TYPES)]


def preflight(ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
    """Refuse, before any calibration, every layer a rate-coded SNN cannot represent."""
    refuse_unsupported(ann, layer_names, _problem, "rate")


def _problem(ann: fx.GraphModule, node: fx.Node) -> tuple[str, str, str] | None:
    if node.op == "call_module":
        mod = ann.get_submodule(node.target)
        op = type(mod).__name__
        if isinstance(mod, OutputSoftmax) or isinstance(mod, MAX_POOL_TYPES) or isinstance(mod, LINEAR_TYPES):
            return None
        if isinstance(mod, nn.Hardtanh) and float(mod.min_val) != 0.0:
            return (f"{op}(min={mod.min_val}) clips at a nonzero minimum", "Only ReLU-like clipping at 0 is rate-codable.", op)
        if isinstance(mod, ACTIVATION_TYPES):
            return None
        for cls, (what, hint) in _REFUSALS.items():
            if isinstance(mod, cls):
                return (f"{op}: {what}", hint, op)
        if type(mod).__name__ == "LSTM":
            return ("LSTM: gated recurrence is not rate-codable", "Use conversion_type='population'.", op)
        return (f"{op} has no rate-coded equivalent", "Replace it with a supported layer (see the README's table).", op)
    if node.op == "call_function":
        if node.target in (operator.add, operator.sub, torch.cat):
            return None
        if node.target is operator.mul:
            return ("Multiply of two tensors: the rate of a product is not the product of rates",
                    "Remove the elementwise product (e.g. attention gates) or use an analog layer.", "Mul")
        return (f"{getattr(node.target, '__name__', node.target)} has no rate-coded equivalent", "Remove it.", "function")
    return None


# -- rules --------------------------------------------------------------------------------
@conversion_rule("rate", *ACTIVATION_TYPES)
def relu_to_if(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    scale = b.context.scales[node.name]
    opts = b.context.options
    tau = opts.tau if opts.neuron == "lif" else None
    pre = b.call(SeqModule(Affine(opts.amp_factor / scale, None)), args, f"{node.name}_in", node)
    spikes = b.call(IFNeuron(v_threshold=opts.amp_factor, v_init=opts.v_init, tau=tau), (pre,), node.name, node)
    return b.call(SeqModule(Affine(scale, None)), (spikes,), f"{node.name}_out", node)


@conversion_rule("rate", *MAX_POOL_TYPES)
def spiking_max_pool(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    return b.call(SpikingMaxPool(b.ann_module(node)), args, node.name, node)


@conversion_rule("rate", *LINEAR_TYPES)
def linear_map(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    return b.stateless(node, args)


@conversion_rule("rate", operator.add)
def add(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    return b.call(SeqAdd(1.0), args, node.name, node)


@conversion_rule("rate", operator.sub)
def sub(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    return b.call(SeqAdd(-1.0), args, node.name, node)


@conversion_rule("rate", torch.cat)
def cat(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    return b.call(SeqCat(node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)), args, node.name, node)


# -- λ per layer ----------------------------------------------------------------------------
def layer_scales(ann: fx.GraphModule, maxima: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]],
                 report_names: dict[str, str], report) -> dict[str, torch.Tensor]:
    """λ for each activation node from its measured (or bounded) maximum: capped by a clip value, never zero."""
    scales = {}
    for node in activation_nodes(ann):
        lam = maxima[node.name].float()
        clip = _clip_value(ann.get_submodule(node.target))
        if clip is not None:
            lam = lam.clamp(max=clip)
        dead = lam <= 0
        if bool(dead.any()):
            report.notes.append(f"layer '{report_names.get(node.name, node.name)}': {int(dead.sum())} channel(s) never "
                                "active on the calibration data; their λ is set to 1")
            lam = torch.where(dead, torch.ones_like(lam), lam)
        if lam.dim() == 1:  # per channel: broadcast over the sample's other axes
            rank = len(shapes[node.name])
            lam = lam.reshape((-1,) + (1,) * (rank - 1)) if rank > 1 else lam
        scales[node.name] = lam
        flat = lam.reshape(-1)
        name = report_names.get(node.name, node.name)
        report.scales[name] = ({"lambda": float(flat[0])} if flat.numel() == 1 else
                               {"min": float(flat.min()), "mean": float(flat.mean()), "max": float(flat.max())})
    return scales


# -- normalisation: fold the scales into weights ------------------------------------------------
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
            if (_fold_into_producer(snn, node) or _fold_into_consumers(snn, node) or _merge_with_next(snn, node)
                    or _push_back_through_add(snn, node) or _push_forward(snn, node)):
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
    if not isinstance(layer, WEIGHTED_TYPES) or len(producer.users) != 1:
        return False
    scale = gm.get_submodule(node.target).module.scale
    out_shape = producer.meta["tensor_meta"].shape[2:]
    vector = _per_channel(scale, tuple(out_shape), channel_axis=len(out_shape) - 1 if isinstance(layer, nn.Linear) else 0)
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
        if not isinstance(layer, WEIGHTED_TYPES) or len(user.args) != 1:
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
    if producer.op != "call_module" or not isinstance(gm.get_submodule(producer.target), SeqAdd) or len(producer.users) != 1:
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
    if isinstance(inner, (SpikingMaxPool,) + _SCALE_COMMUTING + MAX_POOL_TYPES) or isinstance(inner, Pad) and inner.value == 0.0:
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


# -- the T → ∞ limit -----------------------------------------------------------------------
class _Clamp(nn.Module):
    def __init__(self, high: torch.Tensor):
        super().__init__()
        self.register_buffer("high", high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(x), self.high)


def clipped_ann(ann: fx.GraphModule, scales: dict[str, torch.Tensor]) -> fx.GraphModule:
    """The ANN the SNN converges to: activations clipped at λ, final softmax removed."""
    gm = copy.deepcopy(ann)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if node.name in scales:
                _set_module(gm, node.target, _Clamp(scales[node.name]))
            elif isinstance(mod, OutputSoftmax):
                _set_module(gm, node.target, nn.Identity())
    gm.recompile()
    return gm


def limit_network(snn: fx.GraphModule, neuron_limit) -> fx.GraphModule:
    """A copy of the SNN with every stateful node replaced by its T → ∞ function: neurons by
    ``neuron_limit(module)`` (None: keep), the spiking max-pool by its pool, the readout by identity."""
    gm = copy.deepcopy(snn)
    for name, mod in list(gm.named_modules()):
        if not name:
            continue
        if isinstance(mod, SpikingMaxPool):
            _set_module(gm, name, SeqModule(mod.pool))
        elif getattr(mod, "routes_as_identity", False):  # synapses and delays: identity on values
            _set_module(gm, name, nn.Identity())
        elif isinstance(mod, MembraneReadout):
            _set_module(gm, name, nn.Identity())
        else:
            replacement = neuron_limit(mod)
            if replacement is not None:
                _set_module(gm, name, replacement)
    gm.recompile()
    return gm


def rate_limit(snn: fx.GraphModule) -> fx.GraphModule:
    """The SNN with each neuron replaced by its T → ∞ rate (clamp to [0, 1] for θ = 1)."""
    def neuron_limit(mod: nn.Module) -> nn.Module | None:
        if isinstance(mod, IFNeuron):  # rate = clamp(current / θ, 0, 1)
            return SeqModule(nn.Sequential(Affine(torch.tensor(1.0 / mod.v_threshold), None), nn.Hardtanh(0.0, 1.0)))
        return None

    return limit_network(snn, neuron_limit)


def _set_module(gm: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


@torch.no_grad()
def check_limit(snn: fx.GraphModule, ann: fx.GraphModule, scales: dict[str, torch.Tensor], x: torch.Tensor) -> float:
    """Relative difference between the SNN's rate limit and the λ-clipped ANN on ``x``."""
    return limit_difference(rate_limit(snn), ann, scales, x)


@torch.no_grad()
def limit_difference(limit: fx.GraphModule, ann: fx.GraphModule, scales: dict[str, torch.Tensor], x: torch.Tensor) -> float:
    """Relative max difference between an SNN's limit network (from `limit_network`) and the
    λ-clipped ANN on ``x``: the exactness check every conversion type runs at conversion time."""
    ref = clipped_ann(ann, scales)(x)
    out = limit(x.unsqueeze(0))[0]
    return float((out - ref).abs().max() / max(float(ref.abs().max()), 1e-6))


# -- weight quantisation (SpKeras signed_bit) --------------------------------------------------
@torch.no_grad()
def quantize_weights(snn: fx.GraphModule, bits: int) -> list[str]:
    """Round each weighted layer to ``bits``-bit signed integers times one scale per layer.

    ``W ≈ s·Q`` with Q integer in ±(2^(bits−1) − 1) and s = max|W| / (2^(bits−1) − 1). Stored as s·Q
    (what the integer layer followed by a threshold divided by s computes). Returns what was done.
    """
    levels = 2 ** (bits - 1) - 1
    done = []
    for name, module in snn.named_modules():
        if isinstance(module, WEIGHTED_TYPES):
            step = float(module.weight.abs().max()) / levels
            if step > 0:
                module.weight.copy_(torch.round(module.weight / step) * step)
            done.append(f"{name.removesuffix('.module')}: step {step:.3g}")
    return done


@conversion_type("rate")
class RateConversion(ConversionType):
    """Rate coding with IF/LIF neurons and data-based (percentile) normalisation."""

    options = RateOptions

    def preflight(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        preflight(ann, layer_names)

    def calibrated_nodes(self, ann: fx.GraphModule) -> list[fx.Node]:
        return activation_nodes(ann)

    def min_percentile(self, options: RateOptions) -> float:
        return options.percentile

    def scales(self, ann, stats, options, shapes, layer_names, report):
        maxima = {name: s.scale(options.percentile) for name, s in stats.items()}
        return layer_scales(ann, maxima, shapes, layer_names, report)

    def data_free_scales(self, ann, options, shapes, layer_names, report):
        nodes = [n.name for n in activation_nodes(ann)]
        maxima = interval_maxima(ann, tuple(shapes[next(iter(ann.graph.nodes)).name]), options.input_range, nodes,
                                 per_channel=options.per_channel)
        report.approximations.append(
            f"data-free normalisation: λ is the largest activation any input in {options.input_range} can produce "
            "(no clipping, but coarser rates than data-based λ: pass calibration_data for fewer timesteps)")
        if options.strict:
            raise ApproximationError("no calibration_data: data-free normalisation is an approximation but strict=True")
        return layer_scales(ann, maxima, shapes, layer_names, report)

    def finish(self, snn: fx.GraphModule, model, example: torch.Tensor) -> None:
        opts = model.options
        folded = normalize(snn, example)
        model.report.notes.append(f"{folded} scale(s) folded into weights (threshold 1 where a Conv/Linear feeds the neuron)")
        if opts.neuron == "if":
            diff = check_limit(snn, model.ann, model.scales, example)
            if diff > LIMIT_TOLERANCE:
                raise ConversionError(f"internal error: the SNN's T→∞ limit differs from the clipped ANN by {diff:.2e}; "
                                      "please report this model")
        if opts.signed_bit:
            if opts.strict:
                raise ApproximationError(f"signed_bit={opts.signed_bit} rounds the weights (an approximation) but strict=True")
            steps = quantize_weights(snn, int(opts.signed_bit))
            model.report.approximations.append(
                f"weights quantised to {opts.signed_bit}-bit signed integers per layer ({'; '.join(steps)})")
