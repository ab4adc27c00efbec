"""Post-training calibration recipes: a rate conversion tuned for a target latency T.

``convert(model, calibration_data=x, timesteps=8)`` (or `convert2snn.stages.tune`) builds the SNN
as usual, then runs the network layer by layer on calibration samples for T steps and tunes each
neuron layer on its actual input with the chosen recipes (`RateOptions.recipes`), in this
fixed order per layer:

- ``threshold`` (`threshold.ThresholdRecipe`): λ per channel minimising the T-step output error;
- ``bias`` (`bias.BiasRecipe`): a per-channel bias cancelling the mean output error (Li et al. 2021);
- ``potential`` (`potential.PotentialRecipe`): a per-channel initial membrane potential doing the same.

Calibration data only: no labels, no training loop. A recipe is one small `Recipe` subclass
registered with `register_recipe`; `layerwise.tune_layers` runs them.
"""

from __future__ import annotations

from . import bias, potential, threshold  # noqa: F401  (each registers its recipe)
from .base import RECIPES, LayerProblem, LayerTuning, Recipe, register_recipe
from .layerwise import TuningResult, tune_layers

# What recipes="auto" tries, simplest first (a tie keeps the simpler): untuned, then the combinations
# that led at T = 1…8 on the CIFAR-10 ResNet-20 or the MNIST LeNet (`threshold` alone never did).
AUTO_CANDIDATES: tuple[tuple[str, ...], ...] = (
    (),
    ("bias",),
    ("bias", "potential"),
    ("threshold", "bias"),
    ("threshold", "bias", "potential"),
)

__all__ = [
    "AUTO_CANDIDATES",
    "RECIPES",
    "LayerProblem",
    "LayerTuning",
    "Recipe",
    "TuningResult",
    "register_recipe",
    "tune_layers",
]
