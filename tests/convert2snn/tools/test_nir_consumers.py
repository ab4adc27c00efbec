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
    extra = compare(ConsumerRun("x", ours.unsqueeze(0), {**spikes, "c": spikes["a"]}), ours, spikes)
    assert extra.spikes_equal == {"a": True, "b": True, "c": False} and not extra.exact  # a layer we do not have


def test_exact_needs_equal_spikes_and_the_same_readout():
    ours = torch.tensor([[1.0, 3.0]])
    spikes = {"a": torch.ones(4, 1, 2)}
    assert compare(ConsumerRun("x", ours.expand(4, 1, 2), spikes), ours, spikes).exact
    rounding = compare(ConsumerRun("x", (ours * (1 + 1e-7)).expand(4, 1, 2), spikes), ours, spikes)
    assert rounding.exact  # float rounding of the last sum
    wrong = compare(ConsumerRun("x", torch.tensor([[[3.0, 1.0]]]).expand(4, 1, 2), spikes), ours, spikes)
    assert wrong.spikes_equal == {"a": True} and not wrong.exact  # e.g. an output edge dropped
    assert not compare(ConsumerRun("x", ours.expand(4, 1, 2), {}), ours, {}).exact  # nothing compared


def test_nir_versions_compare_by_release(monkeypatch):
    monkeypatch.setattr(nir_consumers, "available", lambda consumer: True)
    monkeypatch.setattr(nir_consumers.require_nir(), "__version__", "1.0.5rc1")  # a pre-release of 1.0.5
    assert "norse's NIR importer fails with nir 1.0.5rc1" in nir_consumers.unusable("norse")
    monkeypatch.setattr(nir_consumers.require_nir(), "__version__", "1.0.4.post1")
    assert nir_consumers.unusable("sinabs") is None


def test_consumer_output_is_quiet_and_keeps_the_users_logging_level(capsys):
    import logging

    logging.disable(logging.CRITICAL)
    try:
        with nir_consumers._quiet():  # noqa: SLF001
            assert logging.root.manager.disable == logging.CRITICAL
            print("importer chatter")
        assert logging.root.manager.disable == logging.CRITICAL
    finally:
        logging.disable(logging.NOTSET)
    with nir_consumers._quiet():  # noqa: SLF001
        assert logging.root.manager.disable == logging.WARNING
    assert logging.root.manager.disable == logging.NOTSET
    assert "importer chatter" not in capsys.readouterr().out  # printed inside: kept off the console


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
