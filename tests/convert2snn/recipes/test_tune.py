"""Tuning a rate conversion for a latency: the pass, the rebuilt network, the stage and its options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convert2snn
from convert2snn.errors import InvalidInputError
from convert2snn.recipes import tune_layers
from convert2snn.statistics import offset_key, potential_key
from tests.convert2snn.nets import RandomNet


def data(seed: int, n: int = 96) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 2, 8, 8), generator=g).numpy()


def converted(net_seed: int, **options) -> convert2snn.SpikingModel:
    return convert2snn.convert(RandomNet(net_seed), "rate", data(net_seed), progress=False, **options)


@pytest.mark.parametrize("seed", range(8))  # residual, concat, plain and pooled sums; max and average pooling
def test_the_rebuilt_network_computes_what_the_pass_tuned(seed):
    snn = converted(seed)
    x = torch.tensor(data(seed + 100, 64))
    result = tune_layers(snn, x, 4, ("threshold", "bias", "potential"), samples=64, progress=False)
    assert any(key.endswith(":offset") for key in result.scales)
    tuned = convert2snn.stages.build(
        snn.ann, convert2snn.stages.Calibration(result.scales, snn.calibration_report), snn.scheme
    )
    out = tuned.predict(x.numpy(), timesteps=4)
    np.testing.assert_allclose(out, result.outputs.numpy(), rtol=1e-4, atol=1e-4)
    # the layer errors the pass reports fall or stay (each recipe never raises its own objective)
    assert all(after <= before * 1.0001 + 1e-9 for before, after in result.errors.values() if np.isfinite(before))


def test_corrections_are_folded_into_the_layer_before_the_neuron():
    snn = converted(3)  # plain (RandomNet kind 2): every neuron after a Conv/Linear
    result = tune_layers(snn, torch.tensor(data(5, 64)), 2, ("bias",), samples=64, progress=False)
    tuned = convert2snn.stages.build(
        snn.ann, convert2snn.stages.Calibration(result.scales, snn.calibration_report), snn.scheme
    )
    assert len(list(tuned.network.graph.nodes)) == len(list(snn.network.graph.nodes))
    assert not any(name.endswith("_bias") for name, _ in tuned.network.named_modules())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_target_latency_is_never_worse_than_untuned_on_the_calibration_samples(seed):
    x = data(seed, 128)
    plain = converted(seed)
    tuned = convert2snn.convert(RandomNet(seed), "rate", x, timesteps=2, progress=False)
    ann = plain.ann(torch.tensor(x)).argmax(1).numpy()
    agree = lambda model: float((model.predict(x, timesteps=2).argmax(1) == ann).mean())  # noqa: E731
    assert agree(tuned) >= agree(plain)
    t = tuned.report.tuning
    assert t["timesteps"] == 2 and t["samples"] == 128
    assert set(t["agreement"]) == {"none", "bias", "threshold+bias", "bias+potential", "threshold+bias+potential"}
    assert t["agreement"]["+".join(t["recipes"]) or "none"] == pytest.approx(agree(tuned), abs=1e-6)
    assert set(t["seconds"]) == {"simulation", "threshold", "bias", "potential"}
    assert all(seconds >= 0 for seconds in t["seconds"].values())
    assert "tuned for T = 2" in str(tuned.report)


def test_auto_compares_the_candidates_on_held_out_calibration_samples():
    x = data(7, 400)
    plain = converted(7)
    tuned = convert2snn.tune(plain, x, timesteps=2, samples=64)
    t = tuned.report.tuning
    assert t["samples"] == 64
    held_out = x[64:400]  # 336 samples the tuning did not use (≥ 256, ≤ 16384 / T)
    ann = plain.ann(torch.tensor(held_out)).argmax(1).numpy()
    untuned = float((plain.predict(held_out, timesteps=2).argmax(1) == ann).mean())
    assert t["agreement"]["none"] == pytest.approx(untuned, abs=1e-6)
    chosen = float((tuned.predict(held_out, timesteps=2).argmax(1) == ann).mean())
    assert t["agreement"]["+".join(t["recipes"]) or "none"] == pytest.approx(chosen, abs=1e-6)
    # here a recipe is clearly better (0.49 → 0.997 measured): auto must pick it, not stay untuned
    assert t["recipes"] == ["threshold", "bias"]
    assert chosen > untuned + 0.2


def test_an_explicit_recipe_is_run_and_reported():
    tuned = converted(3, timesteps=4, recipes="threshold+bias")
    assert tuned.report.tuning["recipes"] == ["threshold", "bias"]
    assert tuned.report.tuning["chosen_by"] == "recipes option"
    assert tuned.report.tuning["agreement"] == {}
    assert any(key.endswith(":offset") for key in tuned.scales)
    assert tuned.report.tuning["error_after"] <= tuned.report.tuning["error_before"]


def test_tuning_is_deterministic_and_leaves_the_untuned_model_alone():
    snn = converted(4)
    before = {k: v.clone() for k, v in snn.network.state_dict().items()}
    a = convert2snn.tune(snn, data(4), timesteps=2, recipes="threshold+bias+potential")
    b = convert2snn.tune(snn, data(4), timesteps=2, recipes="threshold+bias+potential")
    assert a.scales.keys() == b.scales.keys()
    for key in a.scales:
        assert torch.equal(a.scales[key], b.scales[key]), key
    assert all(torch.equal(v, snn.network.state_dict()[k]) for k, v in before.items())
    assert snn.report.tuning is None


def test_poisson_input_is_tuned_with_the_seed():
    a = converted(5, encoding="poisson", timesteps=4, recipes="bias", seed=3)
    b = converted(5, encoding="poisson", timesteps=4, recipes="bias", seed=3)
    assert all(torch.equal(a.scales[k], b.scales[k]) for k in a.scales)


def test_a_tuned_model_saves_and_loads_with_its_corrections(tmp_path):
    tuned = converted(6, timesteps=2, recipes="threshold+bias+potential")
    assert any(key.endswith(":v_init") for key in tuned.scales)
    path = tmp_path / "tuned.pt"
    tuned.save(path)
    loaded = convert2snn.load(path)
    x = data(60, 32)
    np.testing.assert_array_equal(loaded.predict(x, timesteps=2), tuned.predict(x, timesteps=2))
    assert loaded.report.tuning == tuned.report.tuning
    assert str(loaded.report) == str(tuned.report)
    # tuning a loaded model again starts from the measured λ, not from the tuned one
    again = convert2snn.tune(loaded, data(6), timesteps=2, recipes="threshold+bias+potential")
    for key in tuned.scales:
        torch.testing.assert_close(again.scales[key], tuned.scales[key])


def test_a_tuned_limit_is_the_clipped_ann_with_the_corrected_biases():
    from convert2snn.graph.limits import clipped_ann, limit_difference, limit_network

    tuned = converted(0, timesteps=2, recipes="threshold+bias")
    x = torch.tensor(data(9, 4))
    assert limit_difference(limit_network(tuned.network), tuned.ann, tuned.scales, x) < 1e-4
    offsets = {k: v for k, v in tuned.scales.items() if ":" not in k}
    with torch.no_grad():
        without = clipped_ann(tuned.ann, offsets)(x)
        with_offsets = clipped_ann(tuned.ann, tuned.scales)(x)
    assert float((without - with_offsets).abs().max()) > 1e-4  # the offsets are part of the limit


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recipes": "bias"}, "recipes='bias' tunes the conversion for a latency: pass timesteps=T as well"),
        ({"timesteps": 0}, "timesteps (the target latency) must be a positive integer, got 0"),
        ({"timesteps": 4, "recipes": "treshold"}, "Did you mean 'threshold'?"),
        ({"timesteps": 4, "tuning_samples": 0}, "tuning_samples must be a positive integer, got 0"),
        ({"max_spikes_per_step": -1}, "max_spikes_per_step must be a positive integer (1: binary spikes) or 0"),
    ],
)
def test_bad_tuning_options_are_refused_before_any_work(options, message):
    with pytest.raises(InvalidInputError) as err:
        convert2snn.convert("/nonexistent.onnx", "rate", data(0), **options)
    assert message in str(err.value)


def test_a_target_latency_needs_calibration_data():
    with pytest.raises(InvalidInputError, match="timesteps=4 tunes the conversion on calibration data"):
        convert2snn.convert(RandomNet(0), "rate", example_input=torch.zeros(1, 2, 8, 8), timesteps=4)


def test_only_rate_models_are_tuned():
    population = convert2snn.convert(RandomNet(2), "population", data(2), progress=False)
    with pytest.raises(InvalidInputError, match="tuning for a latency is defined for conversion_type='rate'"):
        convert2snn.tune(population, data(2), timesteps=4)
    with pytest.raises(InvalidInputError, match="unknown option 'timesteps' for conversion_type='population'"):
        convert2snn.convert(RandomNet(2), "population", data(2), timesteps=4)


def test_untuned_keys_name_the_corrections():
    assert offset_key("relu") == "relu:offset" and potential_key("relu") == "relu:v_init"


def test_spkeras_thresholding_refuses_to_overwrite_tuned_starts():
    from convert2snn.tools.spkeras import set_initial_potential

    tuned = converted(6, timesteps=2, recipes="potential")
    assert any(key.endswith(":v_init") for key in tuned.scales)
    with pytest.raises(InvalidInputError, match="per-channel initial potentials tuned for timesteps=2"):
        set_initial_potential(tuned, 0.5)
