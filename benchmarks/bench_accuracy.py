"""Accuracy benchmark: a Keras CNN → SNN with every convert2snn code, versus SpikingJelly's ann2snn.

    python benchmarks/bench_accuracy.py --dataset mnist     # LeNet-style CNN on MNIST
    python benchmarks/bench_accuracy.py --dataset cifar10   # VGG-style CNN on CIFAR-10 (JPEG-decoded copy)
    python benchmarks/bench_accuracy.py --dataset cifar10_resnet   # ResNet-20 on the same CIFAR-10 copy
    python benchmarks/bench_accuracy.py --samples 1000 --ablation-samples 500 --max-T 64   # a quick look

Results go to ``benchmarks/results/<dataset>_results.json`` and ``<dataset>_accuracy_vs_T.png``.

What it does (all in one run, one process for the SNN side; TensorFlow only in child processes):

1. Trains the Keras model in a child process (`benchmarks/train_models.py`, seeded), cached in
   ``~/.cache/convert2snn/bench`` under a key that hashes the training script, so a change of the
   recipe retrains. The ONNX export is cached next to it.
2. convert2snn rate conversion: the default settings on the full test set; an ablation grid
   (percentile ∈ {99.9, 99.99, 100} × per_channel off/on × v_init ∈ {0.5, 0}) on the first
   ``--ablation-samples`` test images; the best grid config (highest mean accuracy over
   T = 1…16 on that subset) is then re-run on the full test set. One simulation per config up to
   max T serves every T.
3. convert2snn's other codes with their defaults, same ANN and calibration images: population
   (n = 16) at every T, temporal single-spike (``code="ttfs"``, K = 4, 8, 16, 32, each at its latency
   (depth + 1)·K) and temporal phase (``code="phase"``, K = 8) at every T.
4. convert2snn tuned for each target T (``--recipe-T``): the default conversion tuned with
   `convert2snn.tune` for every recipe set of ``--recipes`` (``auto``: the combination that agrees
   best with the ANN on the calibration samples), each evaluated at its own T; and burst spikes
   (``max_spikes_per_step`` ∈ ``--bursts``, untuned, every T), spikes counted as spikes.
5. SpikingJelly 2.0's own converter (`ann2snn.Converter` + `RateCodingRecipe` /
   `LocalThresholdBalancingRecipe`) on the SAME torch ANN (convert2snn's bridged clean graph as a
   plain `nn.Sequential` of the same modules, final softmax dropped), the same calibration images,
   evaluated as its tutorial does: `reset_net` per batch, the image fed at every step, outputs
   accumulated over T.
6. Timings: conversion time, simulation throughput (images/s at T = 32, same batch size), and
   the ANN's throughput for the ratio t_SNN(T) / (T · t_ANN).

Outputs: ``--json`` (every number), ``--plot`` (accuracy vs T), ``<dataset>_recipes.png`` (accuracy
vs T and vs spikes per neuron: every recipe beside SpikingJelly's), and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DATASETS = {  # dataset → (Keras model recipe in train_models.py, default data file, plot title)
    "mnist": ("mnist_lenet", ROOT.parent / "shared" / "datasets" / "mnist.npz", "LeNet-style CNN on MNIST"),
    "mnist_avg": (
        "mnist_lenet_avg",
        ROOT.parent / "shared" / "datasets" / "mnist.npz",
        "LeNet-style CNN with average pooling on MNIST",
    ),
    "cifar10": (
        "cifar10_vgg",
        ROOT.parent / "shared" / "datasets" / "cifar10_jpeg.npz",
        "VGG-style CNN on CIFAR-10 (JPEG-decoded copy)",
    ),
    "cifar10_resnet": (
        "cifar10_resnet20",
        ROOT.parent / "shared" / "datasets" / "cifar10_jpeg.npz",
        "ResNet-20 on CIFAR-10 (JPEG-decoded copy)",
    ),
}
DEFAULT_T = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TTFS_PERIODS = (4, 8, 16, 32)
sys.path.insert(0, str(HERE))
import train_models  # noqa: E402  (numpy only at import time; Keras is imported in its main())


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convert2snn" / "bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Clock:
    """Wall and CPU time of a block (the machine may be shared: CPU time is the steadier number)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


