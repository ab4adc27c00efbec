"""Population conversion: Keras networks with sigmoid / tanh and an LSTM → SNNs of neuron populations.

    python examples/population_example.py [--n 1 4 16 64] [--timesteps 1 2 4 8 16 32] [--mismatch dither]

Trains two small Keras models on scikit-learn's bundled digits (8×8 images, 10 classes) in a
child process (TensorFlow never runs in this process):

- an MLP with a sigmoid and a tanh hidden layer (64 → 64 sigmoid → 32 tanh → 10);
- an LSTM that reads each image as a sequence of 8 rows of 8 pixels (LSTM(32) → 10);

then converts each with ``conversion_type="population"`` at several population sizes n and
prints accuracy vs timesteps next to the Keras model's accuracy. Takes about 1.5 minutes (92 s
measured on 2 busy cores: training, one ONNX export per model, then seconds per conversion and simulation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 0


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits in [0, 1], a seeded stratified 1297 / 500 train / test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    return tuple(train_test_split(x, d.target.astype(np.int64), test_size=500, random_state=SEED, stratify=d.target))


def train(out: Path) -> None:
    """CHILD process: train and save ``mlp.keras`` and ``lstm.keras`` (the only code here that imports TensorFlow)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(SEED)
    x_tr, x_te, y_tr, y_te = digits_split()
    layers = keras.layers

    inp = keras.Input((64,), name="pixels")
    h = layers.Dense(64, activation="sigmoid", name="hidden_sigmoid")(inp)
    h = layers.Dense(32, activation="tanh", name="hidden_tanh")(h)
    out_mlp = layers.Softmax(name="softmax")(layers.Dense(10, name="logits")(h))
    mlp = keras.Model(inp, out_mlp, name="mlp")

    seq = keras.Input((8, 8), name="rows")
    h = layers.LSTM(32, name="lstm")(seq)
    out_lstm = layers.Softmax(name="softmax")(layers.Dense(10, name="logits")(h))
    lstm = keras.Model(seq, out_lstm, name="lstm")

    for model, x, epochs in ((mlp, x_tr, 60), (lstm, x_tr.reshape(-1, 8, 8), 60)):
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(x, y_tr, batch_size=32, epochs=epochs, verbose=0)
        x_test = x_te if model is mlp else x_te.reshape(-1, 8, 8)
        _, acc = model.evaluate(x_test, y_te, verbose=0)
        model.save(out / f"{model.name}.keras")
        print(f"[child] {model.name}: Keras test accuracy {100 * acc:.2f} %", flush=True)


def train_in_child(out: Path) -> None:
    from bridges.keras_to_onnx import run_tensorflow_child  # this side of the child only: torch, no TensorFlow

    run_tensorflow_child([sys.executable, __file__, "--train", str(out)], timeout=600)


def compare(
    path: Path,
    x_tr: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    sizes: list[int],
    timesteps: list[int],
    mismatch: str,
) -> list[dict]:
    import bridges
    import convert2snn

    onnx_path = path.with_suffix(".onnx")
    if not onnx_path.exists():  # export once (TensorFlow in a child process), convert from ONNX at every n
        bridges.to_onnx(path, onnx_path)
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        snn = convert2snn.convert(
            str(onnx_path),
            conversion_type="population",
            calibration_data=x_tr[:500],
            n=n,
            mismatch=mismatch,
            progress=False,
        )
        result = snn.evaluate(x_te, y_te, timesteps=timesteps)
        rows.append(
            {
                "n": n,
                "neurons": sum(snn.neuron_counts().values()),
                "ann": result.ann_accuracy,
                "accuracy": dict(zip(result.timesteps, result.accuracy)),
                "seconds": time.perf_counter() - t0,
            }
        )
    return rows


def table(title: str, rows: list[dict], timesteps: list[int]) -> str:
    head = f"{'n':>4} {'neurons':>8} " + " ".join(f"{'T=' + str(t):>7}" for t in timesteps) + f" {'time':>6}"
    lines = [f"\n{title}: Keras (ANN) accuracy {100 * rows[0]['ann']:.2f} %", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['n']:>4} {r['neurons']:>8} "
            + " ".join(f"{100 * r['accuracy'][t]:>7.2f}" for t in timesteps)
            + f" {r['seconds']:>5.1f}s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, help=argparse.SUPPRESS)  # child mode
    p.add_argument("--n", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--mismatch", default="dither", choices=["dither", "threshold"])
    p.add_argument("--models", type=Path, help="directory with mlp.keras / lstm.keras (trained when missing)")
    args = p.parse_args(argv)
    if args.train is not None:
        train(args.train)
        return 0
    x_tr, x_te, y_tr, y_te = digits_split()
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or Path(tmp)
        if not (models / "mlp.keras").exists() or not (models / "lstm.keras").exists():
            models.mkdir(parents=True, exist_ok=True)
            train_in_child(models)
        ts = sorted(args.timesteps)
        mlp = compare(models / "mlp.keras", x_tr, x_te, y_te, args.n, ts, args.mismatch)
        print(table(f"MLP (sigmoid + tanh), mismatch={args.mismatch}", mlp, ts))
        lstm = compare(
            models / "lstm.keras", x_tr.reshape(-1, 8, 8), x_te.reshape(-1, 8, 8), y_te, args.n, ts, args.mismatch
        )
        print(table(f"LSTM (digits rows as 8 steps), mismatch={args.mismatch}", lstm, ts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
