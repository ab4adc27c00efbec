"""NIR export: the accuracy cost of the NIR-exact neurons, and how the consumers run our exports.

1. Accuracy (``--part accuracy``): the benchmark Keras model (`train_models.py`, cached as in
   `bench_accuracy.py`) converted with convert2snn's default neurons (reset by subtraction from θ/2)
   and with the neurons a NIR consumer runs (``nir_target``: 'nir' = Norse / snnTorch, hard reset to 0
   from 0; 'sinabs', reset by subtraction from 0, multi-spike, floor −θ), untuned and tuned for each T
   (``convert2snn.tune``, ``--recipes``, default 'threshold+bias': what NIR can state), at T = 8, 16, 32, 64.
2. Interop (``--part interop``): each conversion exported with ``snn.to_nir(consumer=...)``, imported and
   run in snnTorch, Norse and Sinabs (`convert2snn.tools.nir_consumers`): agreement with our own
   simulation (argmax, relative error of the output, spikes equal per layer and step) and accuracy.

    python benchmarks/bench_nir.py --dataset mnist --part accuracy
    python benchmarks/bench_nir.py --dataset cifar10 --part accuracy --samples 1000
    python benchmarks/bench_nir.py --dataset mnist_avg --part interop --samples 1000 --timesteps 32

``--merge`` adds a run's rows to the JSON of an earlier one (the tuned modes are slow: run them apart).

Prints markdown tables; ``--json`` keeps the rows (default benchmarks/results/nir_<dataset>_<part>.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_accuracy as bench  # noqa: E402  (its model cache, data loaders and clock)

MODES = {  # name → conversion options (tuned modes are tuned for each T)
    "default": {},
    "default tuned": {},
    "nir": {"nir_target": "nir"},
    "nir tuned": {"nir_target": "nir"},
    "sinabs": {"nir_target": "sinabs"},
    "sinabs tuned": {"nir_target": "sinabs"},
}
CONSUMERS = ("snntorch", "norse", "sinabs")


def load(args):
    recipe, default_data, title = bench.DATASETS[args.dataset]
    model_path, _ = bench.ensure_model(recipe, args.data or default_data, args.seed, False)
    onnx_path = model_path.with_suffix(".onnx")
    if not onnx_path.exists():
        import bridges

        bridges.to_onnx(str(model_path), str(onnx_path))
    x_tr, _, x_te, y_te = bench.load_data(args.dataset, args.data or default_data)
    return title, onnx_path, x_tr[: args.calibration], x_te[: args.samples], y_te[: args.samples]


def accuracy(args) -> dict:
    import convert2snn

    title, onnx_path, x_cal, x, y = load(args)
    rows = []
    ann = None
    for mode in args.modes:
        options = MODES[mode]
        with bench.Clock() as clock:
            snn = convert2snn.convert(
                str(onnx_path), calibration_data=x_cal, batch_size=args.batch, progress=args.progress, **options
            )
            if mode.endswith("tuned"):
                acc = []
                for t in args.timesteps:
                    tuned = convert2snn.tune(snn, x_cal, timesteps=t, recipes=args.recipes)
                    res = tuned.evaluate(x, y, timesteps=[t], batch_size=args.batch, correlation=False)
                    acc.append(res.accuracy[0])
                    bench.log(f"  {mode} T={t}: {100 * acc[-1]:.2f} % (recipes {tuned.report.tuning['recipes']})")
            else:
                res = snn.evaluate(x, y, timesteps=list(args.timesteps), batch_size=args.batch, correlation=False)
                acc = list(res.accuracy)
        ann = res.ann_accuracy
        rows.append({"mode": mode, "options": options, "accuracy": acc, "seconds": clock.wall})
        bench.log(f"{title} {mode}: " + " ".join(f"T={t}: {100 * a:.2f}" for t, a in zip(args.timesteps, acc)))
    return {"title": title, "samples": len(x), "timesteps": list(args.timesteps), "ann_accuracy": ann, "rows": rows}


def merge_rows(earlier: list[dict], new: list[dict]) -> list[dict]:
    """``earlier`` rows with ``new`` ones added, a new row replacing an earlier one of the same mode (and
    consumer); the accuracy part's rows in MODES order, interop rows in run order."""
    key = lambda r: (r["mode"], r.get("consumer"), r.get("own_neurons"))  # noqa: E731
    replaced = {key(r) for r in new}
    order = {mode: i for i, mode in enumerate(MODES)}
    rows = [r for r in earlier if key(r) not in replaced] + new
    return sorted(rows, key=lambda r: order.get(r["mode"], len(order)))