# -- 1. the Keras model (child process) ---------------------------------------------------------
def ensure_model(model: str, data: Path, seed: int, retrain: bool) -> tuple[Path, dict]:
    script = HERE / "train_models.py"
    path = cache_dir() / f"{model}_seed{seed}_{train_models.recipe_key(model)}.keras"
    if retrain or not path.exists():
        log(f"training {model} in a child process → {path}")
        from bridges.keras_to_onnx import run_tensorflow_child

        run_tensorflow_child(
            [sys.executable, str(script), model, "--data", str(data), "--out", str(path), "--seed", str(seed)]
        )
    else:
        log(f"using cached model {path}")
    return path, json.loads(Path(str(path) + ".json").read_text())


def load_data(dataset: str, path: Path):
    """The arrays the Keras model was trained on (train_models.py's loaders). The CIFAR-10 copy is
    sorted by class, so its splits are shuffled with a fixed seed: calibration images and test
    subsets are then class-balanced (MNIST keeps its original order)."""
    x_tr, y_tr, x_te, y_te = (train_models.load_mnist if dataset.startswith("mnist") else train_models.load_cifar10)(
        str(path)
    )
    if dataset.startswith("cifar10"):
        rng = np.random.default_rng(0)
        tr, te = rng.permutation(len(x_tr)), rng.permutation(len(x_te))
        x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_te[te], y_te[te]
    return x_tr, y_tr, x_te, y_te


# -- 2. convert2snn ---------------------------------------------------------------------------------
def config_name(cfg: dict) -> str:
    return f"p={cfg['percentile']:g} {'per-channel' if cfg['per_channel'] else 'per-layer'} v_init={cfg['v_init']:g}"


DEFAULT_CFG = {"percentile": 99.9, "per_channel": True, "v_init": 0.5}


def grid() -> list[dict]:
    return [
        {"percentile": p, "per_channel": c, "v_init": v}
        for v in (0.5, 0.0)
        for c in (False, True)
        for p in (99.9, 99.99, 100.0)
    ]


def run_ours(source, cfg: dict, x_cal, x, y, timesteps, batch: int, progress: bool) -> dict:
    import convert2snn

    with Clock() as conv:
        snn = convert2snn.convert(
            str(source), conversion_type="rate", calibration_data=x_cal, batch_size=batch, progress=progress, **cfg
        )
    with Clock() as sim:
        res = snn.evaluate(x, y, timesteps=timesteps, batch_size=batch, correlation=False)
    log(
        f"  ours {config_name(cfg)}: convert {conv.wall:.1f} s, simulate {len(x)} images to T={max(timesteps)} "
        f"{sim.wall:.0f} s (CPU {sim.cpu:.0f} s); acc@T "
        + " ".join(f"{t}:{100 * a:.2f}" for t, a in zip(res.timesteps, res.accuracy))
    )
    return {
        "config": cfg,
        "name": config_name(cfg),
        "samples": len(x),
        "timesteps": res.timesteps,
        "accuracy": res.accuracy,
        "ann_accuracy": res.ann_accuracy,
        "spikes_per_neuron": res.spikes_per_neuron,
        "layer_spikes_per_neuron": res.layer_spikes_per_neuron,
        "neurons": res.neurons,
        "convert_wall_s": conv.wall,
        "convert_cpu_s": conv.cpu,
        "simulate_wall_s": sim.wall,
        "simulate_cpu_s": sim.cpu,
        "scales": snn.report.scales,
    }, snn


def code_configs(timesteps) -> list[tuple[str, str, dict, list[int] | None]]:
    """(name, conversion_type, options, timesteps; None = at the latency) of the other codes."""
    rows = [("population n=16", "population", {"n": 16}, [t for t in timesteps if t <= 64])]
    rows += [(f"temporal ttfs K={k}", "temporal", {"code": "ttfs", "period": k}, None) for k in TTFS_PERIODS]
    rows.append(("temporal phase K=8", "temporal", {"code": "phase", "period": 8}, [t for t in timesteps if t >= 8]))
    return rows


