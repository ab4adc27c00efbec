"""The scheme interface: rules declared once and inherited, support decided by the rules, every
refusal made by `Scheme.check` before calibration, options validated where they are declared."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convert2snn
from convert2snn import InvalidInputError, UnsupportedLayerError, schemes, stages
from convert2snn.schemes.base import Scheme

from ..nets import SmallCNN


class ShrinkNet(nn.Module):
    """Threshold: an op no scheme declares anything about."""

    def __init__(self):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(1, 2, 3), nn.Threshold(0.1, 20.0), nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.fixture
def no_calibration(monkeypatch):
    """Calibration must not start: every refusal comes before it."""

    def fail(*args, **kwargs):
        raise AssertionError("calibration ran before the refusal")

    monkeypatch.setattr(stages, "collect_statistics", fail)


@pytest.mark.parametrize(
    "conversion_type, coded",
    [("rate", "rate-coded"), ("population", "population-coded"), ("temporal", "temporally coded")],
)
def test_an_op_without_a_rule_is_refused_by_name_before_calibration(no_calibration, conversion_type, coded):
    with pytest.raises(UnsupportedLayerError) as err:
        convert2snn.convert(ShrinkNet(), conversion_type, torch.rand(4, 1, 8, 8), progress=False)
    assert f"Threshold has no {coded} equivalent" in str(err.value) and err.value.op == "Threshold"
    assert "layer 'act'" in str(err.value)


def test_a_shared_rule_reaches_every_scheme():
    @Scheme.rule(Doubler)
    def double(b, node, args):
        return b.stateless(node, args)

    try:
        for name in schemes.available():
            rule = schemes.scheme_class(name).rule_for_op(Doubler())
            assert rule is not None and rule.build is double, name
    finally:
        del Scheme._rules[Doubler]
    assert all(schemes.scheme_class(n).rule_for_op(Doubler()) is None for n in schemes.available())


def test_a_rule_is_declared_once_per_scheme_and_overridden_by_subclasses():
    with pytest.raises(ValueError, match="declares a rule for ReLU twice"):
        schemes.RateScheme.rule(nn.ReLU)(lambda b, node, args: args[0])
    # temporal coding overrides the shared max-pool rule; rate coding inherits it
    rate_pool = schemes.RateScheme.rule_for_op(nn.MaxPool2d(2))
    temporal_pool = schemes.TemporalScheme.rule_for_op(nn.MaxPool2d(2))
    assert rate_pool is Scheme.rule_for_op(nn.MaxPool2d(2)) and temporal_pool is not rate_pool
    # the most specific class wins: ReLU6 takes the Hardtanh rule, the output softmax is dropped
    assert schemes.RateScheme.rule_for_op(nn.ReLU6()) is schemes.RateScheme.rule_for_op(nn.Hardtanh(0.0, 6.0))
    assert schemes.RateScheme.rule_for_op(nn.Softmax(dim=1)) is None


def test_options_are_checked_where_they_are_declared():
    with pytest.raises(InvalidInputError, match="per_channel must be True or False, got 'yes'"):
        schemes.create("rate", {"per_channel": "yes"})
    with pytest.raises(InvalidInputError, match="mismatch must be one of 'dither', 'threshold', got 'dithr'. Did you"):
        schemes.create("population", {"mismatch": "dithr"})
    with pytest.raises(InvalidInputError, match="seed must be a non-negative integer"):
        schemes.create("temporal", {"seed": -1})
    with pytest.raises(InvalidInputError, match="unknown option 'period' for conversion_type='rate'"):
        schemes.create("rate", {"period": 8})
    scheme = schemes.create("population", {"n": 4, "batch_size": 8})
    assert isinstance(scheme, schemes.PopulationScheme) and scheme.options.n == 4 and scheme.options.seed == 0


def test_the_stages_are_the_conversion():
    """bridge → calibrate → build gives bit-for-bit what convert gives, and the artefacts in between."""
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    whole = convert2snn.convert(SmallCNN(), "population", x, n=4, progress=False)
    ann = convert2snn.bridge(SmallCNN(), x[:1])
    assert convert2snn.bridge(ann) is ann  # an ANN already bridged is taken as it is
    scheme = schemes.create("population", {"n": 4, "progress": False})
    calibration = convert2snn.calibrate(ann, x, scheme)
    assert set(calibration.scales) == {n.name for n in scheme.calibrated_nodes(ann)} and calibration.samples == 16
    staged = convert2snn.build(ann, calibration, scheme)
    assert str(staged.report) == str(whole.report)
    torch.testing.assert_close(
        torch.from_numpy(staged.predict(x, 8)), torch.from_numpy(whole.predict(x, 8)), rtol=0, atol=0
    )
    # statistics kept for a lower percentile serve a higher one without a second pass over the data
    at_max = schemes.create("population", {"n": 4, "percentile": 100.0, "progress": False})
    reused = convert2snn.calibrate(ann, x, at_max, statistics=calibration.statistics)
    fresh = convert2snn.calibrate(ann, x, at_max)
    assert reused.scales.keys() == fresh.scales.keys()
    assert all(torch.equal(reused.scales[k], fresh.scales[k]) for k in fresh.scales)
    assert any(not torch.equal(fresh.scales[k], calibration.scales[k]) for k in fresh.scales)


def test_each_model_owns_its_options_and_the_stages_refuse_an_unbridged_ann():
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    ann = convert2snn.bridge(SmallCNN(), x[:1])
    scheme = schemes.create("rate", {"progress": False})
    calibration = convert2snn.calibrate(ann, x, scheme)
    a, b = convert2snn.build(ann, calibration, scheme), convert2snn.build(ann, calibration, scheme)
    a.options.batch_size = 3
    assert b.options.batch_size == scheme.options.batch_size == 256
    with pytest.raises(InvalidInputError, match="expected a clean ANN from convert2snn.bridge"):
        convert2snn.calibrate(SmallCNN(), x, scheme)


def test_refusals_declared_by_one_scheme_stay_its_own():
    class Strict(schemes.RateScheme):
        pass

    Strict.refusals[nn.Threshold] = schemes.base.Refusal("never here", "Do something else.")
    try:
        assert Strict.__dict__["refusals"] is not Scheme.refusals
        assert schemes.create("rate").refusal(nn.Threshold(0.1, 20.0))[0] == "Threshold has no rate-coded equivalent"
        strict = Strict(schemes.RateOptions())
        assert strict.refusal(nn.Threshold(0.1, 20.0))[:2] == ("Threshold: never here", "Do something else.")
        assert strict.refusal(nn.GELU())[0].startswith("GELU: not a ReLU-like activation")  # inherited
    finally:
        del Strict.refusals[nn.Threshold]


def test_a_layer_made_of_several_refused_ops_is_named_and_counted_once():
    """Keras's hard-swish is an add, a clip and a multiply of one layer: one layer to the user."""

    class Gates(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x)
            return (h * h) * (h * h)  # three products of two tensors: one refusal, three ops

    ann = convert2snn.bridge(Gates(), torch.zeros(1, 4))
    scheme = schemes.create("rate")
    refused = [layer for layer, _ in scheme.problems(ann, ann.bridge_info.layers)]
    # all of them one layer, as Keras's hard-swish is
    names = {node: "block" if layer in refused else layer for node, layer in ann.bridge_info.layers.items()}
    with pytest.raises(UnsupportedLayerError) as err:
        scheme.check(ann, names)
    message = str(err.value)
    assert len(refused) >= 3
    assert message.startswith("1 layer(s) cannot be converted") and message.count("'block'") == 1
