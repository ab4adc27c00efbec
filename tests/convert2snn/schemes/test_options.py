"""SpKeras-compatible options, LIF, Poisson input: each changes what it should and nothing else."""

import importlib

import numpy as np
import pytest
import torch

import convert2snn
from convert2snn import ApproximationError, InvalidInputError
from convert2snn.neurons import IFNeuron

from ..nets import RandomNet


@pytest.fixture(scope="module")
def setup():
    net = RandomNet(2, channels=1)
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(200, 1, 8, 8, generator=gen)
    return net, x, net(x).argmax(1).numpy()


def _convert(setup, **kw):
    net, x, _ = setup
    return convert2snn.convert(net, calibration_data=x, progress=False, **kw)


def test_amp_factor_scales_thresholds_not_spikes(setup):
    _, x, _ = setup
    base, amp = _convert(setup), _convert(setup, amp_factor=100.0)
    assert all(m.v_threshold == 100.0 for m in amp.network.modules() if isinstance(m, IFNeuron))
    np.testing.assert_allclose(base.predict(x, 24), amp.predict(x, 24), rtol=1e-4, atol=1e-4)
    assert base.spike_counts(x, 24) == amp.spike_counts(x, 24)


def test_thresholding_is_the_initial_potential(setup):
    snn = _convert(setup, thresholding=0.25)
    assert {m.v_init for m in snn.network.modules() if isinstance(m, IFNeuron)} == {0.25}