def run_code(source, name: str, kind: str, options: dict, x_cal, x, y, timesteps, batch: int, progress: bool) -> dict:
    import convert2snn

    with Clock() as conv:
        snn = convert2snn.convert(
            str(source), conversion_type=kind, calibration_data=x_cal, batch_size=batch, progress=progress, **options
        )
    ts = timesteps or [snn.latency]
    if max(ts) > max(DEFAULT_T):
        log(f"  {name}: latency {max(ts)} beyond max T, skipped")
        return None
    with Clock() as sim:
        res = snn.evaluate(x, y, timesteps=ts, batch_size=batch, correlation=False)
    log(
        f"  {name}: convert {conv.wall:.1f} s, simulate {len(x)} images to T={max(ts)} {sim.wall:.0f} s; "
        + " ".join(
            f"T={t}: {100 * a:.2f} % ({s:.3g} spikes/neuron)"
            for t, a, s in zip(res.timesteps, res.accuracy, res.spikes_per_neuron)
        )
    )
    return {
        "name": name,
        "conversion_type": kind,
        "options": options,
        "samples": len(x),
        "timesteps": res.timesteps,
        "accuracy": res.accuracy,
        "spikes_per_neuron": res.spikes_per_neuron,
        "sops": res.sops,
        "energy_ratio": [e / res.ann_energy_pj for e in res.snn_energy_pj],
        "latency": snn.latency,
        "convert_wall_s": conv.wall,
        "simulate_wall_s": sim.wall,
        "simulate_cpu_s": sim.cpu,
    }


def run_tuned(snn, calibration: str, x_cal, x, y, targets, batch: int) -> dict:
    """``snn`` tuned for each T of ``targets`` with ``calibration`` recipes, each evaluated at its own T."""
    import convert2snn

    rows = []
    for t in targets:
        with Clock() as tuning:
            tuned = convert2snn.tune(snn, x_cal, timesteps=t, recipes=calibration)
        res = tuned.evaluate(x, y, timesteps=[t], batch_size=batch, correlation=False)
        info = tuned.report.tuning
        rows.append(
            {
                "T": t,
                "accuracy": res.accuracy[0],
                "spikes_per_neuron": res.spikes_per_neuron[0],
                "recipes": info["recipes"],
                "agreement": info["agreement"],
                "samples": info["samples"],
                "seconds": info["seconds"],
                "tune_wall_s": tuning.wall,
            }
        )
        log(
            f"  tuned {calibration} for T={t}: {100 * res.accuracy[0]:.2f} % ({res.spikes_per_neuron[0]:.3g} "
            f"spikes/neuron), recipes {'+'.join(info['recipes']) or 'none'}, tuning {tuning.wall:.0f} s on "
            f"{info['samples']} samples"
        )
    return {
        "name": f"tuned for T, {calibration}",
        "calibration": calibration,
        "samples": len(x),
        "timesteps": [r["T"] for r in rows],
        "accuracy": [r["accuracy"] for r in rows],
        "spikes_per_neuron": [r["spikes_per_neuron"] for r in rows],
        "per_T": rows,
    }


def run_burst(source, burst: int, x_cal, x, y, timesteps, batch: int, progress: bool) -> dict:
    """The default conversion with bursts of up to ``burst`` spikes a step, untuned, at every T."""
    row, _ = run_ours(source, {**DEFAULT_CFG, "max_spikes_per_step": burst}, x_cal, x, y, timesteps, batch, progress)
    row["name"] = f"burst Γ={burst}"
    return row


# -- 3. SpikingJelly ------------------------------------------------------------------------------------
def for_spikingjelly(ann):
    """convert2snn's clean ANN for SpikingJelly's converter, without the final softmax (its step-mode
    adapter rejects the traced softmax function): a chain as a plain nn.Sequential of the SAME modules,
    any other graph (residual networks) as a copy of the fx graph."""
    try:
        return as_sequential(ann)
    except ValueError:
        from bridges.modules import OutputSoftmax, Pad

        graph = copy.deepcopy(ann)
        for node in graph.graph.nodes:
            if node.op != "call_module":
                continue
            module = graph.get_submodule(node.target)
            if isinstance(module, OutputSoftmax):
                node.replace_all_uses_with(node.args[0])
                graph.graph.erase_node(node)
            elif isinstance(module, Pad):
                _fold_pad_into_conv(graph, node, module)
        graph.recompile()
        graph.delete_all_unused_submodules()
        return graph.eval()


