"""Temporal conversion: values coded in spike timing relative to a global oscillation.

Two codes (`TemporalOptions.code`), both on the λ every scheme measures (per-layer/-channel
percentile normalisation, folded into the weights):

- ``"ttfs"`` (default), single spike per neuron per inference: ReLU →
  ``Affine(1/λ) → TTFSNode → StepSynapse → Affine(λ)``. The node at depth d integrates during
  cycle d and fires once during cycle d + 1; the whole network is exact with respect to the
  ANN whose activations are clipped at λ and rounded to K levels, a(·) = λ·round(K·a/λ)/K
  (`convert2snn.graph.limits.quantized_ann`, checked in the tests), and the output is complete
  after (depth + 1)·K steps, a cycle more per max pooling of a general current
  (`SpikingModel.latency`). Max pooling is exact: of neuron outputs as it is (the OR of
  single-spike codes is the code of the maximum), of any other current (Conv → BN → MaxPool, a sum
  of branches) one cycle later (`CycleMaxPool`); residual Add / Concat inputs of different depth
  are delayed by whole cycles (`CycleDelay`).
- ``"phase"``, phase coding with weighted spikes: ReLU → ``PhaseNode`` (oscillating threshold
  θ0·2^−(1 + t mod K)); everything else as every scheme does it (exact max pooling on time
  averages, membrane readout). Converges over cycles like rate coding, with fewer spikes.

See `convert2snn.neurons.temporal` for the neurons.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import fx, nn

from bridges import ops
from bridges.modules import Affine, Pad

from ..errors import InvalidInputError
from ..graph.builder import SNNBuilder
from ..neurons import CycleDelay, CycleMaxPool, CycleReadout, PhaseNode, StepSynapse, TTFSNode, latency
from ..report import ConversionReport
from ..sequence import SeqModule
from .base import Scheme, SchemeOptions, option, register
from .common import add, affine_map, cat, check_relu_like, spiking_max_pool, sub

CODES = ("ttfs", "phase")
# Maps after which a single-spike step current is still one (so max pooling of it stays exact).
_KEEPS_CODE = ops.MOVES_VALUES + ops.MAX_POOL


@dataclass
class TemporalOptions(SchemeOptions):
    """Options of ``conversion_type="temporal"``."""

    code: str = option(
        "ttfs",
        "'ttfs': one spike per neuron per inference, its time within a cycle codes the value "
        "(exact up to K-level rounding); 'phase': weighted spikes with an oscillating threshold "
        "(K bits per cycle)",
        choices=CODES,
    )
    period: int = option(
        16,
        "K, steps per oscillation cycle: the ttfs code's resolution (K levels per activation; "
        "the output is complete after (depth + 1)·K steps) and the phase code's bits per cycle",
    )

    def validate(self) -> None:
        """The shared checks, then K ∈ [2, 1024] (≤ 24 for the phase code) and analog input encoding."""
        super().validate()
        if isinstance(self.period, bool) or not isinstance(self.period, int) or not 2 <= self.period <= 1024:
            raise InvalidInputError(
                f"period (steps per oscillation cycle, K) must be an integer in [2, 1024], got {self.period!r}"
            )
        if self.code == "phase" and self.period > 24:
            raise InvalidInputError(
                f"period={self.period} with code='phase' would need thresholds down to 2^-{self.period + 1} "
                "of the scale, below float32 resolution of the membrane; use period ≤ 24"
            )
        if self.encoding != "analog":
            raise InvalidInputError(
                f"conversion_type='temporal' codes the input as an analog current; encoding={self.encoding!r} is not "
                "available (use conversion_type='rate' for Poisson input)"
            )


@register("temporal")
class TemporalScheme(Scheme):
    """Oscillation-referenced timing codes: single spike per neuron (ttfs) or phase-weighted spikes."""

    Options = TemporalOptions
    coded = "temporally coded"
    represented_by = "spike times"

    def readout(self, builder: SNNBuilder, output: fx.Node) -> nn.Module:
        """ttfs: a `CycleReadout` integrating during the output's cycle; phase: the shared membrane readout."""
        if not _ttfs(builder):
            return super().readout(builder, output)
        return CycleReadout(self.options.period, _cycle(builder, output) or 0)

    def finalize(self, snn: fx.GraphModule, report: ConversionReport) -> None:
        """ttfs: note in the report the steps until the output is complete and the K-level rounding."""
        steps = latency(snn)
        if steps is not None:
            period = self.options.period
            report.notes.append(
                f"single-spike code, K = {period}: the output is complete after {steps} steps "
                f"({steps // period} cycles); every activation is rounded to {period} levels"
            )


