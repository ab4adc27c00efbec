"""Simulation speed: images/s and t_SNN(T) / (T · t_ANN) for a CIFAR-sized VGG, ours vs SpikingJelly's ann2snn.

    python benchmarks/bench_speed.py                                # CPU, the CIFAR-10 VGG of train_models.py
    python benchmarks/bench_speed.py --device cuda --snn vgg.c2s    # a GPU: needs torch, triton, convert2snn,
                                                                    # spikingjelly, onnx2torch — no TensorFlow

The dense limit of a simulation is T × the ANN's work: t_SNN(T)/(T·t_ANN) = 1 means the SNN costs
exactly T ANN passes. t_ANN is the ANN at its best: it is timed in the default (NCHW) and in the
channels-last layout, and the faster counts. Both SNNs come from the same clean torch ANN
(convert2snn's bridged graph): ours is the default rate conversion (time folded into the batch
for every stateless layer, the first layer computed once for analog input, short time chunks,
channels-last on the CPU, neuron state scanned — a Triton kernel on CUDA); SpikingJelly's is
`ann2snn.Converter` (max normalisation) run the way its tutorial runs it, one single-step forward
per timestep. Every timing is the best of ``--repeat`` rounds, all in one process, the methods
interleaved within each round.

The model: ``--snn`` (a saved convert2snn model, e.g. from a previous run's ``--save``) or the
CIFAR-10 VGG cached by ``bench_accuracy.py --dataset cifar10`` (converted here from its ONNX
export, calibrated on 1 000 training images), or, with ``--random``, the same architecture with
seeded random weights (speed does not depend on the weights in a dense simulation).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def random_vgg():
    """train_models.cifar10_vgg's architecture in torch (NCHW), seeded random weights, BN already folded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers, c_in = [], 3
    for width in (16, 32, 64):
        for _ in range(2):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()]
            c_in = width
        layers.append(nn.AvgPool2d(2))
    layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10)]
    return nn.Sequential(*layers).eval()