def _fold_pad_into_conv(graph, node, pad) -> None:
    """SpikingJelly's step-mode adapter takes no padding module. Keras "same" padding of a stride-2
    Conv is asymmetric — Pad(0, p, 0, p) then Conv(k, padding 0) — and equals, exactly, a Conv with
    a (k + p)-kernel, symmetric padding p and the first p rows and columns of its kernel zero."""
    import torch
    from torch import nn

    (user,) = node.users
    conv = graph.get_submodule(user.target)
    left, right, top, bottom = pad.pads
    p = right
    if (left, top, bottom) != (0, 0, p) or pad.value != 0 or conv.padding != (0, 0) or conv.groups != 1:
        raise ValueError(f"for_spikingjelly: cannot fold {pad} into {conv}")
    k = conv.kernel_size
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, (k[0] + p, k[1] + p), conv.stride, p, bias=conv.bias is not None
    )
    with torch.no_grad():
        folded.weight.zero_()
        folded.weight[:, :, p:, p:] = conv.weight
        if conv.bias is not None:
            folded.bias.copy_(conv.bias)
    graph.add_submodule(user.target, folded)
    node.replace_all_uses_with(node.args[0])
    graph.graph.erase_node(node)


def as_sequential(ann):
    """convert2snn's clean ANN (a chain fx graph) as a plain nn.Sequential of the SAME modules, without the
    final softmax: SpikingJelly's step-mode adapter rejects the traced softmax function."""
    from torch import nn

    from bridges.modules import OutputSoftmax

    mods = []
    prev = None
    for node in ann.graph.nodes:
        if node.op == "placeholder":
            prev = node
        elif node.op == "call_module":
            if len(node.args) != 1 or node.args[0] is not prev or node.kwargs:
                raise ValueError(f"not a chain at {node.name}")
            m = ann.get_submodule(node.target)
            if not isinstance(m, OutputSoftmax):
                mods.append((node.target, copy.deepcopy(m)))
            prev = node
        elif node.op == "output":
            if node.args[0] is not prev:
                raise ValueError("not a chain at the output")
        else:
            raise ValueError(f"unexpected node {node.op} {node.target}")
    return nn.Sequential(__import__("collections").OrderedDict(mods)).eval()


SJ_METHODS = {
    "SJ max": dict(recipe="rate", mode="max"),
    "SJ 99.9%": dict(recipe="rate", mode="99.9%"),
    "SJ 99.9% channel-wise, half-threshold, pool-before-IF": dict(
        recipe="rate", mode="99.9%", channel_wise=True, half_threshold=True, pre_spike_maxpool=True
    ),
    "SJ local threshold balancing": dict(recipe="ltb"),
}


def sj_convert(seq, method: dict, calib_batches):
    from spikingjelly.activation_based import ann2snn

    kw = dict(method)
    recipe = kw.pop("recipe")
    if recipe == "rate":
        r = ann2snn.RateCodingRecipe(dataloader=calib_batches, **kw)
    else:
        r = ann2snn.LocalThresholdBalancingRecipe(dataloader=calib_batches, **kw)
    return ann2snn.Converter(r, device="cpu").convert(copy.deepcopy(seq))


def sj_evaluate(net, x, y, timesteps, batch: int) -> tuple[list[float], list[float]]:
    """SpikingJelly's tutorial evaluation: reset_net per batch, feed the image at every step, sum the outputs.
    Also counts spikes of its neuron modules (spikes per neuron per image, up to each T)."""
    import torch
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.neuron import BaseNode

    steps, wanted = max(timesteps), sorted(timesteps)
    correct = np.zeros(steps)
    spikes_t = np.zeros(steps)
    neurons = 0
    state = {"t": 0, "spikes": 0.0}
    hooks = []
    for m in net.modules():
        if isinstance(m, BaseNode):
            hooks.append(
                m.register_forward_hook(
                    lambda _m, _i, out: state.__setitem__("spikes", state["spikes"] + float(out.sum()))
                )
            )
    net.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(x), batch):
                img = torch.as_tensor(x[s : s + batch])
                lab = torch.as_tensor(y[s : s + batch])
                functional.reset_net(net)
                out = None
                for t in range(steps):
                    state["spikes"] = 0.0
                    o = net(img)
                    out = o if out is None else out + o
                    correct[t] += float((out.argmax(1) == lab).sum())
                    spikes_t[t] += state["spikes"]
                functional.reset_net(net)
    finally:
        for h in hooks:
            h.remove()
    # neurons per image: one forward with counting of output sizes
    with torch.no_grad():
        sizes = []
        hs = [
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out[0].numel()))
            for m in net.modules()
            if isinstance(m, BaseNode)
        ]
        functional.reset_net(net)
        net(torch.as_tensor(x[:1]))
        functional.reset_net(net)
        for h in hs:
            h.remove()
        neurons = sum(sizes)
    cum = np.cumsum(spikes_t)
    acc = [float(correct[t - 1] / len(x)) for t in wanted]
    spn = [float(cum[t - 1] / (len(x) * neurons)) for t in wanted]
    return acc, spn