def accuracy_table(results: dict) -> str:
    ts = results["timesteps"]
    lines = [
        f"{results['title']}: accuracy (%) on {results['samples']} test images; "
        f"ANN {100 * results['ann_accuracy']:.2f} %",
        "",
        "| neurons | " + " | ".join(f"T={t}" for t in ts) + " |",
        "|---|" + "---|" * len(ts),
    ]
    default = next((r for r in results["rows"] if r["mode"] == "default"), None)
    for row in results["rows"]:
        cells = []
        for k, a in enumerate(row["accuracy"]):
            delta = "" if default is None or row is default else f" ({100 * (a - default['accuracy'][k]):+.2f})"
            cells.append(f"{100 * a:.2f}{delta}")
        lines.append(f"| {row['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(bench.DATASETS), default="mnist")
    p.add_argument("--data", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", choices=("accuracy", "interop"), default="accuracy")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--timesteps", nargs="+", type=int, default=[8, 16, 32, 64])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--calibration", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument(
        "--interop-batch", type=int, default=100, help="images per consumer run (Sinabs runs all steps at once)"
    )
    p.add_argument("--recipes", default="threshold+bias", help="recipes of the tuned modes (convert2snn.tune)")
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--merge", action="store_true", help="add these rows to --json's (same model and images), replacing equal modes"
    )
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.part == "interop" and len(args.timesteps) != 1:
        p.error("--part interop runs one T: give --timesteps a single value (e.g. --timesteps 32)")
    out = args.json or HERE / "results" / f"nir_{args.dataset}_{args.part}.json"
    earlier = json.loads(out.read_text()) if args.merge and out.exists() else None
    if earlier is not None and (earlier["samples"], earlier["timesteps"]) != (args.samples, list(args.timesteps)):
        p.error(f"--merge: {out} holds {earlier['samples']} images at T={earlier['timesteps']}; ask for the same")
    results = accuracy(args) if args.part == "accuracy" else interop(args)
    if earlier is not None:
        results["rows"] = merge_rows(earlier["rows"], results["rows"])
    import torch

    results["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(accuracy_table(results) if args.part == "accuracy" else interop_table(results))
    return 0


def interop(args) -> dict:
    import warnings

    import torch

    import convert2snn
    from convert2snn.tools import nir_consumers

    title, onnx_path, x_cal, x, y = load(args)
    t = args.timesteps[0]
    convert = lambda **o: convert2snn.convert(  # noqa: E731
        str(onnx_path), calibration_data=x_cal, batch_size=args.batch, progress=False, **o
    )
    runs = [("default", None, c, False) for c in CONSUMERS]
    runs += [("default", None, c, True) for c in ("snntorch", "sinabs")]
    runs += [(f"nir_target={c}", c, c, False) for c in CONSUMERS]
    rows, models = [], {}
    for mode, target, consumer, own in runs:
        reason = nir_consumers.unusable(consumer)
        if reason is not None:
            bench.log(f"  {consumer} skipped: {reason}")
            continue
        snn = models.get(target) or models.setdefault(target, convert(nir_target=target))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            graph = snn.to_nir(consumer=consumer)
        ours_pred, theirs_pred, agree, errors, mismatch = [], [], [], [], {}
        with bench.Clock() as clock:
            for start in range(0, len(x), args.interop_batch):
                xb = torch.as_tensor(snn.network_inputs(x[start : start + args.interop_batch]))
                xs = xb.unsqueeze(0).expand(t, *xb.shape).contiguous()
                readout, spikes = nir_consumers.reference(snn.network, xs)
                run = nir_consumers.simulate(consumer, graph, xs, own_neurons=own)
                a = nir_consumers.compare(run, readout, spikes)
                agree.append(a.argmax_agreement * len(xb))
                errors.append(a.relative_error)
                for layer, m in a.spike_mismatch.items():
                    mismatch[layer] = max(mismatch.get(layer, 0.0), m)
                ours_pred.append(readout.argmax(-1))
                theirs_pred.append(run.outputs.mean(0).argmax(-1))
        labels = torch.as_tensor(np.asarray(y))
        row = {
            "mode": mode,
            "consumer": consumer,
            "own_neurons": own,
            "argmax_agreement": sum(agree) / len(x),
            "relative_error_max": max(errors),
            "spikes_exact": all(m == 0 for m in mismatch.values()),
            "spike_mismatch_max": max(mismatch.values()),
            "accuracy_ours": float((torch.cat(ours_pred) == labels).float().mean()),
            "accuracy_consumer": float((torch.cat(theirs_pred) == labels).float().mean()),
            "seconds": clock.wall,
        }
        rows.append(row)
        bench.log(f"  {mode} in {consumer}{' (own neurons)' if own else ''}: {row}")
    return {"title": title, "samples": len(x), "timesteps": [t], "rows": rows}


def interop_table(results: dict) -> str:
    t = results["timesteps"][0]
    lines = [
        f"{results['title']}: {results['samples']} test images at T={t}, run in each consumer from our NIR export",
        "",
        "| conversion | consumer | spikes equal (every layer, step) | argmax agreement | relative error (max over "
        "batches) | accuracy ours | accuracy consumer |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        consumer = r["consumer"] + (" (own neurons)" if r["own_neurons"] else "")
        exact = "yes" if r["spikes_exact"] else f"no ({100 * r['spike_mismatch_max']:.2g} % differ)"
        lines.append(
            f"| {r['mode']} | {consumer} | {exact} | {100 * r['argmax_agreement']:.2f} % | "
            f"{r['relative_error_max']:.2e} | {100 * r['accuracy_ours']:.2f} | {100 * r['accuracy_consumer']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    raise SystemExit(main())
