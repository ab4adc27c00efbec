"""Initial-potential correction (Li et al., ICML 2021): each channel's mean error cancelled by where
its membranes start.

Starting a membrane Δv (in threshold units) higher adds about Δv spikes over T steps, so a mean
output error e (in units of λ' = λ·multiplier) is cancelled by Δv = −e·T/multiplier. Unlike a bias,
the correction acts at the start, where the first spikes of a few-step simulation are decided.
The start is kept within [−1, 1] thresholds; a channel keeps a correction only where it lowers the
absolute mean error.
"""

from __future__ import annotations

import torch

from .base import LayerProblem, LayerTuning, Recipe, register_recipe

ROUNDS = 2


@register_recipe
class PotentialRecipe(Recipe):
    """An initial membrane potential per channel that cancels the mean output error."""

    name = "potential"
    order = 2
    summary = "per-channel initial membrane potential cancelling the mean output error (Li et al. 2021)"

    def tune(self, problem: LayerProblem, tuning: LayerTuning) -> LayerTuning:
        """Initial potentials that lower each channel's absolute mean error (``ROUNDS`` steps)."""
        error = problem.mean_error(tuning)
        for _ in range(ROUNDS):
            start = (tuning.v_init - error * problem.timesteps / tuning.multiplier).clamp(-1.0, 1.0)
            candidate = tuning.but(v_init=start)
            new_error = problem.mean_error(candidate)
            better = new_error.abs() < error.abs()
            tuning = tuning.but(v_init=torch.where(better, candidate.v_init, tuning.v_init))
            error = torch.where(better, new_error, error)
        return tuning
