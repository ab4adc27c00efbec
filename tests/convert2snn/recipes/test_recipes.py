"""Each recipe lowers the error it optimises on one layer (a property over random layers), never raises it."""

from __future__ import annotations

import pytest
import torch

from convert2snn.neurons import IFNeuron
from convert2snn.recipes import RECIPES, LayerProblem, LayerTuning
from convert2snn.recipes.bias import BiasRecipe
from convert2snn.recipes.potential import PotentialRecipe
from convert2snn.recipes.threshold import ThresholdRecipe


def random_problem(seed: int, timesteps: int, per_channel: bool = True, burst: int = 1) -> LayerProblem:
    """A conv layer's neurons on random inputs: a constant-ish current with noise (as spikes upstream give),
    the target the current's mean (what the ANN computes), in threshold units: λ = 1 (θ = 1) at the
    activation's 99.9th percentile, as calibration sets it."""
    g = torch.Generator().manual_seed(seed)
    channels = 3
    mean = torch.relu(torch.randn(64, channels, 4, 4, generator=g) * 0.6 + 0.2)
    mean = mean / torch.quantile(mean.flatten(), 0.999) * burst
    current = mean.unsqueeze(0) + 0.1 * torch.randn((timesteps, 64, channels, 4, 4), generator=g)
    cap_shape = (channels, 1, 1) if per_channel else ()
    return LayerProblem(
        f"layer{seed}",
        current,
        mean + 0.02 * torch.randn(mean.shape, generator=g),
        torch.full(cap_shape, float("inf")),
        lambda v_init: IFNeuron(1.0, v_init=v_init, max_spikes=burst),
    )


def start(problem: LayerProblem) -> LayerTuning:
    shape = problem.cap.shape
    return LayerTuning(torch.ones(shape), torch.zeros(shape), torch.full(shape, 0.5))


def test_the_recipes_are_registered_in_their_order():
    assert list(RECIPES) == ["threshold", "bias", "potential"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("timesteps", [1, 2, 4, 8])
def test_threshold_search_never_raises_any_channels_error_and_lowers_it_at_few_steps(seed, timesteps):
    problem = random_problem(seed, timesteps)
    before = problem.error(start(problem))
    tuned = ThresholdRecipe().tune(problem, start(problem))
    after = problem.error(tuned)
    assert after.shape == before.shape == (3, 1, 1)
    assert bool((after <= before + 1e-7).all())
    if timesteps <= 2:  # two levels cannot fit the default λ: some channel always gains
        assert float(after.sum()) < 0.95 * float(before.sum())


@pytest.mark.parametrize("recipe", [BiasRecipe, PotentialRecipe])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("timesteps", [2, 4, 16])
def test_corrections_lower_the_absolute_mean_error_of_every_channel(recipe, seed, timesteps):
    problem = random_problem(seed, timesteps)
    tuning = ThresholdRecipe().tune(problem, start(problem))
    before = problem.mean_error(tuning).abs()
    after = problem.mean_error(recipe().tune(problem, tuning)).abs()
    assert bool((after <= before + 1e-7).all())
    assert float(after.sum()) < 0.7 * float(before.sum())


def test_a_per_layer_threshold_is_one_value():
    problem = random_problem(0, 2, per_channel=False)
    tuned = ThresholdRecipe().tune(problem, start(problem))
    assert tuned.multiplier.shape == ()
    assert float(problem.error(tuned)) <= float(problem.error(start(problem)))


def test_bursts_are_tuned_in_spikes_per_step():
    problem = random_problem(1, 2, burst=3)
    before = problem.error(start(problem))
    after = problem.error(ThresholdRecipe().tune(problem, start(problem)))
    assert bool((after <= before + 1e-7).all())
    assert float(problem.spikes(start(problem)).max()) > 1  # counts, not 0/1


def test_a_clip_value_caps_the_threshold():
    problem = random_problem(2, 4)
    problem.cap = torch.full((3, 1, 1), 1.1)
    # a target far above the current: an uncapped search would raise λ as far as it can
    problem.target = problem.target * 4
    tuned = ThresholdRecipe().tune(problem, start(problem))
    assert float(tuned.multiplier.max()) <= 1.1 + 1e-6
