"""Child-process script: the Keras layer-coverage matrix (TensorFlow is imported only here).

Run as ``python tests/bridges/keras_coverage_models.py OUT_DIR [NAME ...]``. For every
configuration (all of `CONFIGS`, or the named ones) it builds the model with RANDOM weights
(kernels, biases, BatchNorm gamma/beta/moving mean/moving variance), saves it
(``NAME.keras``, or ``NAME.h5`` for the legacy tf_keras ones), computes the Keras output on
random input (``NAME.npz``: ``x`` in Keras layout, ``y``) and exports it to ``NAME.onnx``
through the product's own export code (`bridges.keras_child.export`). ``index.json`` maps
every name to ``{"ok": true, "seconds": …}`` or ``{"ok": false, "error": …}``: one broken
configuration does not hide the others.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BATCH = 4


# -- building blocks -------------------------------------------------------------------------
def _layers():
    import keras

    return keras.layers


def _model(inp, out, name):
    import keras

    return keras.Model(inp, out, name=name)


def _input(shape):
    import keras

    return keras.Input(shape)


CONFIGS = {}


def config(name: str, *, flavour: str = "keras"):
    def deco(fn):
        CONFIGS[name] = (fn, flavour)
        return fn

    return deco


# -- convolutions ------------------------------------------------------------------------------
@config("conv1d_strides_dilation")
def _conv1d():
    L = _layers()
    inp = _input((20, 3))
    x = L.Conv1D(5, 3, strides=2, padding="same", name="c1_same_s2")(inp)
    x = L.Conv1D(4, 3, dilation_rate=2, padding="valid", activation="relu", name="c1_dil")(x)
    x = L.Conv1D(3, 2, padding="same", name="c1_same_even")(x)
    return _model(inp, x, "conv1d")


@config("conv2d_valid_stride2")
def _conv2d_valid():
    L = _layers()
    inp = _input((11, 11, 3))
    x = L.Conv2D(6, 3, strides=2, padding="valid", activation="relu", name="c2_valid_s2")(inp)
    x = L.Conv2D(4, (2, 3), padding="valid", name="c2_rect")(x)
    return _model(inp, x, "conv2d_valid")


@config("conv2d_same_stride2")
def _conv2d_same_s2():
    L = _layers()
    inp = _input((10, 10, 3))
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c2_same_s2")(inp)
    x = L.Conv2D(4, 4, strides=2, padding="same", name="c2_same_k4_s2")(x)
    return _model(inp, x, "conv2d_same_s2")


@config("conv2d_same_dilation")
def _conv2d_dil():
    L = _layers()
    inp = _input((12, 12, 2))
    x = L.Conv2D(5, 3, dilation_rate=2, padding="same", activation="relu", name="c2_dil_same")(inp)
    x = L.Conv2D(3, 3, dilation_rate=(1, 2), padding="valid", name="c2_dil_valid")(x)
    return _model(inp, x, "conv2d_dil")


@config("conv3d")
def _conv3d():
    L = _layers()
    inp = _input((6, 8, 8, 2))
    x = L.Conv3D(4, 3, strides=(1, 2, 2), padding="same", activation="relu", name="c3_same")(inp)
    x = L.Conv3D(3, 2, padding="valid", name="c3_valid")(x)
    return _model(inp, x, "conv3d")


@config("depthwise_bn_relu")
def _depthwise():
    L = _layers()
    inp = _input((9, 9, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inp)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(name="dw_relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", name="dw_s2")(x)
    return _model(inp, x, "depthwise")


@config("separable_conv2d")
def _separable():
    L = _layers()
    inp = _input((9, 9, 3))
    x = L.SeparableConv2D(6, 3, padding="same", activation="relu", name="sep1")(inp)
    x = L.SeparableConv2D(4, 3, strides=2, depth_multiplier=2, padding="valid", name="sep2")(x)
    return _model(inp, x, "separable")


@config("conv2d_transpose_valid_stride2")
def _convt_valid():
    L = _layers()
    inp = _input((5, 5, 3))
    x = L.Conv2DTranspose(4, 3, strides=2, padding="valid", activation="relu", name="ct_valid")(inp)
    x = L.Conv2DTranspose(2, 2, padding="valid", name="ct_valid_k2")(x)
    return _model(inp, x, "convt_valid")


@config("conv2d_transpose_same_stride2")
def _convt_same():
    L = _layers()
    inp = _input((5, 5, 3))
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", name="ct_same")(inp)
    x = L.BatchNormalization(name="ct_bn")(x)
    x = L.ReLU(name="ct_relu")(x)
    x = L.Conv2DTranspose(2, 4, strides=2, padding="same", name="ct_same_k4")(x)
    return _model(inp, x, "convt_same")


# -- dense, batch norm, activations ----------------------------------------------------------
@config("dense_bn")
def _dense_bn():
    L = _layers()
    inp = _input((12,))
    x = L.Dense(10, name="fc1")(inp)
    x = L.BatchNormalization(name="fc1_bn")(x)
    x = L.ReLU(name="fc1_relu")(x)
    x = L.Dense(3, name="fc2")(x)
    return _model(inp, x, "dense_bn")


@config("conv_bn_relu")
def _conv_bn():
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="conv_bn")(x)
    x = L.ReLU(name="conv_relu")(x)
    x = L.Conv2D(4, 3, use_bias=False, name="conv_nobias")(x)
    x = L.BatchNormalization(name="conv_nobias_bn")(x)
    return _model(inp, x, "conv_bn")


@config("bn_after_relu")
def _bn_after_relu():
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inp)
    x = L.BatchNormalization(name="bn_post_relu")(x)
    x = L.Conv2D(4, 3, name="conv_b")(x)
    x = L.ReLU(name="relu_b")(x)
    x = L.BatchNormalization(name="bn_last")(x)
    return _model(inp, x, "bn_after_relu")


@config("relu6_variants")
def _relu6():
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv_r6")(inp)
    x = L.ReLU(max_value=6.0, name="relu_max6")(x)
    x = L.Conv2D(4, 3, padding="same", activation="relu6", name="conv_act_relu6")(x)
    x = L.ReLU(max_value=1.5, name="relu_max1_5")(x)
    return _model(inp, x, "relu6")


@config("hard_sigmoid")
def _hard_sigmoid():
    # Keras 3's hard_sigmoid adds a scalar after a conv: tf2onnx's transpose optimiser crashes on it
    # ("max() arg is an empty sequence") and the export must fall back to tf2onnx's rollback
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv_hs")(inp)
    x = L.Activation("hard_sigmoid", name="hs")(x)
    x = L.Conv2D(2, 1, name="conv_after")(x)
    return _model(inp, L.Flatten(name="flat")(x), "hard_sigmoid")


@config("activations_dense")
def _activations():
    L = _layers()
    inp = _input((10,))
    x = L.Dense(12, name="d1")(inp)
    x = L.LeakyReLU(negative_slope=0.2, name="leaky")(x)
    x = L.Dense(12, activation="sigmoid", name="d_sigmoid")(x)
    x = L.Dense(12, activation="tanh", name="d_tanh")(x)
    x = L.Activation("relu", name="act_relu")(x)
    x = L.Dense(5, activation="softmax", name="d_softmax")(x)
    return _model(inp, x, "activations")


@config("smooth_activations")
def _smooth_activations():
    # population coding's piecewise activations: swish (tf2onnx writes x · sigmoid(x)), ELU, SELU, softplus
    L = _layers()
    inp = _input((10,))
    x = L.Dense(12, activation="swish", name="d_swish")(inp)
    x = L.Dense(12, activation="elu", name="d_elu")(x)
    x = L.Dense(12, activation="selu", name="d_selu")(x)
    x = L.Dense(12, activation="softplus", name="d_softplus")(x)
    return _model(inp, L.Dense(4, name="logits")(x), "smooth_activations")


@config("activations_conv")
def _activations_conv():
    L = _layers()
    inp = _input((8, 8, 2))
    x = L.Conv2D(4, 3, padding="same", name="c_leaky")(inp)
    x = L.LeakyReLU(negative_slope=0.1, name="leaky_c")(x)
    x = L.Conv2D(4, 3, padding="same", activation="sigmoid", name="c_sigmoid")(x)
    x = L.Conv2D(4, 3, padding="same", activation="tanh", name="c_tanh")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(4, name="logits")(x)
    x = L.Softmax(name="softmax")(x)
    return _model(inp, x, "activations_conv")


# -- merges ----------------------------------------------------------------------------------
@config("add_concat_multiply")
def _merges():
    L = _layers()
    inp = _input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="branch_a")(inp)
    b = L.Conv2D(4, 1, name="branch_b")(inp)
    c = L.Conv2D(3, 3, padding="same", activation="sigmoid", name="branch_c")(inp)
    s = L.Add(name="add")([a, b])
    m = L.Multiply(name="mul")([a, b])
    x = L.Concatenate(name="concat")([s, m, c])
    x = L.Conv2D(2, 1, name="head")(x)
    return _model(inp, x, "merges")


@config("residual_block")
def _residual():
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.Conv2D(8, 3, padding="same", name="res_conv1")(x)
    y = L.BatchNormalization(name="res_bn1")(y)
    y = L.ReLU(name="res_relu1")(y)
    y = L.Conv2D(8, 3, padding="same", name="res_conv2")(y)
    y = L.BatchNormalization(name="res_bn2")(y)
    x = L.Add(name="res_add")([x, y])
    x = L.ReLU(name="res_out")(x)
    z = L.Conv2D(12, 3, strides=2, padding="same", name="down_conv")(x)
    z = L.BatchNormalization(name="down_bn")(z)
    shortcut = L.Conv2D(12, 1, strides=2, name="down_shortcut")(x)
    x = L.ReLU(name="down_relu")(L.Add(name="down_add")([z, shortcut]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(5, name="logits")(x)
    return _model(inp, x, "residual")


@config("mobilenet_block")
def _mobilenet():
    L = _layers()
    inp = _input((12, 12, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu6")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu6")(x)
    x = L.Conv2D(16, 1, use_bias=False, name="pw")(x)
    x = L.BatchNormalization(name="pw_bn")(x)
    x = L.ReLU(6.0, name="pw_relu6")(x)
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="dw2_pad")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name="dw2")(x)
    x = L.BatchNormalization(name="dw2_bn")(x)
    x = L.ReLU(6.0, name="dw2_relu6")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = L.Dense(6, activation="softmax", name="predictions")(x)
    return _model(inp, x, "mobilenet")


# -- pooling ---------------------------------------------------------------------------------
@config("pooling_valid")
def _pool_valid():
    L = _layers()
    inp = _input((11, 11, 3))
    x = L.Conv2D(4, 3, name="conv")(inp)
    x = L.AveragePooling2D(2, name="avg_valid")(x)
    x = L.MaxPooling2D(2, strides=1, name="max_valid_s1")(x)
    x = L.Conv2D(3, 1, name="conv2")(x)
    x = L.MaxPooling2D(3, strides=2, name="max_valid_k3")(x)
    return _model(inp, x, "pool_valid")


@config("pooling_same")
def _pool_same():
    L = _layers()
    inp = _input((9, 9, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="max_same")(x)
    x = L.Conv2D(4, 1, name="conv2")(x)
    x = L.AveragePooling2D(2, padding="same", name="avg_same")(x)
    x = L.AveragePooling2D(3, strides=1, padding="same", name="avg_same_k3")(x)
    return _model(inp, x, "pool_same")


@config("global_pooling_2d")
def _gpool2d():
    L = _layers()
    inp = _input((7, 7, 3))
    x = L.Conv2D(5, 3, padding="same", name="conv")(inp)
    a = L.GlobalAveragePooling2D(name="gap")(x)
    m = L.GlobalMaxPooling2D(name="gmp")(x)
    x = L.Concatenate(name="concat")([a, m])
    x = L.Dense(3, name="logits")(x)
    return _model(inp, x, "gpool2d")


@config("pooling_1d")
def _pool1d():
    L = _layers()
    inp = _input((24, 3))
    x = L.Conv1D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.MaxPooling1D(2, name="max1d")(x)
    x = L.AveragePooling1D(3, strides=2, padding="same", name="avg1d_same")(x)
    x = L.Conv1D(5, 3, name="conv2")(x)
    a = L.GlobalAveragePooling1D(name="gap1d")(x)
    m = L.GlobalMaxPooling1D(name="gmp1d")(x)
    x = L.Add(name="add")([a, m])
    x = L.Dense(3, name="logits")(x)
    return _model(inp, x, "pool1d")


# -- padding, shapes -------------------------------------------------------------------------
@config("zeropadding_symmetric")
def _zeropad_sym():
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.ZeroPadding2D(1, name="pad1")(inp)
    x = L.Conv2D(4, 3, name="conv1")(x)
    x = L.ZeroPadding2D((2, 1), name="pad2")(x)
    x = L.Conv2D(3, 3, strides=2, name="conv2")(x)
    return _model(inp, x, "zeropad_sym")


@config("zeropadding_asymmetric")
def _zeropad_asym():
    L = _layers()
    inp = _input((8, 8, 3))
    x = L.ZeroPadding2D(((1, 0), (0, 2)), name="pad_asym")(inp)
    x = L.Conv2D(4, 3, name="conv1")(x)
    x = L.ReLU(name="relu")(x)
    x = L.ZeroPadding2D(((0, 1), (1, 0)), name="pad_asym2")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    return _model(inp, x, "zeropad_asym")


@config("dropout_flatten_reshape")
def _shapes():
    L = _layers()
    inp = _input((6, 6, 2))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = L.Dropout(0.5, name="drop")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(24, activation="relu", name="fc")(x)
    x = L.Reshape((4, 6), name="reshape")(x)
    x = L.Flatten(name="flat2")(x)
    x = L.Dense(3, name="logits")(x)
    return _model(inp, x, "shapes")


@config("reshape_to_image")
def _reshape_image():
    L = _layers()
    inp = _input((16,))
    x = L.Dense(32, activation="relu", name="fc")(inp)
    x = L.Reshape((4, 4, 2), name="to_image")(x)
    x = L.Conv2D(3, 3, padding="same", name="conv")(x)
    x = L.Flatten(name="flat")(x)
    return _model(inp, x, "reshape_image")


@config("upsampling2d")
def _upsampling():
    L = _layers()
    inp = _input((5, 5, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.UpSampling2D(2, name="up2")(x)
    x = L.Conv2D(3, 3, padding="same", name="conv2")(x)
    x = L.UpSampling2D((1, 3), name="up13")(x)
    return _model(inp, x, "upsampling")


# -- recurrent -------------------------------------------------------------------------------
@config("lstm_sequences")
def _lstm_seq():
    L = _layers()
    inp = _input((7, 5))
    x = L.LSTM(8, return_sequences=True, name="lstm_seq")(inp)
    x = L.LSTM(6, return_sequences=True, name="lstm_seq2")(x)
    return _model(inp, x, "lstm_seq")


@config("lstm_last")
def _lstm_last():
    L = _layers()
    inp = _input((6, 4))
    x = L.LSTM(8, return_sequences=True, name="lstm_a")(inp)
    x = L.LSTM(6, name="lstm_b")(x)
    x = L.Dense(3, name="logits")(x)
    return _model(inp, x, "lstm_last")


# -- legacy tf_keras -------------------------------------------------------------------------
@config("tf_keras_sequential_h5", flavour="tf_keras")
def _tf_keras():
    import tf_keras

    L = tf_keras.layers
    return tf_keras.Sequential(
        [
            tf_keras.Input((8, 8, 3)),
            L.Conv2D(6, 3, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1"),
            L.ReLU(name="relu1"),
            L.MaxPooling2D(2, name="pool1"),
            L.Conv2D(4, 3, activation="relu", name="conv2"),
            L.Flatten(name="flat"),
            L.Dense(8, activation="relu", name="fc1"),
            L.Dense(3, activation="softmax", name="fc2"),
        ],
        name="legacy",
    )


# -- weights, export -------------------------------------------------------------------------
def randomize(model, rng: np.random.Generator) -> None:
    """Random weights everywhere, so that no bias, BN statistic or gamma can hide a bug."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for w, v in zip(weights, layer.weights):
            name = getattr(v, "path", None) or v.name
            if "variance" in name:
                new.append(rng.uniform(0.3, 2.5, w.shape))
            elif "gamma" in name:
                new.append(rng.uniform(0.5, 1.5, w.shape) * rng.choice([-1.0, 1.0], w.shape))
            elif "mean" in name or "beta" in name or "bias" in name:
                new.append(rng.normal(0.0, 0.5, w.shape))
            else:
                fan_in = max(1, int(np.prod(w.shape[:-1])))
                new.append(rng.normal(0.0, 1.5 / np.sqrt(fan_in), w.shape))
        layer.set_weights([n.astype("float32") for n in new])


def build_one(name: str, out: Path) -> dict:
    from bridges.keras_child import export

    fn, flavour = CONFIGS[name]
    seed = zlib.crc32(name.encode())
    rng = np.random.default_rng(seed)
    model = fn()
    randomize(model, rng)
    path = out / (f"{name}.h5" if flavour == "tf_keras" else f"{name}.keras")
    model.save(path)
    x = rng.normal(0.0, 1.0, (BATCH,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    y = np.asarray(model(x, training=False))
    np.savez(out / f"{name}.npz", x=x, y=y)
    reply = export({"model_path": str(path), "out_path": str(out / f"{name}.onnx"), "flavour": flavour})
    return {"ok": True, "layers": reply["layers"], "flavour": flavour}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    from bridges.keras_child import silence_tensorflow

    silence_tensorflow()
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    names = argv[2:] or list(CONFIGS)
    index = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            entry = build_one(name, out)
        except Exception as exc:  # noqa: BLE001 - reported per configuration
            entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        index[name] = entry
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
