"""Rate, population and temporal coding of the SAME trained model: accuracy, timesteps, spikes, energy.

    python examples/temporal_example.py                    # the digits CNN of train_example.py, ~1 min
    python examples/temporal_example.py --model ~/.cache/convert2snn/bench/mnist_lenet_seed0_<key>.keras \\
        --data ../shared/datasets/mnist.npz --limit 2000   # any saved Keras / ONNX model and an MNIST-style .npz

1. Without ``--model``: trains train_example.py's Keras CNN on scikit-learn's digits in a child
   process (TensorFlow never runs in this process) or reuses it (``--reuse``). The model is
   exported to ONNX once, so every conversion below starts from the same graph.
2. Converts it with every coding scheme, each with its own default options:
   rate (IF neurons, T = 4…64), population (n = 16 neurons per unit, T = 1…16),
   temporal single-spike (``code="ttfs"``, K = 4, 8, 16; evaluated at its latency (depth + 1)·K)
   and temporal phase code (``code="phase"``, K = 8, 1…4 cycles).
3. Prints one table — accuracy, ANN − SNN gap, timesteps, spikes per neuron, synaptic operations
   and the 45 nm energy estimate relative to the ANN — and saves a plot of accuracy against
   spikes per neuron (``--plot``) and every number as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_example import default_out_dir, load_data  # noqa: E402  (numpy/sklearn only)

SCHEMES = [  # (label, conversion_type, options, timesteps or "latency")
    ("rate", "rate", {}, [4, 8, 16, 32, 64]),
    ("population n=16", "population", {"n": 16}, [1, 2, 4, 8, 16]),
    ("temporal ttfs K=4", "temporal", {"code": "ttfs", "period": 4}, "latency"),
    ("temporal ttfs K=8", "temporal", {"code": "ttfs", "period": 8}, "latency"),
    ("temporal ttfs K=16", "temporal", {"code": "ttfs", "period": 16}, "latency"),
    ("temporal phase K=8", "temporal", {"code": "phase", "period": 8}, [8, 16, 24, 32]),
]


def ensure_digits_model(out: Path, reuse: bool) -> Path:
    path = out / "model.keras"
    if reuse and path.exists():
        print(f"[1/3] reusing {path}", flush=True)
        return path
    print("[1/3] training train_example.py's CNN on sklearn digits in a child process", flush=True)
    cmd = [sys.executable, str(HERE / "train_example.py"), "--train-child", "--out", str(out), "--epochs", "30"]
    from bridges.keras_to_onnx import run_tensorflow_child  # this side of the child only: torch, no TensorFlow

    run_tensorflow_child(cmd)  # TensorFlow's start-up lines filtered out
    return path


def plot(rows: list[dict], ann_accuracy: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label in dict.fromkeys(r["scheme"] for r in rows):
        pts = [r for r in rows if r["scheme"] == label]
        ax.plot([r["spikes_per_neuron"] for r in pts], [100 * r["accuracy"] for r in pts], "o-", label=label)
        for r in pts:
            ax.annotate(
                f"T={r['timesteps']}",
                (r["spikes_per_neuron"], 100 * r["accuracy"]),
                fontsize=6,
                xytext=(2, -8),
                textcoords="offset points",
            )
    ax.axhline(100 * ann_accuracy, color="k", ls="--", lw=1, label=f"ANN {100 * ann_accuracy:.2f} %")
    ax.axhline(100 * ann_accuracy - 1, color="gray", ls=":", lw=1, label="ANN − 1 pp")
    ax.set_xscale("log")
    ax.set_ylim(max(0, 100 * ann_accuracy - 8), 100 * ann_accuracy + 1.5)
    ax.set_xlabel("spikes per neuron per inference")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a saved Keras (.keras/.h5) or .onnx model (default: train the digits CNN)",
    )
    p.add_argument("--data", default=None, help="MNIST-style .npz for --model (default sklearn digits)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: train_example.py's)")
    p.add_argument("--reuse", action="store_true", help="reuse OUT/model.keras instead of training")
    p.add_argument("--calibration", type=int, default=2000)
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument("--schemes", nargs="*", default=None, help="labels of SCHEMES to run (default all)")
    p.add_argument("--plot", type=Path, default=None, help="default OUT/temporal_vs_rate.png")
    args = p.parse_args(argv)
    out = Path(args.out or default_out_dir())
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = args.model or ensure_digits_model(out, args.reuse)

    import bridges
    import convert2snn  # after training: no TensorFlow in this process

    d = load_data(args.data)
    x_cal = d["x_train"][: args.calibration]
    x, y = d["x_test"][: args.limit], d["y_test"][: args.limit]
    source = model
    if model.suffix != ".onnx":
        source = Path(tempfile.mkdtemp()) / "model.onnx"
        print(f"[2/3] exporting {model.name} to ONNX once (TensorFlow in a child process)", flush=True)
        bridges.to_onnx(str(model), str(source))
    rows, ann_accuracy = [], None
    schemes = [s for s in SCHEMES if args.schemes is None or s[0] in args.schemes]
    print(f"[3/3] {len(schemes)} conversions, {len(x)} test images each", flush=True)
    for label, kind, options, timesteps in schemes:
        start = time.perf_counter()
        snn = convert2snn.convert(str(source), conversion_type=kind, calibration_data=x_cal, progress=False, **options)
        ts = [snn.latency] if timesteps == "latency" else timesteps
        res = snn.evaluate(x, y, timesteps=ts, correlation=False)
        ann_accuracy = res.ann_accuracy
        for i, t in enumerate(res.timesteps):
            rows.append(
                {
                    "scheme": label,
                    "conversion_type": kind,
                    "options": options,
                    "timesteps": t,
                    "accuracy": res.accuracy[i],
                    "ann_accuracy": res.ann_accuracy,
                    "spikes_per_neuron": res.spikes_per_neuron[i],
                    "sops": res.sops[i],
                    "energy_ratio": res.snn_energy_pj[i] / res.ann_energy_pj,
                }
            )
        print(f"      {label}: {time.perf_counter() - start:.1f} s", flush=True)

    dataset = "sklearn digits" if args.data is None else Path(args.data).name
    print()
    print(f"{dataset}, {model.name}: {len(x)} test images; ANN accuracy {100 * ann_accuracy:.2f} %")
    head = (
        f"{'scheme':<20} | {'T':>4} | {'SNN acc %':>9} | {'ANN-SNN pp':>10} | {'spikes/neuron':>13} | {'SOPs':>10} | "
        f"{'E_SNN/E_ANN':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['scheme']:<20} | {r['timesteps']:>4} | {100 * r['accuracy']:>9.2f} | "
            f"{100 * (r['ann_accuracy'] - r['accuracy']):>10.2f} | {r['spikes_per_neuron']:>13.3f} | "
            f"{r['sops']:>10.3g} | {r['energy_ratio']:>11.3f}"
        )
    path = args.plot or out / "temporal_vs_rate.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, ann_accuracy, path, f"{dataset}: accuracy vs spikes, same ANN")
    (out / "temporal_example.json").write_text(
        json.dumps(
            {"dataset": dataset, "model": str(model), "samples": len(x), "ann_accuracy": ann_accuracy, "rows": rows},
            indent=1,
        )
    )
    print(f"\nplot: {path}\nresults: {out / 'temporal_example.json'}\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