def run_sj(name, seq, method, calib_batches, x, y, timesteps, batch) -> dict:
    with Clock() as conv:
        net = sj_convert(seq, method, calib_batches)
    with Clock() as sim:
        acc, spn = sj_evaluate(net, x, y, timesteps, batch)
    log(
        f"  {name}: convert {conv.wall:.1f} s, simulate {len(x)} images to T={max(timesteps)} {sim.wall:.0f} s "
        f"(CPU {sim.cpu:.0f} s); acc@T " + " ".join(f"{t}:{100 * a:.2f}" for t, a in zip(sorted(timesteps), acc))
    )
    return {
        "name": name,
        "method": method,
        "samples": len(x),
        "timesteps": sorted(timesteps),
        "accuracy": acc,
        "spikes_per_neuron": spn,
        "convert_wall_s": conv.wall,
        "convert_cpu_s": conv.cpu,
        "simulate_wall_s": sim.wall,
        "simulate_cpu_s": sim.cpu,
    }, net


# -- 4. throughput ----------------------------------------------------------------------------------------
def throughput(fn, n: int, repeat: int = 2) -> dict:
    """Best of ``repeat`` runs of ``fn`` (wall and CPU seconds) → images/s."""
    best = None
    for _ in range(repeat):
        with Clock() as c:
            fn()
        best = c if best is None or c.wall < best.wall else best
    return {
        "images": n,
        "wall_s": best.wall,
        "cpu_s": best.cpu,
        "images_per_s": n / best.wall,
        "images_per_cpu_s": n / max(best.cpu, 1e-9),
    }