# -- where each signal is valid (single-spike code) ------------------------------------------------
# For every SNN node: the cycle in which its value is carried (None: constant over time, e.g. the
# analog input and the layers before the first neuron).
def _cycle(b: SNNBuilder, node: fx.Node) -> int | None:
    return b.state.setdefault("cycles", {}).get(node.name)


def _record(b: SNNBuilder, out: fx.Node, cycle: int | None) -> fx.Node:
    b.state.setdefault("cycles", {})[out.name] = cycle
    return out


def _ttfs(b: SNNBuilder) -> bool:
    return b.options.code == "ttfs"


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
            a = b.call(CycleDelay(target - c, b.options.period, c), (a,), f"{node.name}_delay{i}", node)
            b.report.notes.append(
                f"layer '{b.layer(node)}': input {i} delayed by {target - c} cycle(s) to meet the others"
            )
        aligned.append(a)
    return tuple(aligned), target


def single_spike_signals(ann: fx.GraphModule) -> dict[fx.Node, bool | None]:
    """Per ANN node: True if its value is a neuron output (possibly re-shaped/pooled), None if it is
    constant over time (computed from the input alone), False for a general current."""
    held: dict[fx.Node, bool | None] = {}
    for node in ann.graph.nodes:
        ins = [held.get(a) for a in node.all_input_nodes]
        mod = ann.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "placeholder":
            held[node] = None
        elif isinstance(mod, ops.RELU_LIKE):
            held[node] = True
        elif all(v is None for v in ins):
            held[node] = None
        elif mod is not None:
            keeps = isinstance(mod, _KEEPS_CODE) or isinstance(mod, Pad) and mod.value == 0.0
            held[node] = bool(keeps and ins[0])
        else:
            held[node] = node.target is torch.cat and all(v is not False for v in ins)
    return held


# -- rules ----------------------------------------------------------------------------------------
@TemporalScheme.rule(*ops.RELU_LIKE, check=check_relu_like)
def relu_to_oscillatory(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """ReLU-like → ``Affine(1/λ) → PhaseNode → Affine(λ)`` (phase), or ``Affine(1/λ) → TTFSNode →
    StepSynapse → Affine(λ)``, firing in the cycle after its input's (ttfs)."""
    opts = b.options
    scale = b.scales[node.name]
    pre = b.call(SeqModule(Affine(1.0 / scale, None)), args, f"{node.name}_in", node)
    if not _ttfs(b):
        spikes = b.call(PhaseNode(opts.period), (pre,), node.name, node)
        return b.call(SeqModule(Affine(scale, None)), (spikes,), f"{node.name}_out", node)
    cycle = _cycle(b, args[0]) or 0
    spikes = b.call(TTFSNode(opts.period, cycle), (pre,), node.name, node)
    current = b.call(StepSynapse(opts.period), (spikes,), f"{node.name}_synapse", node)
    return _record(b, b.call(SeqModule(Affine(scale, None)), (current,), f"{node.name}_out", node), cycle + 1)


@TemporalScheme.rule(*ops.MAX_POOL)
def temporal_max_pool(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """Max pooling → `SpikingMaxPool` (phase); ttfs: the pool at every step for neuron outputs, a `CycleMaxPool`
    (one cycle later) for any other current."""
    if not _ttfs(b):
        return spiking_max_pool(b, node, args)
    cycle = _cycle(b, args[0])
    signals = b.state.get("single_spike_signals")
    if signals is None:
        signals = b.state["single_spike_signals"] = single_spike_signals(b.ann)
    if signals.get(node.args[0]) is not False:
        # the OR of single-spike step currents is the code of their maximum: a plain pool per step
        return _record(b, b.stateless(node, args), cycle)
    b.report.notes.append(
        f"layer '{b.layer(node)}': max pooling of a current (not of neuron outputs) takes one more cycle"
    )
    pool = CycleMaxPool(b.ann_module(node), b.options.period, cycle or 0)
    return _record(b, b.call(pool, args, node.name, node), (cycle or 0) + 1)


@TemporalScheme.rule(*ops.AFFINE_MAPS)
def temporal_affine_map(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """Affine maps → the module at every step (`affine_map`); ttfs: the output keeps its input's cycle."""
    out = affine_map(b, node, args)
    return _record(b, out, _cycle(b, args[0])) if _ttfs(b) else out


def _join(rule):
    def temporal_join(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
        if not _ttfs(b):
            return rule(b, node, args)
        aligned, cycle = _align(b, node, args)
        return _record(b, rule(b, node, aligned), cycle)

    return temporal_join


TemporalScheme.rule(operator.add)(_join(add))
TemporalScheme.rule(operator.sub)(_join(sub))
TemporalScheme.rule(torch.cat)(_join(cat))
