"""Bias correction (Li et al., ICML 2021, "light" calibration): remove each channel's mean output error.

At few steps a layer's output is biased (quantisation, and the unevenness of its input spikes);
downstream layers add their own bias to it. In the network's order, each layer's mean error per
channel against the ANN is measured on its actual SNN input and cancelled by a constant current
(one correction, then a second on the corrected output). Folded into the bias of the Conv/Linear
before the neuron, it costs nothing at run time. A channel keeps a correction only where it
lowers the absolute mean error (`MeanErrorCorrection`).
"""

from __future__ import annotations

import torch

from .base import LayerProblem, LayerTuning, MeanErrorCorrection, register_recipe


@register_recipe
class BiasRecipe(MeanErrorCorrection):
    """A constant current per channel that cancels the mean output error."""

    name = "bias"
    order = 1
    summary = "per-channel bias cancelling the mean output error, layer by layer (Li et al. 2021)"
    parameter = "offset"

    def corrected(self, problem: LayerProblem, tuning: LayerTuning, error: torch.Tensor) -> torch.Tensor:
        """A current of δ per step (threshold units) moves the rate by ≈ δ, the output by δ·multiplier."""
        return tuning.offset - error / tuning.multiplier
