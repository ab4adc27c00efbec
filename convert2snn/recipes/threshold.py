"""Threshold optimisation for a target T: each channel's λ chosen to minimise its output error.

The default λ (a high percentile of the activation) suits long simulations; at few steps the
output has only T + 1 levels, and a smaller λ trades a little clipping for finer levels. For each
candidate λ' = λ·c (c from 0.2 to 1.15, 1 included) the layer is simulated for T steps on the
SNN's own input current, and each channel keeps the c with the smallest mean squared error
against the ANN's (unclipped) activation. SpikingJelly's local threshold balancing tunes
thresholds too, by gradient descent on the error of the T-step output against the clipped ANN;
this search minimises the error against the ANN itself, per channel, on the SNN's actual inputs.
"""

from __future__ import annotations

import torch

from .base import LayerProblem, LayerTuning, Recipe, register_recipe

# λ' / λ tried per channel (1 included so the error can only fall): few steps want a smaller λ.
CANDIDATES = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15)


@register_recipe
class ThresholdRecipe(Recipe):
    """λ per channel from a grid search on the T-step output error."""

    name = "threshold"
    order = 0
    summary = "λ per channel minimising the T-step output's squared error against the ANN (grid search)"

    def tune(self, problem: LayerProblem, tuning: LayerTuning) -> LayerTuning:
        """The multiplier with the smallest error per channel, among ``CANDIDATES`` times the current one."""
        best = tuning.multiplier
        best_error = problem.error(tuning)
        for factor in CANDIDATES:
            if factor == 1.0:
                continue
            candidate = torch.minimum(tuning.multiplier * factor, problem.cap)
            error = problem.error(tuning.but(multiplier=candidate))
            better = error < best_error
            best = torch.where(better, candidate, best)
            best_error = torch.where(better, error, best_error)
        return tuning.but(multiplier=best)
