r"""Conversion, then fine-tuning by backpropagation through time: accuracy at few timesteps before and after.

    python benchmarks/bench_finetune.py --dataset mnist --timesteps 1 2 --epochs 3
    python benchmarks/bench_finetune.py --dataset cifar10 --timesteps 1 2 4 8 --epochs 1 --train-samples 10000

For every T: the benchmark Keras model (`train_models.py`, cached as in `bench_accuracy.py`) is converted
with the default options (or, with ``--start tuned``, tuned for T with ``recipes="auto"``, issue 17's
post-training recipes), its accuracy at T is measured on ``--samples`` test images, then a copy is
fine-tuned at T (`SpikingModel.fine_tune`: Adam, cosine schedule, ATan surrogate) on ``--train-samples``
training images per epoch for ``--epochs`` epochs, with the test accuracy at T after every epoch and the
wall time of every epoch. Prints a table (accuracy vs the ANN's on the same images, ratios of time per
epoch against one ANN epoch on the same images measured in the same run), writes the JSON and a plot
(``benchmarks/results/<dataset>_finetune.json``, ``benchmarks/<dataset>_finetune.png``).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_accuracy as bench  # noqa: E402  (its model cache, data loaders and clock)


def ann_epoch_seconds(snn, x: np.ndarray, y: np.ndarray, batch: int, lr: float) -> float:
    """Seconds of one training epoch of a copy of the clean torch ANN on the same images (the reference)."""
    import torch

    ann = copy.deepcopy(snn.ann).train()
    xt, yt = snn._inputs(x, check_range=False), torch.from_numpy(y)
    opt = torch.optim.Adam(ann.parameters(), lr=lr)
    start = time.perf_counter()
    for i in range(0, len(xt), batch):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ann(xt[i : i + batch]), yt[i : i + batch]).backward()
        opt.step()
    return time.perf_counter() - start


def run(args) -> dict:
    import torch

    import convert2snn

    recipe, default_data, title = bench.DATASETS[args.dataset]
    model_path, trained = bench.ensure_model(recipe, args.data or default_data, args.seed, False)
    onnx_path = model_path.with_suffix(".onnx")
    if not onnx_path.exists():
        import bridges

        bridges.to_onnx(str(model_path), str(onnx_path))
    x_tr, y_tr, x_te, y_te = bench.load_data(args.dataset, args.data or default_data)
    x_cal, x_train, y_train = x_tr[: args.calibration], x_tr[: args.train_samples], y_tr[: args.train_samples]
    x_test, y_test = x_te[: args.samples], y_te[: args.samples]
    torch.set_num_threads(torch.get_num_threads())
    base = convert2snn.convert(
        str(onnx_path),
        calibration_data=x_cal,
        batch_size=args.batch,
        progress=args.progress,
        nir_target=args.nir_target,
    )
    ann_acc = float((base.ann_predict(x_test).argmax(1) == y_test).mean())
    ann_epoch = ann_epoch_seconds(base, x_train, y_train, args.fine_tune_batch, args.lr)
    bench.log(
        f"{title}: ANN {ann_acc:.2%} on {len(x_test)} test images; one ANN epoch on {len(x_train)}: {ann_epoch:.1f} s"
    )
    rows = []
    for t in args.timesteps:
        start = base
        tuned_s = 0.0
        if args.start == "tuned":
            with bench.Clock() as clock:
                start = convert2snn.tune(base, x_cal, timesteps=t, recipes=args.recipes)
            tuned_s = clock.wall
        snn = copy.deepcopy(start)
        before = float(snn.evaluate(x_test, y_test, timesteps=t, correlation=False).accuracy[0])
        with bench.Clock() as clock:
            result = snn.fine_tune(
                x_train,
                y_train,
                timesteps=t,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.fine_tune_batch,
                learn_thresholds=args.learn_thresholds,
                validation_data=(x_test, y_test),
                progress=args.progress,
            )
        after = [e.validation_accuracy for e in result.epochs]
        row = {
            "timesteps": t,
            "start": args.start,
            "epochs": args.epochs,
            "lr": args.lr,
            "ann_epoch_s": ann_epoch,  # the reference measured in the same run (merged runs keep their own)
            "tune_s": tuned_s,
            "before": before,
            "after_epoch": after,
            "epoch_s": [e.seconds for e in result.epochs],
            "train_loss": [e.loss for e in result.epochs],
            "micro_batch": result.micro_batch,
            "wall_s": clock.wall,
            "cpu_s": clock.cpu,
        }
        rows.append(row)
        bench.log(
            f"T={t}: {before:.2%} → "
            + " → ".join(f"{a:.2%}" for a in after)
            + f" (ANN {ann_acc:.2%}; {np.mean(row['epoch_s']):.0f} s/epoch, micro-batch {result.micro_batch})"
        )
    return {
        "dataset": args.dataset,
        "title": title,
        "keras_accuracy": trained.get("test_accuracy"),
        "ann_accuracy": ann_acc,
        "samples": len(x_test),
        "train_samples": len(x_train),
        "epochs": args.epochs,
        "lr": args.lr,
        "batch": args.fine_tune_batch,
        "learn_thresholds": args.learn_thresholds,
        "nir_target": args.nir_target,
        "recipes": args.recipes,
        "ann_epoch_s": ann_epoch,
        "rows": rows,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "convert2snn": convert2snn.__version__,
    }


def table(results: dict) -> str:
    epochs = max(len(r["after_epoch"]) for r in results["rows"])
    head = "| T | ANN | converted | " + " | ".join(f"fine-tuned {e} ep" for e in range(1, epochs + 1))
    head += " | gap to ANN | s / epoch | × ANN epoch |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results["rows"]:
        seconds = float(np.mean(r["epoch_s"]))
        lines.append(
            f"| {r['timesteps']} | {results['ann_accuracy']:.2%} | {r['before']:.2%} | "
            + " | ".join(f"{a:.2%}" for a in r["after_epoch"])
            + " | –" * (epochs - len(r["after_epoch"]))
            + f" | {100 * (r['after_epoch'][-1] - results['ann_accuracy']):+.2f} pp | {seconds:.0f} | "
            f"{seconds / r.get('ann_epoch_s', results['ann_epoch_s']):.1f} |"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [r["timesteps"] for r in results["rows"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.axhline(100 * results["ann_accuracy"], color="black", lw=1, ls="--", label="ANN")
    ax.plot(ts, [100 * r["before"] for r in results["rows"]], "o-", label=f"converted ({results['rows'][0]['start']})")
    for e in range(max(len(r["after_epoch"]) for r in results["rows"])):
        reached = [r for r in results["rows"] if len(r["after_epoch"]) > e]
        ax.plot(
            [r["timesteps"] for r in reached],
            [100 * r["after_epoch"][e] for r in reached],
            "s-",
            label=f"fine-tuned, {e + 1} epoch(s)",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set_xlabel("timesteps T (trained and tested at T)")
    ax.set_ylabel(f"test accuracy (%), {results['samples']} images")
    ax.set_title(f"{results['title']}: fine-tuning at T\n({results['train_samples']} training images per epoch)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--data", type=Path, default=None, help="the dataset's .npz (default ../shared/datasets/...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-samples", type=int, default=60000, help="training images per epoch (the first N)")
    p.add_argument("--samples", type=int, default=2000, help="test images for the accuracy at T")
    p.add_argument("--calibration", type=int, default=10000, help="training images for calibration")
    p.add_argument(
        "--start", choices=["default", "tuned"], default="default", help="fine-tune the default or the tuned conversion"
    )
    p.add_argument("--recipes", default="auto", help="recipes of --start tuned (convert2snn.tune)")
    p.add_argument(
        "--nir-target",
        choices=["nir", "norse", "snntorch", "sinabs"],
        default=None,
        help="convert with the neurons a NIR consumer runs (an exact NIR export; bench_nir.py)",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fine-tune-batch", type=int, default=64)
    p.add_argument("--learn-thresholds", action="store_true")
    p.add_argument("--batch", type=int, default=250, help="simulation batch size")
    p.add_argument("--progress", action="store_true")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON path (default benchmarks/results/<dataset>_finetune.json)"
    )
    p.add_argument("--merge", action="store_true", help="add these rows to --out's (same model), replacing equal T")
    args = p.parse_args(argv)
    out = args.out or HERE / "results" / f"{args.dataset}_finetune.json"
    results = run(args)
    if args.merge and out.exists():
        earlier = json.loads(out.read_text())
        new = {r["timesteps"] for r in results["rows"]}
        results["rows"] = sorted(
            [r for r in earlier["rows"] if r["timesteps"] not in new] + results["rows"], key=lambda r: r["timesteps"]
        )
    print(table(results))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.parent.parent / f"{args.dataset}_finetune.png" if args.out is None else out.with_suffix(".png"))
    bench.log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
