"""Train a small Keras CNN, convert it to a spiking network, and report accuracy versus timesteps.

    python examples/train_example.py                      # sklearn digits (8x8), < 2 min on 2 CPU cores
    python examples/train_example.py --data ../shared/datasets/mnist.npz --epochs 3 --limit 2000

Steps (each prints a progress line):

1. A child Python process trains the Keras model (seeded with `keras.utils.set_random_seed`)
   and saves it as ``model.keras`` in the output directory. TensorFlow runs only in that child:
   TensorFlow and SpikingJelly's kernels (triton) must never share a process.
2. This process converts the saved model with ``convert2snn.convert`` (rate coding; λ per layer
   from the training split), which exports Keras → ONNX in another child process.
3. One simulation up to the largest T gives the SNN's accuracy at every T; the table shows ANN
   accuracy, SNN accuracy and spikes per neuron, and a plot of accuracy vs T is saved.

The model: Conv2D(16, 3, same) → BatchNorm → ReLU → Conv2D(32, 3, relu) → AveragePooling(2) →
Flatten → Dense(64, relu) → Dense(10, softmax). BatchNorm is folded into the convolution by the
converter; the final softmax is dropped (argmax is unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_TIMESTEPS = (4, 8, 16, 32, 64)


def default_out_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "convert2snn" / "examples" / "train_example"


# -- data (numpy / sklearn only: shared by the training child and this process) ------------------
def load_data(data: str | None, seed: int = 0) -> dict[str, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` as float32 NHWC in [0, 1] and int64 labels.

    Without ``data``: sklearn's digits (1797 8x8 images, values 0..16), a stratified 80/20 split.
    With ``data``: an MNIST-style ``.npz`` (x_train, y_train, x_test, y_test; images N×H×W uint8).
    """
    if data is None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        y = digits.target.astype(np.int64)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
        return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}
    with np.load(data) as f:
        out = {}
        for split in ("train", "test"):
            x = f[f"x_{split}"]
            x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 or x.max() > 1 else 1.0)
            if x.ndim == 3:  # N, H, W → N, H, W, 1
                x = x[..., None]
            out[f"x_{split}"] = x
            out[f"y_{split}"] = f[f"y_{split}"].astype(np.int64).reshape(-1)
    return out


