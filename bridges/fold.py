"""Folding per-channel affine maps into Conv / ConvTranspose / Linear weights (in place).

Shared by the graph clean-up (BatchNorm and bias folding) and the SNN normalisation
(λ_in / λ_out weight scaling).
"""

from __future__ import annotations

import torch
from torch import nn

from .ops import CONV, CONV_TRANSPOSE


def out_channels(layer: nn.Module) -> int:
    """The number of output channels (``out_features`` for a Linear) of a Conv/ConvTranspose/Linear."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return layer.out_channels


@torch.no_grad()
def fold_output_affine(layer: nn.Module, scale: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    """Make ``layer(x)`` compute ``layer(x) * scale + bias`` (per output channel vectors or None)."""
    if isinstance(layer, CONV_TRANSPOSE) and layer.groups != 1:
        raise ValueError("grouped ConvTranspose output scaling is not supported")
    n = out_channels(layer)
    if scale is not None:
        scale = scale.to(layer.weight).reshape(-1).expand(n)
        if isinstance(layer, CONV_TRANSPOSE):
            layer.weight.mul_(scale.reshape((1, -1) + (1,) * (layer.weight.dim() - 2)))
        else:
            layer.weight.mul_(scale.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
    old = layer.bias.detach() if layer.bias is not None else torch.zeros(n, dtype=layer.weight.dtype)
    new = old * (scale if scale is not None else 1.0) + (
        bias.to(old).reshape(-1).expand(n) if bias is not None else 0.0
    )
    if layer.bias is None:
        if bias is None:
            return
        layer.bias = nn.Parameter(new.clone())
    else:
        layer.bias.copy_(new)


@torch.no_grad()
def fold_input_scale(layer: nn.Module, scale: torch.Tensor) -> None:
    """Make ``layer(x)`` compute ``layer(x * scale)`` for a per-input-channel (or per-feature) ``scale``."""
    w = layer.weight
    if isinstance(layer, nn.Linear):
        layer.weight.mul_(scale.to(w).reshape(-1).expand(layer.in_features).unsqueeze(0))
        return
    groups = layer.groups
    scale = scale.to(w).reshape(-1).expand(layer.in_channels)
    if isinstance(layer, CONV):
        per_group_in = layer.in_channels // groups
        per_group_out = layer.out_channels // groups
        # weight [out, in/groups, k...]: output o reads input channel (o // per_group_out)·per_group_in + j
        groups_of_out = torch.arange(layer.out_channels) // per_group_out
        index = groups_of_out.unsqueeze(1) * per_group_in + torch.arange(per_group_in).unsqueeze(0)
        layer.weight.mul_(scale[index].reshape(index.shape + (1,) * (w.dim() - 2)))
        return
    if isinstance(layer, CONV_TRANSPOSE):
        # weight [in, out/groups, k...]: the input channel is the first axis
        layer.weight.mul_(scale.reshape((-1,) + (1,) * (w.dim() - 1)))
        return
    raise TypeError(f"cannot fold an input scale into {type(layer).__name__}")
