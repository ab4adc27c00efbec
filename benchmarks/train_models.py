r"""Train the benchmark Keras models (run as a CHILD process: the only benchmark code that imports TensorFlow).

    python benchmarks/train_models.py mnist_lenet --data ../shared/datasets/mnist.npz \
        --out ~/.cache/convert2snn/bench/...keras

Writes the model to ``--out`` and a JSON sidecar (``<out>.json``) with the Keras test accuracy,
training time and settings. Deterministic for a given seed (`keras.utils.set_random_seed` and
TensorFlow op determinism), up to the usual thread-scheduling caveats of CPU training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# Changing a model's entry, its builder or its data loader changes its cache key (`recipe_key`).
MODELS = {
    "mnist_lenet": dict(epochs=8, batch=128, lr=2e-3, final_lr=2e-5),
    # The same with average pooling: what NIR (and its consumers) can pool (bench_nir.py).
    "mnist_lenet_avg": dict(epochs=8, batch=128, lr=2e-3, final_lr=2e-5),
    # Sized for < 1 h of 2-core CPU training (134 s/epoch measured): widths 16/32/64, flips +
    # 4-pixel shifts, weight decay, cosine schedule. Widths 32/64/128 cost 535 s/epoch.
    "cifar10_vgg": dict(epochs=18, batch=128, lr=2e-3, final_lr=2e-5, weight_decay=5e-4, augment=True),
    # ResNet-20 (He et al. 2016, CIFAR): 4x the VGG's work per image; 10 epochs fit ~1.5 h of 2 cores.
    "cifar10_resnet20": dict(epochs=10, batch=128, lr=2e-3, final_lr=2e-5, weight_decay=5e-4, augment=True),
}
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


def recipe_key(name: str) -> str:
    """A short hash of everything that determines the trained weights of ``name`` (for caches)."""
    import hashlib
    import inspect

    loader = load_mnist if name.startswith("mnist") else load_cifar10
    text = repr(sorted(MODELS[name].items())) + inspect.getsource(globals()[name]) + inspect.getsource(loader)
    if MODELS[name].get("augment"):
        text += inspect.getsource(augmented_dataset)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def load_mnist(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path) as f:
        x_tr = (f["x_train"].astype(np.float32) / 255.0)[..., None]
        x_te = (f["x_test"].astype(np.float32) / 255.0)[..., None]
        return x_tr, f["y_train"].astype(np.int64), x_te, f["y_test"].astype(np.int64)


def load_cifar10(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 (the JPEG-decoded copy), NHWC float32 standardised per channel with the usual
    CIFAR-10 mean/std — the benchmark feeds the converted SNN the same arrays."""
    with np.load(path) as f:

        def prep(x):
            return ((x.astype(np.float32) / 255.0) - CIFAR_MEAN) / CIFAR_STD

        return (
            prep(f["x_train"]),
            f["y_train"].astype(np.int64).ravel(),
            prep(f["x_test"]),
            f["y_test"].astype(np.int64).ravel(),
        )


def augmented_dataset(tf, x, y, batch: int, seed: int):
    """Random horizontal flips and shifts of up to 4 pixels (zero padding), reshuffled every epoch."""

    def aug(img, label):
        img = tf.image.random_flip_left_right(img)
        img = tf.image.pad_to_bounding_box(img, 4, 4, 40, 40)
        img = tf.image.random_crop(img, (32, 32, 3))
        return img, label

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)


def cifar10_vgg(keras, weight_decay: float = 5e-4):
    """VGG-style: 3 blocks of 2 × (Conv 3x3 → BN → ReLU) + AveragePooling 2 + Dropout, widths
    16/32/64 (a quarter of VGG's, for CPU training); Dense 128 → Dense 10 (softmax)."""
    layers = keras.layers
    reg = keras.regularizers.l2(weight_decay)
    inp = keras.Input((32, 32, 3), name="image")
    x = inp
    for block, width in enumerate((16, 32, 64), start=1):
        for j in (1, 2):
            x = layers.Conv2D(
                width, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"conv{block}_{j}"
            )(x)
            x = layers.BatchNormalization(name=f"bn{block}_{j}")(x)
            x = layers.ReLU(name=f"relu{block}_{j}")(x)
        x = layers.AveragePooling2D(2, name=f"pool{block}")(x)
        x = layers.Dropout(0.1 * block, name=f"drop{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, kernel_regularizer=reg, name="fc1")(x)
    x = layers.ReLU(name="relu_fc1")(x)
    x = layers.Dropout(0.4, name="drop_fc1")(x)
    x = layers.Dense(10, name="fc2")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="cifar10_vgg")


