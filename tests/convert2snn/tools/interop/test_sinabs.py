"""Sinabs 3.1 runs our NIR exports (`sinabs.from_nir`, no patches): spike for spike with
``nir_target='sinabs'`` (its IAF: reset by subtraction, floor(v/θ) spikes, v ≥ −θ), residual CNNs included,
and with its own options set to our default neurons."""

import pytest
import torch

import convert2snn
from convert2snn.tools import nir_consumers
from tests.convert2snn.tools.nir_nets import run_in

pytest.importorskip("nir", reason="nir is not installed: pip install 'convert2snn[interop]'")
if nir_consumers.unusable("sinabs"):
    pytest.skip(nir_consumers.unusable("sinabs"), allow_module_level=True)


def _convert(net, x, **options):
    return convert2snn.convert(net, calibration_data=x, progress=False, **options)


def test_exact_conversion_runs_spike_for_spike(cnn, calibration, tmp_path):
    snn = _convert(cnn, calibration, nir_target="sinabs")
    agreement, theirs, ours, _ = run_in("sinabs", snn, tmp_path / "cnn.nir")
    assert agreement.exact, agreement.spike_mismatch
    assert agreement.argmax_agreement == 1.0
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-5)


def test_residual_cnn_runs(residual, calibration, tmp_path):
    snn = _convert(residual, calibration, nir_target="sinabs")
    agreement, theirs, ours, _ = run_in("sinabs", snn, tmp_path / "residual.nir")
    assert len(agreement.spikes_equal) == 3
    assert max(agreement.spike_mismatch.values()) < 1e-3  # the skip's rescaling moved: float rounding only
    assert agreement.argmax_agreement == 1.0
    assert torch.allclose(theirs, ours, rtol=1e-3, atol=1e-3)


def test_default_conversion_loads_and_agrees_closely(cnn, calibration, tmp_path):
    snn = _convert(cnn, calibration)
    agreement, _, _, _ = run_in("sinabs", snn, tmp_path / "default.nir", steps=32)
    assert not agreement.exact
    assert agreement.argmax_agreement >= 0.9 and agreement.relative_error < 0.3


def test_own_neurons_run_the_default_conversion_exactly(cnn, calibration, tmp_path):
    """Sinabs's spike_fn=SingleSpike, min_v_mem=None and v_mem started at θ/2: our default neurons."""
    snn = _convert(cnn, calibration)
    agreement, theirs, ours, _ = run_in("sinabs", snn, tmp_path / "own.nir", own_neurons=True)
    assert agreement.exact, agreement.spike_mismatch
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-5)
