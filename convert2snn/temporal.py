"""Temporal conversion: values coded in spike timing relative to a global oscillation.

Two codes (`TemporalOptions.code`), both on the rate conversion's λ (per-layer/-channel
percentile normalisation, folded into the weights):

- ``"ttfs"`` (default), single spike per neuron per inference: ReLU →
  ``Affine(1/λ) → TTFSNode → StepSynapse → Affine(λ)``. The node at depth d integrates during
  cycle d and fires once during cycle d + 1; the whole network is exact with respect to the
  ANN whose activations are clipped at λ and rounded to K levels, a(·) = λ·round(K·a/λ)/K
  (checked in the tests), and the output is complete after (depth + 1)·K steps
  (`SpikingModel.latency`). Max pooling is exact (the OR of single-spike codes is the code of
  the maximum) when it pools neuron outputs; residual Add / Concat inputs of different depth
  are delayed by whole cycles (`CycleDelay`).
- ``"phase"``, phase coding with weighted spikes: ReLU → ``PhaseNode`` (oscillating threshold
  θ0·2^−(1 + t mod K)); everything else as in the rate conversion (exact max pooling on time
  averages, membrane readout). Converges over cycles like rate coding, with fewer spikes.

See `convert2snn.temporal_nodes` for the neurons.
"""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import fx, nn

from bridges.modules import Affine, OutputSoftmax, Pad, Permute, Reshape

from .build import SNNBuilder, conversion_rule, drop_output_softmax
from .conversion import conversion_type, refuse_unsupported
from .errors import ConversionError, InvalidInputError
from .nodes import MembraneReadout
from .rate import (ACTIVATION_TYPES, LIMIT_TOLERANCE, LINEAR_TYPES, MAX_POOL_TYPES, RateConversion, _problem, add,
                   cat, clipped_ann, limit_difference, limit_network, linear_map, normalize, spiking_max_pool, sub)
from .sequence import SeqModule
from .temporal_nodes import CycleDelay, CycleReadout, PhaseNode, StepSynapse, TTFSNode

CODES = ("ttfs", "phase")
# Element-to-element maps after which a single-spike step current is still one (max-pool stays exact).
_KEEPS_CODE = (nn.Flatten, nn.Unflatten, nn.Identity, Reshape, Permute) + MAX_POOL_TYPES


@dataclass
class TemporalOptions:
    """Options of ``conversion_type="temporal"``."""

    code: str = "ttfs"
    """"ttfs": one spike per neuron per inference, its time within a cycle codes the value (exact up to
    K-level rounding); "phase": weighted spikes with an oscillating threshold (K bits per cycle)."""
    period: int = 16
    """K, steps per oscillation cycle: the ttfs code's resolution (K levels per activation; the output is
    complete after (depth + 1)·K steps) and the phase code's bits per cycle. 16 by measurement (see
    benchmarks/RESULTS.md)."""
    percentile: float = 99.9
    """Activation percentile that sets each layer's scale λ (100 = max normalisation); as for rate."""
    per_channel: bool = True
    """One λ per output channel (False: one per layer); as for rate."""
    input_range: tuple[float, float] = (0.0, 1.0)
    """Without calibration data: the range of every input value, for the data-free (worst-case) scales."""
    encoding: str = "analog"
    """Input coding: only "analog" (a constant current into the first layer)."""
    batch_size: int = 256
    """Batch size for calibration and simulation."""
    seed: int = 0
    """Unused by the deterministic temporal codes (kept so that every conversion type takes it)."""
    strict: bool = False
    """Raise instead of recording an approximation (data-free scales)."""
    progress: bool = True
    """tqdm progress bars (shown only on a terminal)."""

    def validate(self) -> None:
        if self.code not in CODES:
            raise InvalidInputError(f"code must be one of {', '.join(map(repr, CODES))}, got {self.code!r}")
        if isinstance(self.period, bool) or not isinstance(self.period, int) or not 2 <= self.period <= 1024:
            raise InvalidInputError(f"period (steps per oscillation cycle, K) must be an integer in [2, 1024], got {self.period!r}")
        if self.code == "phase" and self.period > 24:
            raise InvalidInputError(f"period={self.period} with code='phase' would need thresholds down to 2^-{self.period + 1} "
                                    "of the scale, below float32 resolution of the membrane; use period ≤ 24")
        if not 0.0 < self.percentile <= 100.0:
            raise InvalidInputError(f"percentile must be in (0, 100], got {self.percentile}")
        if len(tuple(self.input_range)) != 2 or not float(self.input_range[0]) < float(self.input_range[1]):
            raise InvalidInputError(f"input_range must be (low, high) with low < high, got {self.input_range!r}")
        self.input_range = (float(self.input_range[0]), float(self.input_range[1]))
        if self.encoding != "analog":
            raise InvalidInputError(f"conversion_type='temporal' codes the input as an analog current; encoding="
                                    f"{self.encoding!r} is not available (use conversion_type='rate' for Poisson input)")
        if isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {self.batch_size}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- where each signal is valid (single-spike code) ------------------------------------------------
