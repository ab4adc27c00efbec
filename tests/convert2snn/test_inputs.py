"""The input-range guard: an SNN's scales hold only for inputs in the range it was calibrated on."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import convert2snn
from convert2snn import InvalidInputError
from convert2snn.inputs import InputRange


def _digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """Digits as 0–255 uint8 images (N, 1, 8, 8), as a user's raw image files would be."""
    d = load_digits()
    return (d.images[:, None] * (255 / 16)).round().astype(np.uint8), d.target


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    ).eval()


def _caught(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if "convert2snn" in str(w.message)]


def test_unscaled_uint8_calibration_is_warned_about_and_recorded():
    x, _ = _digits_uint8()
    snn = None

    def run():
        nonlocal snn
        snn = convert2snn.convert(_net(), "rate", calibration_data=x[:200])

    messages = _caught(run)
    assert len(messages) == 1
    assert "calibration_data is uint8 with values in [0, 255]" in messages[0]
    assert "x / 255" in messages[0]
    assert snn.report.calibration_inputs == {"dtype": "uint8", "low": 0.0, "high": 255.0, "samples": 200}
    assert "calibrated on: 200 samples of uint8 in [0, 255]" in str(snn.report)
    with pytest.raises(InvalidInputError, match=r"calibration_data is uint8 .* \(strict=True\)"):
        convert2snn.convert(_net(), "rate", calibration_data=x[:200], strict=True)


def test_scaled_float_calibration_is_not_warned_about():
    x, _ = _digits_uint8()
    assert _caught(lambda: convert2snn.convert(_net(), "rate", calibration_data=x[:200] / np.float32(255))) == []


def test_evaluating_scaled_data_on_an_snn_calibrated_on_0_255_warns_once_naming_the_numbers(tmp_path):
    """The issue's case: calibrated on 0–255, evaluated on [0, 1] — 14 % SNN accuracy, no warning."""
    x, y = _digits_uint8()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert2snn.convert(_net(), "rate", calibration_data=x[:200])
    scaled = x[200:260] / np.float32(255)
    messages = _caught(lambda: (snn.evaluate(scaled, y[200:260], timesteps=4), snn.predict(scaled, timesteps=4)))
    assert len(messages) == 1, messages
    assert "x lies in [0, 1], but the SNN was calibrated on 200 samples of uint8 in [0, 255]" in messages[0]
    assert "lies within its lowest tenth, 255× below its top" in messages[0] and "--scale" in messages[0]
    # kept with the model: a loaded one warns too, and strict=True makes it an error
    snn.save(tmp_path / "snn.c2s")
    loaded = convert2snn.load(tmp_path / "snn.c2s")
    assert loaded.report.calibration_inputs == snn.report.calibration_inputs
    assert len(_caught(lambda: loaded.predict(scaled, timesteps=4))) == 1
    loaded.options.strict = True
    loaded._range_warned = False
    with pytest.raises(InvalidInputError, match=r"x lies in \[0, 1\].*\(strict=True\)"):
        loaded.predict(scaled, timesteps=4)


def test_evaluating_raw_pixels_on_an_snn_calibrated_on_0_1_warns():
    x, y = _digits_uint8()
    snn = convert2snn.convert(_net(), "rate", calibration_data=x[:200] / np.float32(255))
    messages = _caught(lambda: snn.evaluate(x[200:260], y[200:260], timesteps=4))
    assert len(messages) == 1
    assert "x lies in [0, 255], but the SNN was calibrated on 200 samples of float32 in [0, 1]" in messages[0]
    assert "reaches far beyond it" in messages[0]


def test_inputs_in_the_calibration_range_never_warn():
    """Property: subsets of the calibration distribution, shrunk or shifted within reason, pass."""
    x, _ = _digits_uint8()
    x = x / np.float32(255)
    snn = convert2snn.convert(_net(), "rate", calibration_data=x[:300])
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = rng.choice(np.arange(300, len(x)), size=int(rng.integers(1, 40)), replace=False)
        sample = x[idx] * np.float32(rng.uniform(0.5, 1.5)) + np.float32(rng.uniform(-0.3, 0.3))
        assert _caught(lambda s=sample: snn.predict(s, timesteps=2)) == []


def test_small_batches_and_sub_ranges_inside_the_calibration_range_do_not_warn():
    """One sample, a narrow band in the middle, a batch inside a wide range: no warning (only a batch
    of several samples within the lowest tenth of the range is suspicious)."""
    calibrated = InputRange("float32", 0.0, 1.0, 100)
    g = torch.Generator().manual_seed(0)
    assert calibrated.mismatch(torch.rand(1, 64, generator=g) * 0.05, "x") is None  # one dark sample
    assert calibrated.mismatch(torch.rand(32, 64, generator=g) * 0.05 + 0.5, "x") is None
    assert InputRange("float32", -10.0, 10.0, 100).mismatch(torch.rand(32, 64, generator=g), "x") is None
    assert InputRange(None, 0.0, 255.0, 0).mismatch(torch.rand(32, 64, generator=g), "x") is None  # a bound
    assert "lowest tenth" in InputRange("uint8", 0.0, 255.0, 100).mismatch(torch.rand(32, 64, generator=g), "x")
    assert "far beyond" in InputRange(None, 0.0, 1.0, 0).mismatch(torch.rand(1, 4) * 255 + 10, "x")


def test_the_dtype_of_any_array_like_is_read():
    class ForeignTensor:  # a TensorFlow tensor: its dtype is not numpy's
        dtype = object()

        def __array__(self, dtype=None, copy=None):
            return np.arange(6, dtype=np.uint8).reshape(2, 3)

    assert InputRange.of(ForeignTensor(), torch.arange(6.0).reshape(2, 3)).dtype == "uint8"
    assert InputRange.of([[1.0, 2.0]], torch.tensor([[1.0, 2.0]])).dtype == "float64"


def test_the_ann_takes_any_range_without_a_warning():
    x, _ = _digits_uint8()
    snn = convert2snn.convert(_net(), "rate", calibration_data=x[:200] / np.float32(255))
    assert _caught(lambda: snn.ann_predict(x[200:260])) == []
    assert len(_caught(lambda: snn.predict(x[200:260], timesteps=2))) == 1  # still warned for the SNN


def test_data_free_conversion_records_its_input_range():
    x, _ = _digits_uint8()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the data-free warning
        snn = convert2snn.convert(_net(), "rate", example_input=torch.zeros(1, 1, 8, 8), input_range=(0.0, 1.0))
    assert snn.report.calibration_inputs == {"dtype": None, "low": 0.0, "high": 1.0, "samples": 0}
    assert "calibrated on: inputs in [0, 1] (the input_range option, no calibration data)" in str(snn.report)
    assert len(_caught(lambda: snn.predict(x[:10], timesteps=2))) == 1


def test_input_range_of_keeps_the_dtype_as_passed():
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    r = InputRange.of(data, torch.as_tensor(data).float())
    assert (r.dtype, r.low, r.high, r.samples) == ("int16", 0.0, 11.0, 3)
    assert InputRange.of(torch.ones(2, 2, dtype=torch.float64), torch.ones(2, 2)).dtype == "float64"
    assert r.unscaled_warning("x") is not None
    assert InputRange("uint8", 0.0, 1.0, 3).unscaled_warning("x") is None  # 0/1 masks are scaled already
