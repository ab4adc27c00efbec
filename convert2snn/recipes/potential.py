"""Initial-potential correction (Li et al., ICML 2021): each channel's mean error cancelled by where
its membranes start.

Starting a membrane Δv (in threshold units) higher adds about Δv spikes over T steps, so a mean
output error e (in units of λ' = λ·multiplier) is cancelled by Δv = −e·T/multiplier. Unlike a bias,
the correction acts at the start, where the first spikes of a few-step simulation are decided.
The start is kept within [−1, 1] thresholds; a channel keeps a correction only where it lowers the
absolute mean error (`MeanErrorCorrection`).
"""

from __future__ import annotations

import torch

from .base import LayerProblem, LayerTuning, MeanErrorCorrection, register_recipe


@register_recipe
class PotentialRecipe(MeanErrorCorrection):
    """An initial membrane potential per channel that cancels the mean output error."""

    name = "potential"
    order = 2
    summary = "per-channel initial membrane potential cancelling the mean output error (Li et al. 2021)"
    parameter = "v_init"

    def corrected(self, problem: LayerProblem, tuning: LayerTuning, error: torch.Tensor) -> torch.Tensor:
        """Δv thresholds more at the start add ≈ Δv spikes over T steps: Δv = −error·T / multiplier."""
        return (tuning.v_init - error * problem.timesteps / tuning.multiplier).clamp(-1.0, 1.0)