# For every SNN node: the cycle in which its value is carried (None: constant over time, e.g. the
# analog input and the layers before the first neuron) and whether it is a single-spike step
# current (max pooling of those is exact) or a general current.
def _timing(b: SNNBuilder) -> tuple[dict[str, int | None], dict[str, bool]]:
    ctx = b.context.__dict__
    return ctx.setdefault("cycles", {}), ctx.setdefault("held", {})


def _cycle(b: SNNBuilder, node: fx.Node) -> int | None:
    return _timing(b)[0].get(node.name)


def _held(b: SNNBuilder, node: fx.Node) -> bool:
    return _timing(b)[1].get(node.name, False)


def _record(b: SNNBuilder, out: fx.Node, cycle: int | None, held: bool) -> fx.Node:
    cycles, helds = _timing(b)
    cycles[out.name] = cycle
    helds[out.name] = held
    return out


def _ttfs(b: SNNBuilder) -> bool:
    return b.context.options.code == "ttfs"


def _align(b: SNNBuilder, node: fx.Node, args: tuple) -> tuple[tuple, int | None]:
    """Delay inputs that arrive in earlier cycles so that all arrive in the latest one."""
    cycles = [_cycle(b, a) for a in args]
    timed = [c for c in cycles if c is not None]
    if not timed:
        return args, None
    target = max(timed)
    aligned = []
    for i, (a, c) in enumerate(zip(args, cycles)):
        if c is not None and c < target:
            a = b.call(CycleDelay(target - c, b.context.options.period), (a,), f"{node.name}_delay{i}", node)
            b.report.notes.append(f"layer '{b.layer(node)}': input {i} delayed by {target - c} cycle(s) to meet the others")
        aligned.append(a)
    return tuple(aligned), target


