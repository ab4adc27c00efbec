"""The bad-input catalogue: every mistake a user can make gets a specific exception class and a
message naming the offending thing, raised before any slow work (never a KeyError/IndexError
from inside a dependency)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

import convert2snn
from convert2snn import ConversionError, InvalidInputError, SimulationMemoryError, UnsupportedLayerError, simulate

from .convert2snn.nets import SmallCNN

X = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def snn():
    return convert2snn.convert(SmallCNN(), calibration_data=X, progress=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("not a model")
    (d / "zip.keras").write_bytes(b"this is not a zip archive")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    good = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    data = good.SerializeToString()
    (d / "cut.onnx").write_bytes(data[: len(data) // 2])
    odd = helper.make_model(
        helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="hm")], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    onnx.save(odd, str(d / "hardmax.onnx"))
    (d / "junk.c2s").write_bytes(b"\x00junk" * 10)
    return d


class SigmoidNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.squash, self.fc2 = nn.Linear(64, 8), nn.Sigmoid(), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(self.squash(self.fc1(x.flatten(1))))


def _sigmoid_net():
    return SigmoidNet()


CATALOGUE = [
    # (id, call(snn, files), exception class, key words of the message)
    (
        "missing model file",
        lambda s, f: convert2snn.convert(f / "nothere.onnx", calibration_data=X),
        InvalidInputError,
        ["nothere.onnx", "does not exist"],
    ),
    (
        "not a model",
        lambda s, f: convert2snn.convert(f / "notes.txt", calibration_data=X),
        InvalidInputError,
        ["notes.txt", "unknown model format"],
    ),
    (
        "truncated ONNX",
        lambda s, f: convert2snn.convert(f / "cut.onnx", calibration_data=X),
        InvalidInputError,
        ["cut.onnx", "not a readable ONNX model", "truncated"],
    ),
    (
        ".keras that is not a Keras archive",
        lambda s, f: convert2snn.convert(f / "zip.keras", calibration_data=X),
        InvalidInputError,
        ["zip.keras"],
    ),
    ("object that is no model", lambda s, f: convert2snn.convert(42, calibration_data=X), InvalidInputError, ["int"]),
    (
        "unknown conversion type",
        lambda s, f: convert2snn.convert(SmallCNN(), "rat", calibration_data=X),
        InvalidInputError,
        ["'rat'", "Did you mean 'rate'"],
    ),
    (
        "misspelt option",
        lambda s, f: convert2snn.convert(SmallCNN(), calibration_data=X, percentil=99),
        InvalidInputError,
        ["'percentil'", "Did you mean 'percentile'"],
    ),
    (
        "option out of range",
        lambda s, f: convert2snn.convert(SmallCNN(), calibration_data=X, percentile=0),
        InvalidInputError,
        ["percentile must be in"],
    ),
    (
        "calibration data of the wrong shape",
        lambda s, f: convert2snn.convert(SmallCNN(), calibration_data=torch.rand(4, 1, 9, 9), example_input=X[:1]),
        InvalidInputError,
        ["(1, 9, 9)", "(1, 8, 8)"],
    ),
    (
        "calibration data with NaN",
        lambda s, f: convert2snn.convert(SmallCNN(), calibration_data=torch.where(X > 0.99, float("nan"), X)),
        InvalidInputError,
        ["NaN"],
    ),
    (
        "empty calibration data",
        lambda s, f: convert2snn.convert(SmallCNN(), calibration_data=np.zeros((0, 1, 8, 8))),
        InvalidInputError,
        ["empty"],
    ),
    (
        "calibration data of strings",
        lambda s, f: convert2snn.convert(SmallCNN(), calibration_data=np.array([["a"]]), example_input=X[:1]),
        InvalidInputError,
        ["numeric"],
    ),
    (
        "torch module without any input shape",
        lambda s, f: convert2snn.convert(SmallCNN()),
        InvalidInputError,
        ["example input"],
    ),
    (
        "labels that do not match the inputs",
        lambda s, f: s.evaluate(X, np.zeros(5, dtype=int)),
        InvalidInputError,
        ["5 labels", "32 inputs"],
    ),
    (
        "labels outside the classes",
        lambda s, f: s.evaluate(X, np.full(32, 9)),
        InvalidInputError,
        ["labels must lie in [0, 3]"],
    ),
    (
        "one-hot labels of the wrong width",
        lambda s, f: s.evaluate(X, np.eye(5)[np.zeros(32, dtype=int)]),
        InvalidInputError,
        ["one-hot", "(N, 4)"],
    ),
    (
        "timesteps that are not positive",
        lambda s, f: s.evaluate(X, np.zeros(32, dtype=int), timesteps=[0, 8]),
        InvalidInputError,
        ["timesteps must be a positive integer"],
    ),
    ("timesteps as a float", lambda s, f: s.predict(X, timesteps=2.5), InvalidInputError, ["timesteps"]),
    (
        "inputs of the wrong shape to predict",
        lambda s, f: s.predict(torch.rand(3, 1, 7, 7), timesteps=4),
        InvalidInputError,
        ["(1, 7, 7)", "(1, 8, 8)"],
    ),
    (
        "a layer rate coding cannot represent",
        lambda s, f: convert2snn.convert(_sigmoid_net(), calibration_data=X),
        UnsupportedLayerError,
        ["Sigmoid", "population"],
    ),
    (
        "an op the bridge cannot convert",
        lambda s, f: convert2snn.convert(f / "hardmax.onnx", calibration_data=torch.rand(4, 4)),
        UnsupportedLayerError,
        ["'hm'", "Hardmax"],
    ),
    (
        "unknown layer in population layer_n",
        lambda s, f: convert2snn.convert(_sigmoid_net(), "population", calibration_data=X, layer_n={"squish": 4}),
        InvalidInputError,
        ["'squish'", "Did you mean 'squash'"],
    ),
    (
        "a file that is no SNN",
        lambda s, f: convert2snn.load(f / "junk.c2s"),
        InvalidInputError,
        ["junk.c2s", "not a convert2snn model file"],
    ),
]


@pytest.mark.parametrize("call, error, words", [pytest.param(*c[1:], id=c[0]) for c in CATALOGUE])
def test_bad_input_catalogue(snn, files, call, error, words):
    with pytest.raises(ConversionError) as info:
        call(snn, files)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"


def test_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 15


def test_a_sample_that_cannot_fit_is_refused_before_simulating(snn, monkeypatch):
    monkeypatch.setattr(simulate, "available_memory", lambda device: 1000)
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in snn.network.modules())
    with pytest.raises(
        SimulationMemoryError, match=r"one sample needs .* MiB of activations per time step but only 0 MiB"
    ):
        snn.predict(X, timesteps=4)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in snn.network.modules()) == hooks
    assert isinstance(SimulationMemoryError("x"), MemoryError)


def test_batches_shrink_to_the_memory_budget_with_identical_results(snn, monkeypatch):
    whole = snn.predict(X, timesteps=12)
    elements = snn._activation_elements
    monkeypatch.setattr(simulate, "DEFAULT_CHUNK_BYTES", elements * 8 * 3)  # 3 samples × 1 step per chunk
    assert simulate.plan_batch(elements, 256, torch.device("cpu")) == 3
    assert simulate.chunk_length(elements, 3, 12) == 1
    small = snn.predict(X, timesteps=12)
    np.testing.assert_allclose(whole, small, rtol=1e-5, atol=1e-6)
