"""Reference networks for the exactness checks: what an SNN converges to, and the ANN it must equal.

- `limit_network`: a copy of an SNN with every stateful module replaced by the T → ∞ function
  it declares (`StatefulNode.limit_module`): neurons by their clipped rates, routers by their
  routing maps, the readout by identity;
- `clipped_ann`: the ANN with every activation clipped at its scale λ (an activation represented on
  an input range [low, high]: its input clamped to that range) and the final softmax removed — what
  a conversion with those scales converges to;
- `quantized_ann`: the clipped ANN with activations also rounded to K levels — what the
  single-spike temporal code computes exactly;
- `limit_difference`: the relative gap between the two, checked at every conversion.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from bridges import ops
from bridges.modules import OutputSoftmax

from ..neurons import has_limit
from ..statistics import offset_key

# How far an SNN's T → ∞ limit may differ from the λ-clipped ANN (relative): float32 rounding only.
LIMIT_TOLERANCE = 1e-4


def replace_module(gm: nn.Module, target: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``target`` of ``gm``."""
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


class _Clamp(nn.Module):
    def __init__(self, high: torch.Tensor, offset: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("high", high)
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.offset is not None:
            x = x + self.offset
        return torch.minimum(torch.relu(x), self.high)


class _ClampedInput(nn.Module):
    def __init__(self, activation: nn.Module, input_range: torch.Tensor):
        super().__init__()
        self.activation = activation
        self.low, self.high = (float(v) for v in input_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x.clamp(self.low, self.high))


class _Quantize(nn.Module):
    def __init__(self, high: torch.Tensor, levels: int):
        super().__init__()
        self.register_buffer("high", high)
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(x / self.high, 0.0, 1.0)
        return torch.round(y * self.levels) / self.levels * self.high


def clipped_ann(ann: fx.GraphModule, scales: dict[str, torch.Tensor]) -> fx.GraphModule:
    """The ANN the SNN converges to: activations clipped at λ (after a tuned bias, where the scales hold
    one: `convert2snn.statistics.offset_key`), final softmax removed."""
    gm = copy.deepcopy(ann)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if node.name in scales and isinstance(mod, ops.SCALAR_ACTIVATIONS):
                replace_module(gm, node.target, _ClampedInput(mod, scales[node.name]))
            elif node.name in scales:
                replace_module(gm, node.target, _Clamp(scales[node.name], scales.get(offset_key(node.name))))
            elif isinstance(mod, OutputSoftmax):
                replace_module(gm, node.target, nn.Identity())
    gm.recompile()
    return gm


def quantized_ann(ann: fx.GraphModule, scales: dict[str, torch.Tensor], period: int) -> fx.GraphModule:
    """The ANN that the single-spike SNN computes exactly: each activation clipped at λ and rounded
    to ``period`` levels (λ·round(K·a/λ)/K), final softmax removed."""
    gm = clipped_ann(ann, scales)
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.name in scales and isinstance(gm.get_submodule(node.target), _Clamp):
            replace_module(gm, node.target, _Quantize(scales[node.name], period))
    gm.recompile()
    return gm


def limit_network(snn: fx.GraphModule) -> fx.GraphModule:
    """A copy of the SNN with every stateful module the graph calls replaced by its T → ∞ function."""
    gm = copy.deepcopy(snn)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if has_limit(module):
                replace_module(gm, node.target, module.limit_module())
    gm.recompile()
    return gm


@torch.no_grad()
def limit_difference(
    limit: fx.GraphModule, ann: fx.GraphModule, scales: dict[str, torch.Tensor], x: torch.Tensor
) -> float:
    """Relative max difference between an SNN's limit network (from `limit_network`) and the
    λ-clipped ANN on ``x``: the exactness check every conversion runs."""
    ref = clipped_ann(ann, scales)(x)
    out = limit(x.unsqueeze(0))[0]
    return float((out - ref).abs().max() / max(float(ref.abs().max()), 1e-6))