# -- step 1: training (runs in a child process; the only place TensorFlow is imported) -----------
def train_child(args: argparse.Namespace) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    d = load_data(args.data, args.seed)
    x_tr, y_tr, x_te, y_te = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    classes = int(max(y_tr.max(), y_te.max())) + 1
    inp = keras.Input(x_tr.shape[1:], name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="logits")(x)
    model = keras.Model(inp, out, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    print(
        f"[train] {model.count_params()} parameters; {len(x_tr)} training / {len(x_te)} test images, "
        f"{args.epochs} epochs",
        flush=True,
    )
    start = time.perf_counter()
    model.fit(x_tr, y_tr, batch_size=args.train_batch, epochs=args.epochs, shuffle=True, verbose=2)
    _, acc = model.evaluate(x_te, y_te, verbose=0)
    seconds = time.perf_counter() - start
    path = Path(args.out) / "model.keras"
    model.save(path)
    (Path(args.out) / "train.json").write_text(
        json.dumps({"keras_test_accuracy": float(acc), "seconds": seconds, "epochs": args.epochs, "seed": args.seed})
    )
    print(f"[train] Keras test accuracy {100 * acc:.2f} % after {seconds:.1f} s; saved {path}", flush=True)


# -- plot ---------------------------------------------------------------------------------------
def plot_accuracy(result, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    ax.plot(result.timesteps, [100 * a for a in result.accuracy], "o-", label="SNN (rate, convert2snn)")
    ax.axhline(100 * result.ann_accuracy, color="k", ls="--", lw=1, label=f"ANN ({100 * result.ann_accuracy:.2f} %)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(result.timesteps)
    ax.set_xticklabels([str(t) for t in result.timesteps])
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- steps 2 and 3: conversion and evaluation (this process; no TensorFlow here) -----------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default {default_out_dir()})")
    p.add_argument(
        "--data", default=None, help="MNIST-style .npz (x_train, y_train, x_test, y_test); default sklearn digits"
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 30 for digits, 3 for --data)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", type=int, nargs="+", default=list(DEFAULT_TIMESTEPS))
    p.add_argument("--calibration", type=int, default=2000, help="training images used for calibration")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--plot", type=Path, default=None, help="accuracy-vs-T plot (default OUT/accuracy_vs_T.png)")
    p.add_argument("--reuse", action="store_true", help="reuse OUT/model.keras if it exists instead of training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--train-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 30 if args.data is None else 3
    args.out = Path(args.out or default_out_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train_child:
        train_child(args)
        return 0

    t0 = time.perf_counter()
    dataset = "sklearn digits" if args.data is None else Path(args.data).name
    model_path = args.out / "model.keras"
    if args.reuse and model_path.exists():
        print(f"[1/3] reusing {model_path}", flush=True)
    else:
        print(
            f"[1/3] training a Keras CNN on {dataset} in a child process (seed {args.seed}, {args.epochs} epochs)",
            flush=True,
        )
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--train-child",
            "--out",
            str(args.out),
            "--epochs",
            str(args.epochs),
            "--lr",
            str(args.lr),
            "--train-batch",
            str(args.train_batch),
            "--seed",
            str(args.seed),
        ] + (["--data", str(args.data)] if args.data else [])
        from bridges.keras_to_onnx import run_tensorflow_child  # this side of the child only: torch, no TensorFlow

        run_tensorflow_child(cmd)  # TensorFlow's start-up lines filtered out

    import convert2snn  # after training: this process never imports TensorFlow

    d = load_data(args.data, args.seed)
    x_cal = d["x_train"][: args.calibration]
    x_test, y_test = d["x_test"][: args.limit], d["y_test"][: args.limit]
    print(
        f"[2/3] converting {model_path.name} (rate coding, percentile {args.percentile}, "
        f"{len(x_cal)} calibration images)",
        flush=True,
    )
    t1 = time.perf_counter()
    snn = convert2snn.convert(
        str(model_path),
        conversion_type="rate",
        calibration_data=x_cal,
        percentile=args.percentile,
        progress=not args.quiet,
    )
    t_convert = time.perf_counter() - t1
    neurons = snn.neuron_counts()
    print(
        f"      converted in {t_convert:.1f} s: {sum(neurons.values())} spiking neurons in {len(neurons)} layers",
        flush=True,
    )

    timesteps = sorted(set(args.timesteps))
    print(f"[3/3] simulating {len(x_test)} test images up to T={max(timesteps)} (one run serves every T)", flush=True)
    t2 = time.perf_counter()
    result = snn.evaluate(x_test, y_test, timesteps=timesteps, correlation=False)
    t_sim = time.perf_counter() - t2

    ann = 100 * result.ann_accuracy
    print()
    print(f"{dataset}: {len(x_test)} test images; ANN accuracy {ann:.2f} %")
    print(f"{'T':>5} | {'ANN acc %':>9} | {'SNN acc %':>9} | {'ANN-SNN pp':>10} | {'spikes/neuron':>13}")
    print("-" * 60)
    for t, a, s in zip(result.timesteps, result.accuracy, result.spikes_per_neuron):
        print(f"{t:>5} | {ann:>9.2f} | {100 * a:>9.2f} | {ann - 100 * a:>10.2f} | {s:>13.3f}")
    print()
    plot = args.plot or args.out / "accuracy_vs_T.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_accuracy(result, plot, f"{dataset}: rate-coded SNN vs ANN")
    result.to_json(args.out / "result.json")
    print(f"plot: {plot}")
    print(f"results: {args.out / 'result.json'}")
    print(f"time: convert {t_convert:.1f} s, simulate {t_sim:.1f} s, total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
