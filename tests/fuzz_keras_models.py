"""Child-process script: build seeded random Keras CNNs from the supported layer set, export them.

Run as ``python tests/fuzz_keras_models.py OUT_DIR FIRST_SEED COUNT``. For every seed it writes
``model_<seed>.onnx`` (through the product's own export code), and ``data_<seed>.npz`` with the
random inputs ``x`` (NHWC) and the Keras outputs ``y``. TensorFlow is imported only here.
"""

import json
import sys

import numpy as np


def random_model(seed: int):
    import keras

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    size = int(rng.choice([8, 10, 12]))
    channels = int(rng.integers(1, 4))
    inp = keras.Input((size, size, channels))
    x = inp
    described = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["conv", "residual", "concat", "depthwise", "pad_conv"])
        filters = int(rng.integers(2, 9))
        act = rng.choice(["relu", "relu6"])
        activation = (lambda t: layers.ReLU()(t)) if act == "relu" else (lambda t: layers.ReLU(6.0)(t))
        if kind == "conv":
            stride = int(rng.choice([1, 2])) if x.shape[1] >= 4 else 1
            x = layers.Conv2D(
                filters,
                int(rng.choice([1, 3])),
                strides=stride,
                padding=str(rng.choice(["same", "valid"])) if x.shape[1] > 3 else "same",
            )(x)
            if rng.random() < 0.5:
                x = layers.BatchNormalization()(x)
            x = activation(x)
        elif kind == "residual":
            x = layers.Conv2D(filters, 1)(x)
            x = activation(x)
            y = layers.Conv2D(filters, 3, padding="same")(x)
            y = layers.BatchNormalization()(y)
            x = activation(layers.Add()([x, y]))
        elif kind == "concat":
            a = activation(layers.Conv2D(filters, 1)(x))
            b = activation(layers.Conv2D(int(rng.integers(1, 5)), 3, padding="same")(x))
            x = layers.Concatenate()([a, b])
        elif kind == "depthwise":
            x = layers.DepthwiseConv2D(3, padding="same")(x)
            x = layers.BatchNormalization()(x)
            x = activation(x)
        else:
            x = layers.ZeroPadding2D(((1, 0), (0, 1)) if rng.random() < 0.5 else 1)(x)
            x = activation(layers.Conv2D(filters, 3)(x))
        described.append(f"{kind}/{act}")
        if x.shape[1] >= 4 and rng.random() < 0.6:
            pool = rng.choice(["max", "avg"])
            x = (layers.MaxPooling2D(2) if pool == "max" else layers.AveragePooling2D(2))(x)
            described.append(f"{pool}pool")
    head = rng.choice(["flatten", "gap", "gmp"])
    if head == "flatten":
        x = layers.Flatten()(x)
    elif head == "gap":
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = layers.GlobalMaxPooling2D()(x)
    if rng.random() < 0.5:
        x = layers.Dropout(0.3)(x)
        x = layers.ReLU()(layers.Dense(int(rng.integers(4, 17)))(x))
        described.append("dense")
    out = layers.Dense(int(rng.integers(2, 7)))(x)
    if rng.random() < 0.5:
        out = layers.Softmax()(out)
    model = keras.Model(inp, out)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            new = []
            for w, v in zip(weights, layer.weights):
                if "variance" in v.path:
                    new.append(rng.uniform(0.5, 2.0, w.shape))
                elif "mean" in v.path or "beta" in v.path or "bias" in v.path:
                    new.append(rng.normal(0.0, 0.2, w.shape))
                elif "gamma" in v.path:
                    new.append(rng.uniform(0.5, 1.5, w.shape))
                else:
                    fan_in = max(1, int(np.prod(w.shape[:-1])))
                    new.append(rng.normal(0.0, 1.6 / np.sqrt(fan_in), w.shape))
            layer.set_weights([n.astype("float32") for n in new])
    return model, described, (size, size, channels), rng


def main(out_dir: str, first: int, count: int) -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    from bridges.keras_child import export, silence_tensorflow

    silence_tensorflow()
    index = {}
    for seed in range(first, first + count):
        model, described, shape, rng = random_model(seed)
        path = f"{out_dir}/model_{seed}.keras"
        model.save(path)
        x = rng.random((48,) + shape).astype("float32")
        y = model.predict(x, verbose=0)
        np.savez(f"{out_dir}/data_{seed}.npz", x=x, y=y)
        export({"model_path": path, "out_path": f"{out_dir}/model_{seed}.onnx"})
        index[seed] = described
    with open(f"{out_dir}/index.json", "w") as f:
        json.dump(index, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