def load_snn(args):
    import torch

    import convert2snn

    if args.snn:
        return convert2snn.load(args.snn), None
    if args.random:
        net = random_vgg()
        x_cal = torch.rand(1000, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return convert2snn.convert(net, "rate", x_cal, progress=False), x_cal.numpy()
    import bench_accuracy
    import train_models

    key = train_models.recipe_key("cifar10_vgg")
    onnx = bench_accuracy.cache_dir() / f"cifar10_vgg_seed0_{key}.onnx"
    keras_file = onnx.with_suffix(".keras")
    if not onnx.exists():
        if not keras_file.exists():
            raise SystemExit(
                f"no trained CIFAR-10 VGG at {keras_file}: run bench_accuracy.py --dataset cifar10 first, "
                "or pass --random"
            )
        import bridges

        bridges.to_onnx(str(keras_file), str(onnx))
    x_tr = bench_accuracy.load_data("cifar10", args.data)[0][:1000]  # shuffled: class-balanced
    return convert2snn.convert(str(onnx), "rate", x_tr, progress=False), x_tr


def best_times(runs: dict, repeat: int, sync) -> dict[str, float]:
    """Best wall time of each function over ``repeat`` rounds, the functions interleaved within a
    round so that a slow spell of a shared machine hits all of them, not one (after one warm-up round)."""
    best = {name: float("inf") for name in runs}
    for round_ in range(repeat + 1):
        for name, fn in runs.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if round_:
                best[name] = min(best[name], time.perf_counter() - start)
    return best


# The CPU engine's parts, switched on one by one (the last row is the default engine).
ABLATION = [
    (
        "torch loops, NCHW, 1 GiB chunks, glibc defaults",
        ["--layout", "nchw", "--layer-chunk-mib", "0"],
        {"CONVERT2SNN_NO_KERNELS": "1", "CONVERT2SNN_NO_MALLOC_TUNING": "1"},
    ),
    (
        "+ channels-last",
        ["--layer-chunk-mib", "0"],
        {"CONVERT2SNN_NO_KERNELS": "1", "CONVERT2SNN_NO_MALLOC_TUNING": "1"},
    ),
    ("+ 16 MiB layer chunks", [], {"CONVERT2SNN_NO_KERNELS": "1", "CONVERT2SNN_NO_MALLOC_TUNING": "1"}),
    ("+ malloc thresholds", [], {"CONVERT2SNN_NO_KERNELS": "1"}),
    ("+ Numba IF scan (default)", [], {}),
]


def apply_switches(args) -> None:
    """--layout / --layer-chunk-mib: take one part of the CPU engine out (for --ablation)."""
    import torch

    from convert2snn import simulate

    if args.layout == "nchw":
        simulate.memory_format_for = lambda _x, _device: torch.contiguous_format
    if args.layer_chunk_mib is not None:
        simulate.CPU_LAYER_CHUNK_BYTES = (args.layer_chunk_mib << 20) or (1 << 62)  # 0: no cap


def ablation(args) -> int:
    import subprocess
    import tempfile

    if not args.snn:
        raise SystemExit("--ablation needs --snn (save one with --save first)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, flags, env in ABLATION:
            out = Path(tmp) / "row.json"
            cmd = [
                sys.executable,
                __file__,
                "--snn",
                str(args.snn),
                "--device",
                args.device,
                "--timesteps",
                str(args.main_T),
                "--batches",
                str(args.main_batch),
                "--main-batch",
                str(args.main_batch),
                "--repeat",
                str(args.repeat),
                "--skip-sj",
                "--json",
                str(out),
                *flags,
            ]
            subprocess.run(cmd, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
            row = json.loads(out.read_text())["rows"][0]
            rows.append({"engine": label, **row})
            log(f"{label}: {row['ours_images_per_s']:.1f} img/s, t/(T·t_ANN) {row['ours_ratio']:.2f}")
    path = args.json.with_name(args.json.stem + "_ablation.json")
    path.write_text(
        json.dumps(
            {
                "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
                "T": args.main_T,
                "batch": args.main_batch,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"\n| engine (T = {args.main_T}, batch {args.main_batch}) | images/s | t_SNN/(T·t_ANN) | speed-up |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['ours_images_per_s']:.1f} | {r['ours_ratio']:.2f} | "
            f"{r['ours_images_per_s'] / rows[0]['ours_images_per_s']:.2f}× |"
        )
    log(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--snn", type=Path, help="a saved convert2snn model (.c2s) to time")
    p.add_argument(
        "--random", action="store_true", help="the VGG architecture with random weights (no training needed)"
    )
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "datasets" / "cifar10_jpeg.npz")
    p.add_argument("--device", default="cpu")
    p.add_argument("--timesteps", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--main-batch", type=int, default=128, help="the batch size of the T sweep")
    p.add_argument("--main-T", type=int, default=32, help="the T of the batch sweep")
    p.add_argument("--repeat", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--skip-sj", action="store_true")
    p.add_argument("--save", type=Path, help="also save the converted SNN here (for a GPU run without TensorFlow)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "speed_cpu.json")
    p.add_argument(
        "--population",
        type=int,
        nargs="*",
        metavar="T",
        help="also time population coding (n = 16, converted from the same ANN) at these T, with the CPU "
        "kernel and with the torch loop (default T: 1 2 4 when the flag is given alone)",
    )
    p.add_argument(
        "--ttfs",
        action="store_true",
        help="also time single-spike temporal coding (K = 16, from the same ANN) at its latency, with and "
        "without skipping idle chunks",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="instead of the sweep: T = --main-T, batch = --main-batch with the CPU engine's parts switched "
        "on one by one, each in its own process (needs --snn); writes speed_cpu_ablation.json",
    )
    # switches for --ablation's child processes
    p.add_argument("--layout", choices=["auto", "nchw"], default="auto", help=argparse.SUPPRESS)
    p.add_argument("--layer-chunk-mib", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ablation:
        return ablation(args)
    apply_switches(args)

    import bench_accuracy
    import torch
    from spikingjelly.activation_based import functional

    snn, x_cal = load_snn(args)
    if args.save:
        snn.save(args.save)
    device = torch.device(args.device)
    snn.to(device)
    snn.options.progress = False
    shape = tuple(snn.bridge_info.input_shape)  # the clean ANN's (NCHW) input
    # ours is timed from host arrays in the model's layout (what users pass); the ANN and SJ from device tensors
    ann = snn.ann.to(device).eval()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sj_net = None
    if not args.skip_sj:
        from spikingjelly.activation_based import ann2snn

        seq = bench_accuracy.as_sequential(snn.ann)
        cal = (
            torch.rand((500,) + shape, generator=torch.Generator().manual_seed(2))
            if x_cal is None
            else snn.ann.bridge_info.to_model_layout(torch.as_tensor(np.asarray(x_cal[:500])))
        )
        sj_net = (
            ann2snn.Converter(
                ann2snn.RateCodingRecipe(dataloader=[cal[i : i + 100] for i in range(0, len(cal), 100)], mode="max"),
                device="cpu",
            )
            .convert(seq)
            .to(device)
            .eval()
        )
    rows = []
    configs = [(t, args.main_batch) for t in args.timesteps] + [
        (args.main_T, b) for b in args.batches if b != args.main_batch
    ]
    # the ANN in both layouts: the dense limit is T passes of the ANN at its best, and on the CPU
    # channels-last (what our simulation uses) is usually the faster one
    ann_cl = copy.deepcopy(ann).to(memory_format=torch.channels_last) if len(shape) == 3 else None
    for steps, batch in configs:
        user_shape = tuple(snn.bridge_info.original_input_shape())
        x_user = torch.rand((batch,) + user_shape, generator=torch.Generator().manual_seed(batch))  # host, model layout
        x = snn.ann.bridge_info.to_model_layout(x_user).to(device)
        # (every closure below is timed within this iteration: the loop variables are bound as defaults anyway)
        runs = {
            "ann": lambda x=x: ann(x),
            "ours": lambda x_user=x_user, steps=steps, batch=batch: snn.predict(
                x_user, timesteps=steps, batch_size=batch
            ),
        }
        if ann_cl is not None:
            x_cl = x.contiguous(memory_format=torch.channels_last)
            runs["ann_cl"] = lambda x_cl=x_cl: ann_cl(x_cl)
        if sj_net is not None:

            def run_sj(x=x, steps=steps):
                functional.reset_net(sj_net)
                out = 0
                for _ in range(steps):
                    out = out + sj_net(x)
                functional.reset_net(sj_net)
                return out

            runs["sj"] = run_sj
        with torch.no_grad():
            t = best_times(runs, args.repeat, sync)
        t_ann = min(t["ann"], t.get("ann_cl", float("inf")))
        row = {
            "T": steps,
            "batch": batch,
            "t_ann_s": t_ann,
            "t_ann_nchw_s": t["ann"],
            "t_ann_channels_last_s": t.get("ann_cl"),
            "t_ours_s": t["ours"],
            "ours_images_per_s": batch / t["ours"],
            "ours_ratio": t["ours"] / (steps * t_ann),
        }
        if "sj" in t:
            row.update(
                t_sj_s=t["sj"],
                sj_images_per_s=batch / t["sj"],
                sj_ratio=t["sj"] / (steps * t_ann),
                ours_vs_sj=t["sj"] / t["ours"],
            )
        rows.append(row)
        log(
            f"T={steps:4d} batch={batch:4d}: ANN {batch / t_ann:8.0f} img/s | "
            f"ours {row['ours_images_per_s']:7.1f} img/s, "
            f"t/(T·t_ANN) {row['ours_ratio']:.2f}"
            + (
                f" | SJ {row['sj_images_per_s']:7.1f} img/s, ratio {row['sj_ratio']:.2f}"
                f" | ours {row['ours_vs_sj']:.2f}× SJ"
                if sj_net is not None
                else ""
            )
        )
    other_rows = time_population(snn, x_cal, args, device, sync) if args.population is not None else []
    if args.ttfs:
        other_rows += time_ttfs(snn, x_cal, args, device, sync)
    info = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg": os.getloadavg(),
        "model": str(args.snn or ("random VGG" if args.random else "cifar10_vgg")),
        "rows": rows,
        "other_codes": other_rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(info, indent=1))
    print()
    print(
        "| T | batch | ANN img/s (NCHW / channels-last) | ours img/s | ours t/(T·t_ANN) | SJ img/s | SJ t/(T·t_ANN) "
        "| ours / SJ speed |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cl = f" / {r['batch'] / r['t_ann_channels_last_s']:.0f}" if r.get("t_ann_channels_last_s") else ""
        print(
            f"| {r['T']} | {r['batch']} | {r['batch'] / r['t_ann_nchw_s']:.0f}{cl} | {r['ours_images_per_s']:.1f} | "
            f"{r['ours_ratio']:.2f} | "
            + (
                f"{r['sj_images_per_s']:.1f} | {r['sj_ratio']:.2f} | {r['ours_vs_sj']:.2f}× |"
                if "t_sj_s" in r
                else "– | – | – |"
            )
        )
    if other_rows:
        print("\n| code | T | batch | img/s | t_SNN/(T·t_ANN) | img/s without (torch loop / dense) | speed-up |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in other_rows:
            print(
                f"| {r['code']} | {r['T']} | {r['batch']} | {r['images_per_s']:.1f} | {r['ratio']:.2f} | "
                f"{r['baseline_images_per_s']:.1f} | {r['t_baseline_s'] / r['t_s']:.2f}× |"
            )
    log(f"wrote {args.json}")
    return 0


def time_population(snn, x_cal, args, device, sync) -> list[dict]:
    """Population coding (n = 16) converted from the same ANN, timed at ``args.population`` T with
    the CPU kernel (or Triton on CUDA) and with the nodes' torch loop (CONVERT2SNN_NO_KERNELS=1)."""

    def torch_loop(run):
        before = os.environ.get("CONVERT2SNN_NO_KERNELS")
        os.environ["CONVERT2SNN_NO_KERNELS"] = "1"
        try:
            run()
        finally:
            if before is None:
                os.environ.pop("CONVERT2SNN_NO_KERNELS")
            else:
                os.environ["CONVERT2SNN_NO_KERNELS"] = before

    return _time_code(snn, x_cal, args, device, sync, "population", {"n": 16}, args.population or [1, 2, 4], torch_loop)


def time_ttfs(snn, x_cal, args, device, sync) -> list[dict]:
    """Single-spike temporal coding (K = 16) converted from the same ANN, timed at its latency with
    idle chunks skipped (the default) and with them computed like any other (the dense simulation)."""
    import torch

    from convert2snn.neurons import temporal as temporal_nodes

    def dense(run):
        skipping = temporal_nodes.silent
        temporal_nodes.silent = lambda like: torch.zeros(like.shape, dtype=like.dtype, device=like.device)
        try:
            run()
        finally:
            temporal_nodes.silent = skipping

    return _time_code(snn, x_cal, args, device, sync, "temporal", {"code": "ttfs", "period": 16}, None, dense)


def _time_code(snn, x_cal, args, device, sync, kind: str, options: dict, timesteps, baseline) -> list[dict]:
    """``kind``/``options`` converted from ``snn``'s ANN, timed at ``timesteps`` (None: the latency)
    against the ANN, and with ``baseline(run)`` (the same run without the speed-up under test)."""
    import torch

    import convert2snn

    shape = tuple(snn.bridge_info.input_shape)
    original = tuple(snn.bridge_info.original_input_shape())  # what convert takes, also for an ANN already bridged
    cal = (
        torch.rand((500,) + original, generator=torch.Generator().manual_seed(2))
        if x_cal is None
        else torch.as_tensor(np.asarray(x_cal[:500]))
    )
    other = convert2snn.convert(snn.ann, kind, cal, progress=False, **options)
    other.to(device)
    other.options.progress = False
    ann = snn.ann.to(device).eval()
    ann_cl = copy.deepcopy(ann).to(memory_format=torch.channels_last) if len(shape) == 3 else ann
    batch = args.main_batch
    x_user = torch.rand((batch,) + original, generator=torch.Generator().manual_seed(batch))  # the model's layout
    x = snn.ann.bridge_info.to_model_layout(x_user).to(device)
    label = f"{kind} " + " ".join(f"{k}={v}" for k, v in options.items())
    rows = []
    for steps in timesteps or [other.latency]:

        def run(steps=steps):
            other.predict(x_user, timesteps=steps, batch_size=batch)

        runs = {
            "ann": lambda: ann(x),
            "ann_cl": lambda: ann_cl(x.contiguous(memory_format=torch.channels_last)),
            "fast": run,
            "baseline": lambda run=run: baseline(run),
        }
        with torch.no_grad():
            t = best_times(runs, args.repeat, sync)
        t_ann = min(t["ann"], t["ann_cl"])
        rows.append(
            {
                "code": label,
                "T": steps,
                "batch": batch,
                "t_ann_s": t_ann,
                "t_s": t["fast"],
                "images_per_s": batch / t["fast"],
                "ratio": t["fast"] / (steps * t_ann),
                "t_baseline_s": t["baseline"],
                "baseline_images_per_s": batch / t["baseline"],
            }
        )
        log(f"{label} T={steps}: {batch / t['fast']:.1f} img/s (without the speed-up: {batch / t['baseline']:.1f})")
    return rows


if __name__ == "__main__":
    sys.exit(main())