@conversion_rule("temporal", *ACTIVATION_TYPES)
def relu_to_oscillatory(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    opts = b.context.options
    scale = b.context.scales[node.name]
    pre = b.call(SeqModule(Affine(1.0 / scale, None)), args, f"{node.name}_in", node)
    if not _ttfs(b):
        spikes = b.call(PhaseNode(opts.period), (pre,), node.name, node)
        return b.call(SeqModule(Affine(scale, None)), (spikes,), f"{node.name}_out", node)
    cycle = _cycle(b, args[0]) or 0
    spikes = b.call(TTFSNode(opts.period, cycle), (pre,), node.name, node)
    current = b.call(StepSynapse(opts.period), (spikes,), f"{node.name}_synapse", node)
    return _record(b, b.call(SeqModule(Affine(scale, None)), (current,), f"{node.name}_out", node), cycle + 1, True)


@conversion_rule("temporal", *MAX_POOL_TYPES)
def temporal_max_pool(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    if not _ttfs(b):
        return spiking_max_pool(b, node, args)
    source = args[0]
    cycle = _cycle(b, source)
    if cycle is not None and not _held(b, source):
        raise b.refuse(node, "max pooling of a summed current (not of neuron outputs) has no exact single-spike "
                       "equivalent", "Put the MaxPool after the activation (Conv → ReLU → MaxPool), or use "
                       "conversion_type='rate' (or code='phase').")
    return _record(b, b.stateless(node, args), cycle, cycle is not None)


@conversion_rule("temporal", *LINEAR_TYPES)
def temporal_linear_map(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    out = linear_map(b, node, args)
    if not _ttfs(b):
        return out
    module = b.ann.get_submodule(node.target)
    held = _held(b, args[0]) and (
        isinstance(module, _KEEPS_CODE)
        or isinstance(module, Pad) and module.value == 0.0
        or isinstance(module, Affine) and module.bias is None and module.scale is not None and bool((module.scale > 0).all()))
    return _record(b, out, _cycle(b, args[0]), held)


def _join(rule):
    def temporal_join(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
        if not _ttfs(b):
            return rule(b, node, args)
        aligned, cycle = _align(b, node, args)
        out = rule(b, node, aligned)
        held = rule is cat and all(_held(b, a) or _cycle(b, a) is None for a in args)
        return _record(b, out, cycle, held)
    return temporal_join


conversion_rule("temporal", operator.add)(_join(add))
conversion_rule("temporal", operator.sub)(_join(sub))
conversion_rule("temporal", torch.cat)(_join(cat))
conversion_rule("temporal", OutputSoftmax)(drop_output_softmax)


@conversion_rule("temporal", "readout")
def temporal_readout(b: SNNBuilder, output: fx.Node) -> nn.Module:
    if not _ttfs(b):
        return MembraneReadout()
    return CycleReadout(b.context.options.period, _cycle(b, output) or 0)


def temporal_problem(ann: fx.GraphModule, node: fx.Node) -> tuple[str, str, str] | None:
    found = _problem(ann, node)
    if found is not None:
        found = (found[0].replace("rate-coded", "temporally coded").replace("rates of IF neurons", "spike times"),
                 found[1], found[2])
    return found


# -- the limit and the quantised reference ---------------------------------------------------------
def _neuron_limit(mod: nn.Module) -> nn.Module | None:
    if isinstance(mod, (TTFSNode, PhaseNode)):
        return SeqModule(nn.Hardtanh(0.0, 1.0))
    return None


@torch.no_grad()
def check_limit(snn: fx.GraphModule, ann: fx.GraphModule, scales: dict[str, torch.Tensor], x: torch.Tensor) -> float:
    """Relative difference between the SNN's K → ∞ / T → ∞ limit and the λ-clipped ANN on ``x``."""
    return limit_difference(limit_network(snn, _neuron_limit), ann, scales, x)


class _Quantize(nn.Module):
    def __init__(self, high: torch.Tensor, levels: int):
        super().__init__()
        self.register_buffer("high", high)
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(x / self.high, 0.0, 1.0)
        return torch.round(y * self.levels) / self.levels * self.high


def quantized_ann(ann: fx.GraphModule, scales: dict[str, torch.Tensor], period: int) -> fx.GraphModule:
    """The ANN that the single-spike SNN computes exactly: each activation clipped at λ and rounded
    to ``period`` levels (λ·round(K·a/λ)/K), final softmax removed."""
    from .rate import _set_module

    gm = clipped_ann(ann, scales)
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.name in scales:
            _set_module(gm, node.target, _Quantize(scales[node.name], period))
    gm.recompile()
    return gm


def latency(network: nn.Module) -> int | None:
    """Steps until a single-spike network's output is complete (None for other networks)."""
    for module in network.modules():
        if isinstance(module, CycleReadout):
            return module.latency
    return None


def _ttfs_problem(held: dict[fx.Node, bool | None]):
    """Max pooling is exact in the single-spike code only on neuron outputs (or on the constant input)."""
    def problem(ann: fx.GraphModule, node: fx.Node) -> tuple[str, str, str] | None:
        if node.op == "call_module" and isinstance(ann.get_submodule(node.target), MAX_POOL_TYPES):
            if held.get(node.args[0]) is False:
                op = type(ann.get_submodule(node.target)).__name__
                return ("max pooling of a summed current (not of neuron outputs) has no exact single-spike equivalent",
                        "Put the MaxPool after the activation (Conv → ReLU → MaxPool), or use code='phase' or "
                        "conversion_type='rate'.", op)
        return None
    return problem


def _single_spike_signals(ann: fx.GraphModule) -> dict[fx.Node, bool | None]:
    """Per ANN node: True if its value is a neuron output (possibly re-shaped/pooled), None if it is
    constant over time (computed from the input alone), False for a general current."""
    held: dict[fx.Node, bool | None] = {}
    for node in ann.graph.nodes:
        ins = [held.get(a) for a in node.all_input_nodes]
        mod = ann.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "placeholder":
            held[node] = None
        elif isinstance(mod, ACTIVATION_TYPES):
            held[node] = True
        elif all(v is None for v in ins):
            held[node] = None
        elif mod is not None:
            keeps = isinstance(mod, _KEEPS_CODE) or isinstance(mod, Pad) and mod.value == 0.0
            held[node] = bool(keeps and ins[0])
        else:
            held[node] = node.target is torch.cat and all(v is not False for v in ins)
    return held


@conversion_type("temporal")
class TemporalConversion(RateConversion):
    """Oscillation-referenced timing codes: single spike per neuron (ttfs) or phase-weighted spikes.
    λ (calibrated or data-free) exactly as for rate coding."""

    options = TemporalOptions

    def preflight(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        refuse_unsupported(ann, layer_names, temporal_problem, "temporal")
        self._checked = (ann, layer_names)

    def _check_code(self, options: TemporalOptions) -> None:
        # the options are known only here (before calibration / data-free bounds): the code-specific check
        if options.code == "ttfs" and getattr(self, "_checked", None) is not None:
            ann, layer_names = self._checked
            refuse_unsupported(ann, layer_names, _ttfs_problem(_single_spike_signals(ann)), "temporal")

    def min_percentile(self, options: TemporalOptions) -> float:
        self._check_code(options)
        return options.percentile

    def data_free_scales(self, ann, options, shapes, layer_names, report):
        self._check_code(options)
        return super().data_free_scales(ann, options, shapes, layer_names, report)

    def finish(self, snn: fx.GraphModule, model, example: torch.Tensor) -> None:
        folded = normalize(snn, example)
        model.report.notes.append(f"{folded} scale(s) folded into weights (threshold 1 where a Conv/Linear feeds the neuron)")
        diff = check_limit(snn, model.ann, model.scales, example)
        if diff > LIMIT_TOLERANCE:
            raise ConversionError(f"internal error: the temporal SNN's limit differs from the clipped ANN by {diff:.2e}; "
                                  "please report this model")
        steps = latency(snn)
        if steps is not None:
            model.report.notes.append(
                f"single-spike code, K = {model.options.period}: the output is complete after {steps} steps "
                f"({steps // model.options.period} cycles); every activation is rounded to {model.options.period} levels")
