"""The consumer runner's own logic: comparison arithmetic, clear errors for consumers that cannot run."""

import pytest
import torch

from convert2snn import InvalidInputError
from convert2snn.tools import nir_consumers
from convert2snn.tools.nir_consumers import ConsumerRun, compare

pytest.importorskip("nir")


def test_compare_counts_agreement_error_and_mismatch():
    ours = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    outputs = torch.stack([torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])])  # mean
    spikes = {"a": torch.zeros(2, 2, 3), "b": torch.ones(2, 2, 3)}
    theirs = {"a": torch.zeros(2, 2, 3), "b": torch.ones(2, 2, 3)}
    theirs["b"][1, 0, 0] = 0.0
    agreement = compare(ConsumerRun("x", outputs, theirs), ours, spikes)
    assert agreement.argmax_agreement == 0.5  # sample 2: class 0 vs ours 1
    mean = outputs.mean(0)
    assert agreement.relative_error == pytest.approx(float((mean - ours).norm() / ours.norm()))
    assert agreement.spikes_equal == {"a": True, "b": False}
    assert agreement.spike_mismatch["b"] == pytest.approx(1 / 12)
    assert not agreement.exact
    missing = compare(ConsumerRun("x", outputs, {"a": theirs["a"]}), ours, spikes)
    assert missing.spikes_equal["b"] is False and missing.spike_mismatch["b"] == 1.0


def test_consumers_that_cannot_run_are_named(monkeypatch):
    assert nir_consumers.unusable("lava") == "unknown NIR consumer 'lava'; known: snntorch, norse, sinabs"
    monkeypatch.setattr(nir_consumers, "available", lambda consumer: False)
    with pytest.raises(InvalidInputError, match="needs the 'sinabs' package: pip install 'convert2snn\\[interop\\]'"):
        nir_consumers.simulate("sinabs", None, torch.zeros(1, 1, 1))
    monkeypatch.setattr(nir_consumers, "available", lambda consumer: True)
    monkeypatch.setattr(nir_consumers.require_nir(), "__version__", "1.0.8")
    assert "norse's NIR importer fails with nir 1.0.8 (it works with nir ≤ 1.0.4)" in nir_consumers.unusable("norse")
    assert nir_consumers.unusable("snntorch") is None


def test_norse_refuses_own_neurons_before_importing(monkeypatch):
    monkeypatch.setattr(nir_consumers, "unusable", lambda consumer: None)
    with pytest.raises(InvalidInputError, match="Norse's IAFCell has no option for reset by subtraction"):
        nir_consumers.simulate("norse", None, torch.zeros(1, 1, 1), own_neurons=True)