# -- output -------------------------------------------------------------------------------------------------
def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.2), dpi=90)
    styles = {"ours": "-", "sj": "--"}
    for kind in ("ours", "sj"):
        for r in results[kind]:
            if r["samples"] != results["test_samples"]:
                continue
            ax.plot(
                r["timesteps"],
                [100 * a for a in r["accuracy"]],
                styles[kind],
                marker="o",
                ms=3,
                label=("convert2snn " if kind == "ours" else "") + r["name"],
            )
    for r in results.get("codes", []):
        style = "o" if r["latency"] else "-."
        ax.plot(
            r["timesteps"],
            [100 * a for a in r["accuracy"]],
            style,
            marker="s" if r["latency"] else "^",
            ms=5,
            label="convert2snn " + r["name"] + (" (at its latency)" if r["latency"] else ""),
        )
    ax.axhline(
        100 * results["ann_accuracy"], color="k", lw=1, ls=":", label=f"ANN {100 * results['ann_accuracy']:.2f} %"
    )
    ts = results["timesteps"]
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts)
    ax.set_xticklabels([str(t) for t in ts])
    ax.set_xlabel("timesteps T")
    ax.set_ylabel(f"{results.get('dataset', 'mnist').upper()} test accuracy (%)")
    ax.set_ylim(max(0, min(90, ax.get_ylim()[0])), 100)
    ax.set_title(
        f"{results.get('title', 'LeNet-style CNN on MNIST')} ({results['test_samples']} test images)", fontsize=9
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # beside the data
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def plot_recipes(results: dict, path: Path) -> None:
    """Accuracy vs T and accuracy vs spikes per neuron: the recipes, bursts and SpikingJelly's recipes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = results["test_samples"]
    series = [("ours default", r, "-") for r in results["ours"][:1]]
    series += [("ours " + r["name"], r, "-") for r in results.get("recipes", []) + results.get("bursts", [])]
    series += [(r["name"].replace("SJ ", "SpikingJelly ", 1), r, "--") for r in results["sj"]]
    fig, (by_t, by_spikes) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=90)
    for label, r, style in series:
        if r["samples"] != full:
            continue
        acc = [100 * a for a in r["accuracy"]]
        line = by_t.plot(r["timesteps"], acc, style, marker="o", ms=3, label=label)[0]
        by_spikes.plot(r["spikes_per_neuron"], acc, style, marker="o", ms=3, color=line.get_color())
    for ax in (by_t, by_spikes):
        ax.axhline(100 * results["ann_accuracy"], color="k", lw=1, ls=":")
        ax.grid(True, alpha=0.3)
        ax.set_ylabel("test accuracy (%)")
    by_t.set_xscale("log", base=2)
    ts = results["timesteps"]
    by_t.set_xticks(ts)
    by_t.set_xticklabels([str(t) for t in ts])
    by_t.set_xlabel("timesteps T")
    by_spikes.set_xscale("log")
    by_spikes.set_xlabel("spikes per neuron per image")
    fig.suptitle(
        f"{results.get('title', '')}: recipes for few timesteps ({full} test images; ANN "
        f"{100 * results['ann_accuracy']:.2f} %, dotted)",
        fontsize=9,
    )
    fig.legend(*by_t.get_legend_handles_labels(), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def markdown(results: dict) -> str:
    ts = results["timesteps"]
    ann = 100 * results["ann_accuracy"]
    head = "| method | n | " + " | ".join(f"T={t}" for t in ts) + " |"
    sep = "|---|---:|" + "---:|" * len(ts)
    lines = [
        f"ANN (clean torch graph): **{ann:.2f} %** on {results['test_samples']} test images "
        f"(Keras: {100 * results['keras_test_accuracy']:.2f} %)",
        "",
        "Accuracy (%):",
        "",
        head,
        sep,
    ]
    rows = [("ours " + r["name"] + (" (default)" if r["config"] == DEFAULT_CFG else ""), r) for r in results["ours"]]
    rows += [("ours " + r["name"], r) for r in results.get("bursts", [])]
    rows += [(r["name"], r) for r in results["sj"]]
    full = [x for x in rows if x[1]["samples"] == results["test_samples"]]
    part = [x for x in rows if x[1]["samples"] != results["test_samples"]]
    for name, r in full + part:
        lines.append(f"| {name} | {r['samples']} | " + " | ".join(f"{100 * a:.2f}" for a in r["accuracy"]) + " |")
    lines += ["", "Spikes per neuron per image (all spiking layers):", "", head, sep]
    for name, r in full:
        lines.append(f"| {name} | {r['samples']} | " + " | ".join(f"{s:.3g}" for s in r["spikes_per_neuron"]) + " |")
    if results.get("recipes"):
        targets = results["recipes"][0]["timesteps"]
        rhead = "| recipes (tuned for each T) | n | " + " | ".join(f"T={t}" for t in targets) + " |"
        rsep = "|---|---:|" + "---:|" * len(targets)
        lines += ["", "Tuned for each T (`convert2snn.tune`; accuracy % / spikes per neuron):", "", rhead, rsep]
        for r in results["recipes"]:
            cells = [f"{100 * a:.2f} / {s:.3g}" for a, s in zip(r["accuracy"], r["spikes_per_neuron"])]
            lines.append(f"| {r['calibration']} | {r['samples']} | " + " | ".join(cells) + " |")
        auto = next((r for r in results["recipes"] if r["calibration"] == "auto"), None)
        if auto:
            lines.append(
                "\n'auto' chose: "
                + ", ".join(f"T={row['T']}: {'+'.join(row['recipes']) or 'none'}" for row in auto["per_T"])
            )
    if results.get("codes"):
        lines += [
            "",
            "Other codes (defaults; accuracy % / spikes per neuron per image; ttfs at its latency):",
            "",
            "| code | n | T | accuracy % | ANN − SNN pp | spikes/neuron | E_SNN/E_ANN (45 nm fp32) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["codes"]:
            for t, a, sp, e in zip(r["timesteps"], r["accuracy"], r["spikes_per_neuron"], r["energy_ratio"]):
                lines.append(
                    f"| {r['name']} | {r['samples']} | {t} | {100 * a:.2f} | {ann - 100 * a:.2f} | {sp:.3g} | {e:.3f} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    p.add_argument("--data", type=Path, default=None, help="the dataset's .npz (default ../shared/datasets/...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--samples", type=int, default=10000, help="test images for the default/best configs and SJ")
    p.add_argument("--ablation-samples", type=int, default=2000, help="test images for the ablation grid")
    p.add_argument("--calibration", type=int, default=10000, help="training images for calibration (both converters)")
    p.add_argument("--max-T", type=int, default=256)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--skip-sj", action="store_true")
    p.add_argument("--skip-grid", action="store_true")
    p.add_argument("--skip-codes", action="store_true", help="skip population / temporal")
    p.add_argument("--sj-methods", nargs="*", default=list(SJ_METHODS))
    p.add_argument("--skip-throughput", action="store_true", help="skip the T = 32 throughput comparison")
    p.add_argument("--skip-recipes", action="store_true", help="skip the conversions tuned for each T and bursts")
    p.add_argument(
        "--recipes",
        nargs="*",
        default=["auto", "bias", "threshold", "threshold+bias", "bias+potential", "threshold+bias+potential"],
        help="calibration recipe sets to tune with (convert2snn.tune)",
    )
    p.add_argument("--recipe-T", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32], help="target latencies")
    p.add_argument("--bursts", type=int, nargs="*", default=[2, 4], help="max_spikes_per_step values")
    p.add_argument("--json", type=Path, default=None, help="default benchmarks/results/<dataset>_results.json")
    p.add_argument("--plot", type=Path, default=None, help="default benchmarks/results/<dataset>_accuracy_vs_T.png")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    model_name, default_data, title = DATASETS[args.dataset]
    args.data = args.data or default_data
    args.json = args.json or HERE / "results" / f"{args.dataset}_results.json"
    args.plot = args.plot or HERE / "results" / f"{args.dataset}_accuracy_vs_T.png"
    timesteps = [t for t in DEFAULT_T if t <= args.max_T]
    t_start = time.perf_counter()

    model_path, train_info = ensure_model(model_name, args.data, args.seed, args.retrain)
    onnx_path = model_path.with_suffix(".onnx")

    # No TensorFlow in this process from here on (the export runs in a child process).
    import spikingjelly
    import torch

    import bridges
    import convert2snn

    x_tr, y_tr, x_te, y_te = load_data(args.dataset, args.data)
    x_cal = x_tr[: args.calibration]
    x, y = x_te[: args.samples], y_te[: args.samples]
    xa, ya = x_te[: args.ablation_samples], y_te[: args.ablation_samples]
    results = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "seed": args.seed,
        "dataset": args.dataset,
        "data": args.data.name,
        "model": model_name,
        "title": title,
        "test_samples": len(x),
        "ablation_samples": len(xa),
        "calibration_samples": len(x_cal),
        "timesteps": timesteps,
        "batch": args.batch,
        "train": train_info,
        "keras_test_accuracy": train_info["keras_test_accuracy"],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_start": os.getloadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "spikingjelly": getattr(spikingjelly, "__version__", "2.0.0"),
            "convert2snn": convert2snn.__version__,
            "numpy": np.__version__,
            **train_info.get("versions", {}),
        },
        "ours": [],
        "sj": [],
        "codes": [],
        "recipes": [],
        "bursts": [],
    }

    # -- ours, default config, from the .keras file (the full pipeline incl. the TensorFlow export child)
    log(f"convert2snn default {config_name(DEFAULT_CFG)} from {model_path.name} (includes the Keras→ONNX export)")
    default, snn = run_ours(model_path, DEFAULT_CFG, x_cal, x, y, timesteps, args.batch, args.progress)
    results["ours"].append(default)
    results["ann_accuracy"] = default["ann_accuracy"]
    results["keras_to_snn_convert_wall_s"] = default["convert_wall_s"]
    if not onnx_path.exists():
        bridges.to_onnx(str(model_path), str(onnx_path))

    # -- the ablation grid on a subset, from the cached ONNX file (no repeated export)
    if not args.skip_grid:
        log(f"ablation grid on {len(xa)} test images (from {onnx_path.name})")
        ablation = [run_ours(onnx_path, cfg, x_cal, xa, ya, timesteps, args.batch, args.progress)[0] for cfg in grid()]
        results["ours"] += ablation
        low = [i for i, t in enumerate(timesteps) if t <= 16]
        best = max(ablation, key=lambda r: np.mean([r["accuracy"][i] for i in low]))
        results["best_config"] = best["config"]
        log(f"best config (mean accuracy over T ≤ 16 on the subset): {best['name']}")
        if best["config"] != DEFAULT_CFG and len(xa) != len(x):
            log("best config on the full test set")
            results["ours"].append(
                run_ours(onnx_path, best["config"], x_cal, x, y, timesteps, args.batch, args.progress)[0]
            )

    # -- tuned for each target T, and bursts
    if not args.skip_recipes:
        targets = [t for t in args.recipe_T if t <= args.max_T]
        log(f"recipes tuned for T = {targets} on {len(x)} test images")
        for calibration in args.recipes:
            results["recipes"].append(run_tuned(snn, calibration, x_cal, x, y, targets, args.batch))
            args.json.write_text(json.dumps(results, indent=1))  # partial results survive an interruption
        for burst in args.bursts:
            results["bursts"].append(run_burst(onnx_path, burst, x_cal, x, y, timesteps, args.batch, args.progress))

    # -- the other codes with their defaults
    if not args.skip_codes:
        log(f"population and temporal codes on {len(x)} test images")
        for name, kind, options, ts in code_configs(timesteps):
            row = run_code(onnx_path, name, kind, options, x_cal, x, y, ts, args.batch, args.progress)
            if row is not None:
                results["codes"].append(row)

    # -- SpikingJelly on the same torch ANN
    seq = for_spikingjelly(snn.ann)
    to_nchw = snn.ann.bridge_info.to_model_layout
    x_nchw = to_nchw(torch.as_tensor(x)).contiguous().numpy()
    cal_nchw = to_nchw(torch.as_tensor(x_cal)).contiguous()
    calib_batches = [cal_nchw[i : i + 100] for i in range(0, len(cal_nchw), 100)]  # its tutorial: batches of 100
    with torch.no_grad():
        seq_acc = float((seq(torch.as_tensor(x_nchw)).argmax(1).numpy() == y).mean())
    results["sequential_ann_accuracy"] = seq_acc
    log(
        f"SpikingJelly {getattr(spikingjelly, '__version__', '')}: ANN as {type(seq).__name__} "
        f"{list(dict(seq.named_children()))}, "
        f"accuracy {100 * seq_acc:.2f} %"
    )
    sj_nets = {}
    if not args.skip_sj:
        for name in args.sj_methods:
            r, net = run_sj(name, seq, SJ_METHODS[name], calib_batches, x_nchw, y, timesteps, args.batch)
            results["sj"].append(r)
            sj_nets[name] = net

    # -- throughput at T = 32 (same images, same batch size)
    if args.skip_throughput:
        sj_nets = {}
    n_tp = min(2000, len(x)) if not args.skip_throughput else 0
    if n_tp:
        log(f"throughput at T=32 on {n_tp} images, batch {args.batch}")
    tp = {}
    if n_tp:
        tp["ann"] = throughput(lambda: snn.ann_predict(x[:n_tp], batch_size=args.batch), n_tp, 3)
        tp["ours"] = throughput(lambda: snn.predict(x[:n_tp], timesteps=32, batch_size=args.batch), n_tp)
    for name, net in sj_nets.items():
        tp[name] = throughput(lambda net=net: sj_evaluate(net, x_nchw[:n_tp], y[:n_tp], [32], args.batch), n_tp)
    for k, v in tp.items():
        extra = "" if k == "ann" else f", t_SNN/(32·t_ANN) = {tp['ann']['images_per_s'] / (32 * v['images_per_s']):.2f}"
        log(f"  {k}: {v['images_per_s']:.0f} images/s (CPU-time based {v['images_per_cpu_s']:.0f}){extra}")
    results["throughput_T32"] = tp
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["total_wall_s"] = time.perf_counter() - t_start

    args.json.write_text(json.dumps(results, indent=1))
    plot(results, args.plot)
    if results["recipes"] or results["bursts"]:
        plot_recipes(results, args.plot.with_name(f"{args.dataset}_recipes.png"))
    print()
    print(markdown(results))
    print()
    log(f"wrote {args.json} and {args.plot}; total {results['total_wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
