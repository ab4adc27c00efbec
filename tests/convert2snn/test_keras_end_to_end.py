"""Keras file → SNN: layout handling, exactness of the bridged ANN, the user's file untouched."""

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convert2snn

pytestmark = pytest.mark.tf

BUILD = textwrap.dedent("""
    import sys, numpy as np, keras
    keras.utils.set_random_seed(0)
    out = sys.argv[1]
    inp = keras.Input((10, 10, 2))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inp, keras.layers.Softmax(name="softmax")(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([np.abs(w) + 0.5 if "variance" in v.path else rng.normal(0, 0.4, w.shape)
                               for w, v in zip(ws, layer.weights)])
    model.save(out + "/model.keras")
    x = rng.random((96, 10, 10, 2)).astype("float32")
    np.savez(out + "/data.npz", x=x, y=model.predict(x, verbose=0))
""")


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras")
    subprocess.run([sys.executable, "-c", BUILD, str(d)], check=True, capture_output=True, timeout=300)
    data = np.load(d / "data.npz")
    return d / "model.keras", data["x"], data["y"]


def test_keras_file_converts_exactly_and_is_untouched(keras_model):
    path, x, y_keras = keras_model
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    snn = convert2snn.convert(str(path), calibration_data=x, percentile=100, progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    # the bridged ANN takes NHWC input like Keras and reproduces it
    ann = snn.ann_predict(x)
    assert np.abs(ann - y_keras).max() <= 1e-5 * np.abs(y_keras).max()
    # layer names follow the Keras model
    assert {"conv1", "logits"} <= set(snn.bridge_info.layers.values())
    labels = y_keras.argmax(1)
    result = snn.evaluate(x, labels, timesteps=[8, 256])
    assert result.ann_accuracy == 1.0
    assert result.accuracy_at(256) >= 0.97
    with pytest.raises(convert2snn.InvalidInputError, match=r"expects \(10, 10, 2\)"):
        snn.predict(x.transpose(0, 3, 1, 2))


def test_bad_calibration_shape_fails_before_export(keras_model, monkeypatch):
    path, x, _ = keras_model
    import bridges.keras_to_onnx

    def no_export(*args, **kwargs):
        raise AssertionError("the TensorFlow export must not start for bad calibration data")

    monkeypatch.setattr(bridges.keras_to_onnx.subprocess, "run", no_export)
    with pytest.raises(convert2snn.InvalidInputError, match=r"per-sample shape \(2, 10, 10\).*expects \(10, 10, 2\)"):
        convert2snn.convert(str(path), calibration_data=x.transpose(0, 3, 1, 2))


USER_PROCESS = textwrap.dedent("""
    # A user's process: Keras first (the model object lives here), convert2snn after it.
    import hashlib, sys, numpy as np, keras
    import convert2snn
    path = sys.argv[1]
    model = keras.models.load_model(path)
    x = np.random.default_rng(1).random((32, 10, 10, 2)).astype("float32")

    def state():
        return ([w.copy() for w in model.get_weights()], [l.trainable for l in model.layers], model.name,
                hashlib.sha256(open(path, "rb").read()).hexdigest())

    before = state()
    for kind in convert2snn.schemes.available():
        for source in (model, path):
            snn = convert2snn.convert(source, kind, calibration_data=x, progress=False)
            assert np.abs(snn.ann_predict(x) - model.predict(x, verbose=0)).max() < 1e-4, kind
            after = state()
            assert all(np.array_equal(a, b) for a, b in zip(before[0], after[0])), (kind, "weights changed")
            assert before[1:] == after[1:], (kind, "layers, name or file changed")
    print("checked", convert2snn.schemes.available())
""")


def test_user_model_object_and_file_unchanged_by_every_conversion_type(keras_model):
    path, _, _ = keras_model
    proc = subprocess.run([sys.executable, "-c", USER_PROCESS, str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    checked = proc.stdout.split("checked ", 1)[1].strip()
    assert sorted(eval(checked)) == ["population", "rate", "temporal"], proc.stdout  # noqa: S307 (our own child's list)
