"""snnTorch 1.0 runs our NIR exports (`snntorch.import_nir.import_from_nir`, no patches): spike for spike with
``nir_target='snntorch'`` and with its own options set to our default neurons; closely otherwise."""

import pytest
import torch

import convert2snn
from convert2snn.tools import nir_consumers
from tests.convert2snn.tools.nir_nets import run_in

pytest.importorskip("nir", reason="nir is not installed: pip install 'convert2snn[interop]'")
if nir_consumers.unusable("snntorch"):
    pytest.skip(nir_consumers.unusable("snntorch"), allow_module_level=True)


def _convert(net, x, **options):
    return convert2snn.convert(net, calibration_data=x, progress=False, **options)


def test_exact_conversion_runs_spike_for_spike(cnn, calibration, tmp_path):
    snn = _convert(cnn, calibration, nir_target="snntorch")
    agreement, theirs, ours, _ = run_in("snntorch", snn, tmp_path / "cnn.nir")
    assert agreement.exact, agreement.spike_mismatch  # every layer, every step
    assert agreement.argmax_agreement == 1.0
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-5)


def test_leaky_conversion_runs_spike_for_spike(cnn, calibration, tmp_path):
    snn = _convert(cnn, calibration, nir_target="snntorch", neuron="lif", tau=20.0)
    agreement, theirs, ours, _ = run_in("snntorch", snn, tmp_path / "lif.nir")
    assert agreement.exact, agreement.spike_mismatch
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-5)


def test_default_conversion_loads_and_agrees_closely(cnn, calibration, tmp_path):
    snn = _convert(cnn, calibration)
    agreement, _, _, _ = run_in("snntorch", snn, tmp_path / "default.nir", steps=32)
    assert not agreement.exact  # hard reset from 0 instead of reset by subtraction from θ/2
    assert agreement.argmax_agreement >= 0.85 and agreement.relative_error < 0.75


def test_own_neurons_run_the_default_conversion_exactly(cnn, calibration, tmp_path):
    """snnTorch's reset_mechanism='subtract' (reset decided by the previous membrane) and mem started at θ/2: the
    same spikes here; in general up to float rounding (it sums input and reset in another order), which
    `compare` reports (MNIST / CIFAR-10 in benchmarks/RESULTS.md)."""
    snn = _convert(cnn, calibration)
    agreement, theirs, ours, _ = run_in("snntorch", snn, tmp_path / "own.nir", own_neurons=True)
    assert agreement.exact, agreement.spike_mismatch
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-5)


def test_own_neurons_refuse_what_snntorch_cannot_run(cnn, calibration, tmp_path):
    snn = _convert(cnn, calibration, nir_target="sinabs")
    with pytest.raises(convert2snn.InvalidInputError, match="snnTorch's Leaky fires one spike a step"):
        run_in("snntorch", snn, tmp_path / "multi.nir", own_neurons=True)
