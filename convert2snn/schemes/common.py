"""Rules every coding scheme shares, declared once on `Scheme` and inherited by every scheme.

- affine maps (Conv/Linear, average pooling, reshapes, upsampling, padding, constant scales)
  commute with averaging over time: they run once per time step on the spike trains;
- max pooling becomes `SpikingMaxPool`, exact on time averages;
- Add / Sub / Concat of sequences (each edge carries values in its source's units, so residual
  networks stay exact);
- the final softmax is dropped: the readout reports logits, the argmax is unchanged.

`Scheme.refusals` says why the ops without a rule cannot be converted and what to do instead.
A scheme overrides any of these rules by declaring the key again (temporal coding does).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from bridges import ops
from bridges.converters.lstm import LSTM
from bridges.modules import OutputSoftmax

from ..graph.builder import SNNBuilder
from ..neurons import SpikingMaxPool
from ..sequence import SeqAdd, SeqCat
from .base import CheckContext, Problem, Refusal, Scheme


@Scheme.rule(*ops.AFFINE_MAPS)
def affine_map(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """Conv/Linear, average pooling, reshapes, upsampling, padding, `Affine` → the same module at every step
    (`SeqModule`)."""
    return b.stateless(node, args)


@Scheme.rule(*ops.MAX_POOL)
def spiking_max_pool(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """Max pooling → `SpikingMaxPool` around the same pooling module (exact on time averages)."""
    return b.call(SpikingMaxPool(b.ann_module(node)), args, node.name, node)


@Scheme.rule(operator.add)
def add(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """``operator.add`` → `SeqAdd`: the elementwise sum of the two sequences."""
    return b.call(SeqAdd(1.0), args, node.name, node)


@Scheme.rule(operator.sub)
def sub(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """``operator.sub`` → `SeqAdd(-1)`: the elementwise difference of the two sequences."""
    return b.call(SeqAdd(-1.0), args, node.name, node)


@Scheme.rule(torch.cat)
def cat(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """``torch.cat`` → `SeqCat` along the same per-sample axis."""
    return b.call(SeqCat(node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)), args, node.name, node)


@Scheme.rule(OutputSoftmax)
def drop_output_softmax(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """`OutputSoftmax` → no node: its input is the output (logits; the argmax is unchanged), noted in the report."""
    b.report.notes.append(
        f"the final softmax '{b.layer(node)}' was dropped: the readout reports logits "
        "(the argmax, i.e. the prediction, is unchanged)"
    )
    return args[0]


Scheme.refusals = {
    nn.Sigmoid: Refusal(
        "a sigmoid cannot be represented by {by}",
        "Use conversion_type='population' (populations with normally distributed thresholds represent sigmoid).",
    ),
    nn.Tanh: Refusal(
        "tanh cannot be represented by {by} (it is negative for negative inputs)",
        "Use conversion_type='population' (two-sided populations represent tanh).",
    ),
    **{
        activation: Refusal(
            "not a ReLU-like activation (it is negative or curved where ReLU is not), which {by} cannot represent",
            "Use conversion_type='population' (populations represent any scalar activation, piece by piece), or "
            "retrain with ReLU / ReLU6 (hard-sigmoid converts everywhere).",
        )
        for activation in (*ops.SCALAR_ACTIVATIONS, F.silu, F.gelu, F.hardswish, F.mish, F.softplus, F.elu)
    },
    nn.PReLU: Refusal(
        "a learned per-channel negative slope, which {by} cannot represent",
        "Retrain with ReLU, or with LeakyReLU and use conversion_type='population'.",
    ),
    **{
        norm: Refusal(
            "normalises each sample by its own mean and variance, which spike counts cannot compute",
            "Use BatchNorm (folded into the weights at inference) and retrain.",
        )
        for norm in (
            nn.LayerNorm,
            nn.GroupNorm,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.InstanceNorm3d,
            nn.LocalResponseNorm,
            F.layer_norm,
            F.group_norm,
            F.instance_norm,
            F.local_response_norm,
        )
    },
    nn.Softmax: Refusal(
        "a softmax inside the network has no {coded} equivalent", "Only a final softmax is supported (it is dropped)."
    ),
    LSTM: Refusal("gated recurrence has no {coded} equivalent", "Use conversion_type='population'."),
    nn.LSTM: Refusal(
        "torch's nn.LSTM module is not part of the clean graph",
        "Export the model to ONNX (torch.onnx.export) and convert the .onnx file: its LSTM converts with "
        "conversion_type='population'.",
    ),
    operator.mul: Refusal(
        "the rate of a product is not the product of rates, and no conversion type multiplies two signals",
        "Retrain without the elementwise product (a squeeze-excitation or attention gate).",
        label="Multiply of two tensors",
        op="Mul",
    ),
}


def check_relu_like(ctx: CheckContext, node: fx.Node) -> Problem | None:
    """The check of every scheme's ReLU rule: a Hardtanh must clip at 0 below (ReLU6, clipped ReLU)."""
    module = ctx.module(node)
    if isinstance(module, nn.Hardtanh) and float(module.min_val) != 0.0:
        op = type(module).__name__
        return (
            f"{op}(min={module.min_val}) clips at a nonzero minimum",
            "Only ReLU-like clipping at 0 can be converted.",
            op,
        )
    return None