def cifar10_resnet20(keras, weight_decay: float = 5e-4):
    """ResNet-20 for CIFAR (He et al. 2016): Conv 3x3 (16) → BN → ReLU, three stages of three basic
    blocks (widths 16/32/64, stride 2 and a 1x1 projection shortcut where the width changes), global
    average pooling, Dense 10 (softmax)."""
    layers = keras.layers
    reg = keras.regularizers.l2(weight_decay)

    def conv_bn(x, width, kernel, stride, name):
        x = layers.Conv2D(
            width, kernel, strides=stride, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv"
        )(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    inp = keras.Input((32, 32, 3), name="image")
    x = layers.ReLU(name="stem_relu")(conv_bn(inp, 16, 3, 1, "stem"))
    for stage, width in enumerate((16, 32, 64), start=1):
        for block in (1, 2, 3):
            stride = 2 if stage > 1 and block == 1 else 1
            name = f"s{stage}b{block}"
            y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, width, 3, stride, f"{name}_1"))
            y = conv_bn(y, width, 3, 1, f"{name}_2")
            shortcut = conv_bn(x, width, 1, stride, f"{name}_proj") if stride > 1 else x
            x = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(10, name="fc")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="cifar10_resnet20")


def mnist_lenet(keras):
    """LeNet-5-like: two 5x5 conv blocks (Conv → BN → ReLU → MaxPool), Dense 128, Dense 10 (softmax)."""
    layers = keras.layers
    inp = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(16, 5, use_bias=False, name="conv1")(inp)  # 24x24x16
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 12x12x16
    x = layers.Conv2D(32, 5, use_bias=False, name="conv2")(x)  # 8x8x32
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 4x4x32
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, name="fc1")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    x = layers.Dense(10, name="fc2")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="mnist_lenet")


def mnist_lenet_avg(keras):
    """`mnist_lenet` with average pooling (NIR has sum/average pooling, no max pooling of spikes)."""
    layers = keras.layers
    inp = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(16, 5, use_bias=False, name="conv1")(inp)  # 24x24x16
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.AveragePooling2D(2, name="pool1")(x)  # 12x12x16
    x = layers.Conv2D(32, 5, use_bias=False, name="conv2")(x)  # 8x8x32
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.AveragePooling2D(2, name="pool2")(x)  # 4x4x32
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, name="fc1")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    x = layers.Dense(10, name="fc2")(x)
    out = layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="mnist_lenet_avg")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    cfg = MODELS[args.model]
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    loader = load_mnist if args.model.startswith("mnist") else load_cifar10
    x_tr, y_tr, x_te, y_te = loader(args.data)
    model = globals()[args.model](keras, cfg["weight_decay"]) if "weight_decay" in cfg else globals()[args.model](keras)
    steps = cfg["epochs"] * int(np.ceil(len(x_tr) / cfg["batch"]))
    schedule = keras.optimizers.schedules.CosineDecay(cfg["lr"], steps, alpha=cfg["final_lr"] / cfg["lr"])
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    print(
        f"[train] {args.model}: {model.count_params()} parameters, {cfg['epochs']} epochs, seed {args.seed}", flush=True
    )
    wall, cpu = time.perf_counter(), time.process_time()
    if cfg.get("augment"):
        model.fit(augmented_dataset(tf, x_tr, y_tr, cfg["batch"], args.seed), epochs=cfg["epochs"], verbose=2)
    else:
        model.fit(x_tr, y_tr, batch_size=cfg["batch"], epochs=cfg["epochs"], shuffle=True, verbose=2)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, acc = model.evaluate(x_te, y_te, batch_size=1000, verbose=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    info = {
        "model": args.model,
        "keras_test_accuracy": float(acc),
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "seed": args.seed,
        "params": int(model.count_params()),
        **cfg,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "python": sys.version.split()[0]},
    }
    Path(str(args.out) + ".json").write_text(json.dumps(info, indent=2))
    print(
        f"[train] Keras test accuracy {100 * acc:.2f} % ({wall:.0f} s wall, {cpu:.0f} s CPU); saved {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
