"""One neuron layer's tuning problem, the parameters a recipe tunes, and the recipe interface.

A recipe sees one layer at a time (`LayerProblem`): the input current its neurons receive in the
SNN for the calibration samples (upstream layers already tuned, so their errors are included), the
ANN's activation for the same samples (the target), and a way to simulate the layer for T steps
with any candidate `LayerTuning`. It returns a better tuning for the error it optimises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..neurons import IFNeuron


@dataclass(frozen=True)
class LayerTuning:
    """The tunable parameters of one neuron layer, each a tensor of λ's shape (per channel) or a scalar.

    ``multiplier``: λ' = λ·multiplier (the threshold, in the ANN's units, of the tuned layer);
    ``offset``: a current added at every step, in units of the tuned threshold (a bias correction);
    ``v_init``: the initial membrane potential as a fraction of the threshold.
    """

    multiplier: torch.Tensor
    offset: torch.Tensor
    v_init: torch.Tensor

    def but(self, **changes: torch.Tensor) -> LayerTuning:
        """A copy with ``changes``."""
        return replace(self, **changes)


class LayerProblem:
    """One neuron layer of the SNN on the calibration samples.

    ``current``: [T, N, ...] the layer's input current per step, in units of its untuned threshold;
    ``target``: [N, ...] the ANN's activation in units of the untuned threshold (λ, or λ/Γ for bursts of up
    to Γ spikes): the spikes per step it stands for, not clipped (clipping is part of the error);
    ``cap``: the largest multiplier allowed (λ' may not exceed a ReLU6's clip value), λ-shaped;
    ``make_neuron``: builds the layer's neuron (threshold 1) for an initial potential.
    """

    def __init__(
        self,
        layer: str,
        current: torch.Tensor,
        target: torch.Tensor,
        cap: torch.Tensor,
        make_neuron: Callable[[torch.Tensor], IFNeuron],
    ):
        self.layer = layer
        self.current = current
        self.target = target
        self.cap = cap
        self.timesteps = current.shape[0]
        self._make_neuron = make_neuron
        # per channel when λ is: average over the samples and every axis λ broadcasts over
        shape = tuple(cap.shape)
        rank = target.dim() - 1
        padded = (1,) * (rank - len(shape)) + shape
        self._reduce = [0] + [1 + i for i, size in enumerate(padded) if size == 1]
        self._shape = shape

    def channel_mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` [N, ...] over the samples and every axis λ is shared along: λ's shape."""
        return values.mean(dim=self._reduce, keepdim=True).reshape(self._shape)

    @torch.no_grad()
    def spikes(self, tuning: LayerTuning) -> torch.Tensor:
        """[T, N, ...] the layer's spikes (0/1, or counts for bursts) with ``tuning`` (its threshold scaled by the
        multiplier)."""
        neuron = self._make_neuron(tuning.v_init)
        return neuron(self.current / tuning.multiplier + tuning.offset)

    def output(self, tuning: LayerTuning) -> torch.Tensor:
        """[N, ...] the layer's output averaged over the T steps, in the target's units (rate × multiplier)."""
        return self.spikes(tuning).mean(dim=0) * tuning.multiplier

    def error(self, tuning: LayerTuning, spikes: torch.Tensor | None = None) -> torch.Tensor:
        """Per channel (λ's shape): the mean squared difference between the output and the ANN's activation
        (from ``spikes`` of ``tuning`` when they were simulated already)."""
        output = self.output(tuning) if spikes is None else spikes.mean(dim=0) * tuning.multiplier
        return self.channel_mean((output - self.target) ** 2)

    def mean_error(self, tuning: LayerTuning) -> torch.Tensor:
        """Per channel (λ's shape): the mean difference between the output and the ANN's activation."""
        return self.channel_mean(self.output(tuning) - self.target)


class Recipe:
    """A post-training calibration recipe: tunes one layer at a time, in the network's order."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for the docs and the report
    order: ClassVar[int]  # recipes run per layer by increasing order: λ first, then the corrections at that λ

    def tune(self, problem: LayerProblem, tuning: LayerTuning) -> LayerTuning:
        """A tuning of ``problem``'s layer that lowers the error this recipe optimises (never raises it)."""
        raise NotImplementedError


class MeanErrorCorrection(Recipe):
    """A recipe that cancels each channel's mean output error through one parameter of `LayerTuning`
    (``parameter``): ``ROUNDS`` corrections, each kept only in the channels whose absolute mean error
    it lowers."""

    parameter: ClassVar[str]
    ROUNDS: ClassVar[int] = 2

    def corrected(self, problem: LayerProblem, tuning: LayerTuning, error: torch.Tensor) -> torch.Tensor:
        """The parameter's new value, per channel, for a mean output error ``error`` (λ's shape)."""
        raise NotImplementedError

    def tune(self, problem: LayerProblem, tuning: LayerTuning) -> LayerTuning:
        """Corrections that lower each channel's absolute mean error (never raise it)."""
        error = problem.mean_error(tuning)
        for _ in range(self.ROUNDS):
            candidate = tuning.but(**{self.parameter: self.corrected(problem, tuning, error)})
            new_error = problem.mean_error(candidate)
            better = new_error.abs() < error.abs()
            kept = torch.where(better, getattr(candidate, self.parameter), getattr(tuning, self.parameter))
            tuning = tuning.but(**{self.parameter: kept})
            error = torch.where(better, new_error, error)
        return tuning


RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Register a recipe class under its ``name`` (once); `RECIPES` stays sorted by ``order``."""
    if cls.name in RECIPES:
        raise ValueError(f"calibration recipe {cls.name!r} is registered twice")
    ordered = sorted([*RECIPES.values(), cls], key=lambda recipe: recipe.order)
    RECIPES.clear()
    RECIPES.update((recipe.name, recipe) for recipe in ordered)
    return cls