def test_signed_bit_quantises_with_a_working_threshold(setup):
    _, x, y = setup
    base = _convert(setup)
    q32, q8 = _convert(setup, signed_bit=32), _convert(setup, signed_bit=8)
    np.testing.assert_allclose(q32.predict(x, 64), base.predict(x, 64), rtol=1e-5, atol=1e-5)
    weights = [m.weight.detach() for m in q8.network.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for w in weights:  # at most 2·127 + 1 distinct integer levels times one step
        step = float(w.abs().max()) / 127
        assert torch.allclose(w / step, torch.round(w / step), atol=1e-3)
    acc_base = base.evaluate(x, y, timesteps=64).accuracy[0]
    acc_q8 = q8.evaluate(x, y, timesteps=64).accuracy[0]
    assert acc_q8 >= acc_base - 0.02  # SpKeras loses everything here (its issue #12)
    assert any("quantised to 8-bit" in a for a in q8.report.approximations)


def test_strict_refuses_quantisation(setup):
    with pytest.raises(ApproximationError, match="strict=True"):
        _convert(setup, signed_bit=8, strict=True)


def test_bad_spkeras_values(setup):
    with pytest.raises(InvalidInputError, match="signed_bit"):
        _convert(setup, signed_bit=1)
    with pytest.raises(InvalidInputError, match="amp_factor"):
        _convert(setup, amp_factor=0)


def test_lif_converges_slower_but_converges(setup):
    _, x, y = setup
    snn = _convert(setup, neuron="lif", tau=500.0)
    leak = [m.tau for m in snn.network.modules() if isinstance(m, IFNeuron)]
    assert leak and set(leak) == {500.0}
    assert snn.evaluate(x, y, timesteps=128).accuracy[0] >= 0.95


def test_poisson_input_is_seeded_and_converges(setup):
    _, x, y = setup
    a = _convert(setup, encoding="poisson", seed=3)
    b = _convert(setup, encoding="poisson", seed=3)
    c = _convert(setup, encoding="poisson", seed=4)
    pa, pb, pc = a.predict(x, 32), b.predict(x, 32), c.predict(x, 32)
    assert np.array_equal(pa, pb) and not np.array_equal(pa, pc)
    assert a.evaluate(x, y, timesteps=512).accuracy[0] >= 0.9


def test_poisson_needs_unit_range(setup):
    net, x, _ = setup
    with pytest.raises(InvalidInputError, match=r"inputs in \[0, 1\]"):
        convert2snn.convert(net, calibration_data=x * 3, encoding="poisson")


def test_data_free_conversion_warns_once_and_converges(setup):
    convert_module = importlib.import_module("convert2snn.stages")  # the module, not the function

    net, x, y = setup
    convert_module._warned_data_free = False
    with pytest.warns(UserWarning, match="no calibration_data"):
        snn = convert2snn.convert(net, example_input=x[:1], progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert2snn.convert(net, example_input=x[:1], progress=False)  # no second warning
    assert any("data-free" in a for a in snn.report.approximations)
    # worst-case bounds never clip: the scales exceed the data-based maxima
    for per_channel, key in ((False, "lambda"), (True, "min")):
        free = convert2snn.convert(net, example_input=x[:1], progress=False, per_channel=per_channel)
        data_based = _convert(setup, percentile=100, per_channel=per_channel)
        for layer, s in free.report.scales.items():
            # per channel: compare channel by channel through the folded scales
            assert s[key] >= 0 and set(s) == set(data_based.report.scales[layer])
        for node, lam in free.scales.items():
            assert bool((lam >= data_based.scales[node] - 1e-6).all()), node
    assert snn.evaluate(x, y, timesteps=1024).accuracy[0] >= 0.97
    with pytest.raises(ApproximationError):
        convert2snn.convert(net, example_input=x[:1], strict=True)
    with pytest.raises(InvalidInputError, match="input_range"):
        convert2snn.convert(net, example_input=x[:1], input_range=(1, 0))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nir", {"reset_mode": "zero", "v_init": 0.0, "max_spikes": 1, "v_min": None}),
        ("snntorch", {"reset_mode": "zero", "v_init": 0.0, "max_spikes": 1, "v_min": None}),
        ("sinabs", {"reset_mode": "subtract", "v_init": 0.0, "max_spikes": None, "v_min": -1.0}),
    ],
)
def test_nir_target_sets_the_consumers_neurons(setup, target, expected):
    snn = _convert(setup, nir_target=target)
    neurons = [m for m in snn.network.modules() if isinstance(m, IFNeuron)]
    assert neurons
    for n in neurons:
        assert {k: getattr(n, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"nir_target": "nir", "v_init": 0.3},
            "nir_target='nir' needs v_init=0.0 (what the consumer simulates), got v_init=0.3",
        ),
        ({"nir_target": "sinabs", "max_spikes_per_step": 2}, "nir_target='sinabs' needs max_spikes_per_step=0"),
        (
            {"nir_target": "norse", "thresholding": 0.25},
            "nir_target='norse' needs v_init=0.0 (what the consumer simulates), got thresholding=0.25; leave "
            "thresholding unset",
        ),
        (
            {"reset": "zero", "max_spikes_per_step": 3},
            "reset='zero' fires one spike a step; max_spikes_per_step=3 needs",
        ),
        ({"v_min": 0.5}, "v_min (a floor, as a fraction of the threshold) must be ≤ 0, got 0.5"),
        ({"nir_target": "norse", "neuron": "lif"}, "nir_target='norse' with neuron='lif': its NIR importer does not"),
        (
            {"nir_target": "nir", "timesteps": 4, "recipes": "potential"},
            "recipes='potential' tunes per-channel initial",
        ),
        ({"nir_target": "lava"}, "nir_target must be one of None, 'nir', 'norse', 'snntorch', 'sinabs', got 'lava'"),
    ],
)
def test_bad_neuron_options_are_refused_before_any_work(options, message):
    with pytest.raises(InvalidInputError) as err:
        convert2snn.convert("/nonexistent.onnx", "rate", np.zeros((4, 2, 8, 8), np.float32), **options)
    assert message in str(err.value)


def test_auto_tuning_for_a_nir_target_never_picks_per_channel_potentials(setup):
    tuned = _convert(setup, nir_target="nir", timesteps=4)
    assert not any(key.endswith(":v_init") for key in tuned.scales)
    assert "potential" not in tuned.report.tuning["recipes"]
    assert tuned.report.tuning["agreement"] and not any("potential" in r for r in tuned.report.tuning["agreement"])
