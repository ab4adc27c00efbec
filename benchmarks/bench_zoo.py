"""The model zoo: torchvision and Keras Applications families through bridge + rate + population + temporal.

    python benchmarks/bench_zoo.py                         # every model of ZOO, then the scaling checks
    python benchmarks/bench_zoo.py --models resnet18 keras:ResNet50 --skip-scaling
    python benchmarks/bench_zoo.py --scaling-only          # Conv–ReLU chains, ResNet-50 at 224² vs its ANN

Every model is randomly initialised (``weights=None``) with randomised BatchNorm statistics (mean
N(0, 0.1²), variance U(0.5, 1), affine U(0.75, 1.25) / N(0, 0.1²)), seeded. For each model:

- **bridge**: seconds, and the largest difference between the original model's output and the
  clean ANN's on the calibration inputs, relative to the output's scale (Keras models are built and
  run in a child process: TensorFlow never shares a process with torch);
- per conversion type (rate; population n = 16; temporal single-spike K = 16), percentile 100:
  seconds of the check, the calibration and the build (normalisation and limit check included); the
  limit check (the SNN's T → ∞ network against the ANN clipped at λ, relative); and the relative
  error of the SNN's output against the clipped ANN on the calibration inputs at T = 64 and 256
  (temporal: at its latency, against the ANN clipped at λ and rounded to K levels, which it equals
  up to rounding ties); beside rate's, the error of the clipped ANN whose activations are merely
  rounded to 256 levels — how sensitive the (random) network is to any such quantisation;
- a refused model: seconds from the end of the bridge to the refusal, and the refusal's first line.

``--scaling-only`` (also run after the zoo unless ``--skip-scaling``): rate conversion time of a
Conv–ReLU chain of 50 / 100 / 200 layers (He-initialised, one thread, best of three; linear in depth:
ratios ≈ 1 : 2 : 4), and ResNet-50 at 224 × 224 with 256 calibration images against the ANN's own
forward passes over those images. ``--chains-only``: the chains alone.
Results: ``--json`` (every number) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convert2snn" / "zoo"

# name → input size; "keras:" models come from keras.applications
ZOO = {
    "resnet18": 64,
    "resnet50": 64,
    "vgg11_bn": 64,
    "densenet121": 64,
    "googlenet": 64,
    "inception_v3": 96,
    "mobilenet_v2": 64,
    "mnasnet0_5": 64,
    "squeezenet1_0": 64,
    "shufflenet_v2_x0_5": 64,
    "regnet_x_400mf": 64,
    "efficientnet_b0": 64,
    "mobilenet_v3_small": 64,
    "convnext_tiny": 64,
    "keras:VGG16": 64,
    "keras:ResNet50": 64,
    "keras:ResNet50V2": 64,
    "keras:DenseNet121": 64,
    "keras:InceptionV3": 96,
    "keras:InceptionResNetV2": 96,
    "keras:Xception": 96,
    "keras:MobileNet": 64,
    "keras:MobileNetV2": 64,
    "keras:NASNetMobile": 96,
    "keras:EfficientNetB0": 64,
    "keras:EfficientNetV2B0": 64,
    "keras:MobileNetV3Small": 64,
    "keras:ConvNeXtTiny": 64,
}
# Keras Applications that rescale their input themselves take pixels in [0, 255].
KERAS_PIXELS = ("EfficientNet", "MobileNetV3", "ConvNeXt")
SCHEMES = (("rate", {}), ("population", {"n": 16}), ("temporal", {"code": "ttfs", "period": 16}))
CALIBRATION = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- models -------------------------------------------------------------------------------------------------
def randomised_torchvision(name: str):
    import torch
    import torchvision

    torch.manual_seed(0)
    # googlenet / inception_v3 get PyTorch's default layer init like every other model here: their own
    # (truncated normal, std 0.1 whatever the fan-in) grows inception_v3's outputs to 1e12 with random BN
    # statistics, a network so far from a trained one that even its 256-level ANN is off (RESULTS.md)
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def keras_child(name: str, size: int, out: str) -> None:
    """(child process) Build keras.applications.<name>, randomise its BN statistics, save it and its
    outputs on the calibration inputs."""
    sys.path.insert(0, str(ROOT))
    from bridges.keras_child import silence_tensorflow

    silence_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()  # gamma, beta, moving_mean, moving_variance (when all present)
            shapes = [w.shape for w in weights]
            new = []
            for kind, shape in zip(("gamma", "beta", "mean", "var")[-len(weights) :], shapes):
                new.append(
                    {
                        "gamma": rng.uniform(0.75, 1.25, shape),
                        "beta": rng.normal(0, 0.1, shape),
                        "mean": rng.normal(0, 0.1, shape),
                        "var": rng.uniform(0.5, 1.0, shape),
                    }[kind]
                )
            layer.set_weights([w.astype(np.float32) for w in new])
    x = calibration_inputs(size, keras_pixels=any(name.startswith(p) for p in KERAS_PIXELS), layout="nhwc")
    model.save(out)
    np.save(out + ".out.npy", model.predict(x, verbose=0))


def calibration_inputs(size: int, *, keras_pixels: bool = False, layout: str = "nchw", count: int = CALIBRATION):
    rng = np.random.default_rng(2)
    x = rng.random((count, size, size, 3), dtype=np.float32) * (255.0 if keras_pixels else 1.0)
    return x if layout == "nhwc" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def build_keras(name: str, size: int) -> tuple[Path, np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_{size}.keras"
    if not path.exists() or not Path(str(path) + ".out.npy").exists():
        env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run(
            [sys.executable, __file__, "--keras-child", name, str(size), str(path)],
            check=True,
            env=env,
            capture_output=True,
        )
    return path, np.load(str(path) + ".out.npy")


# -- one model ----------------------------------------------------------------------------------------------
def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def run_model(key: str, size: int) -> dict:
    import torch

    import convert2snn
    from convert2snn import schemes
    from convert2snn.graph.limits import clipped_ann, limit_difference, limit_network, quantized_ann

    keras = key.startswith("keras:")
    name = key.removeprefix("keras:")
    row: dict = {"model": key, "size": size}
    t0 = time.perf_counter()
    if keras:
        source, reference = build_keras(name, size)
        x = calibration_inputs(size, keras_pixels=any(name.startswith(p) for p in KERAS_PIXELS), layout="nhwc")
        row["keras_build_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    else:
        source = randomised_torchvision(name)
        x = calibration_inputs(size)
        with torch.no_grad():
            reference = source(torch.from_numpy(x)).numpy()
    try:
        ann = convert2snn.bridge(source, torch.from_numpy(x[:1]), check_inputs=x[:4])
    except convert2snn.ConversionError as exc:
        row.update(bridge_s=time.perf_counter() - t0, bridge_error=" ".join(str(exc).split())[:400])
        return row
    row["bridge_s"] = time.perf_counter() - t0
    info = ann.bridge_info
    xt = info.to_model_layout(torch.from_numpy(x))
    with torch.no_grad():
        row["bridge_diff"] = relative(ann(xt).numpy(), reference)
    for kind, options in SCHEMES:
        entry: dict = {}
        row[kind] = entry
        scheme = schemes.create(kind, {**options, "percentile": 100.0, "progress": False, "batch_size": 32})
        t0 = time.perf_counter()
        try:
            scheme.check(ann, info.layers)
        except convert2snn.ConversionError as exc:
            entry.update(refused_after_s=time.perf_counter() - t0, refusal=" ".join(str(exc).split())[:300])
            continue
        entry["check_s"] = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            calibration = convert2snn.calibrate(ann, x, scheme)
            entry["calibrate_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            snn = convert2snn.build(ann, calibration, scheme)
            entry["build_s"] = time.perf_counter() - t0
        except convert2snn.ConversionError as exc:
            entry["error"] = " ".join(str(exc).split())[:300]
            continue
        example = torch.randn((2,) + tuple(info.input_shape), generator=torch.Generator().manual_seed(0))
        entry["limit_check"] = limit_difference(limit_network(snn.network), ann, calibration.scales, example)
        with torch.no_grad():
            clipped = clipped_ann(ann, calibration.scales)(xt).numpy()
        if kind == "temporal":
            with torch.no_grad():
                rounded = quantized_ann(ann, calibration.scales, options["period"])(xt).numpy()
            out = snn.predict(x, snn.latency)
            entry.update(
                latency=snn.latency, error_vs_rounded=relative(out, rounded), error_vs_clipped=relative(out, clipped)
            )
        else:
            entry.update({f"error_T{t}": relative(snn.predict(x, t), clipped) for t in (64, 256)})
            if kind == "rate":  # how sensitive the network is: the clipped ANN with activations on 256 levels
                with torch.no_grad():
                    rounded = quantized_ann(ann, calibration.scales, 256)(xt).numpy()
                entry["rounded_ann_error_256"] = relative(rounded, clipped)
    return row


# -- scaling -------------------------------------------------------------------------------------------------
def chain(depth: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = []
    for i in range(depth):
        conv = nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1)
        # He initialisation keeps the activations' scale through any depth: torch's default shrinks
        # it ~1.7× per layer, and 200 layers down the values are subnormal floats, which the CPU
        # computes tens of times slower (the time would measure float underflow, not the converter)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()


def scaling(resnet: bool = True) -> dict:
    import torch

    import convert2snn

    out: dict = {"chains": {}}
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    convert2snn.convert(chain(2), "rate", x, progress=False)  # warm-up: first-use imports are not per-layer cost
    # the chains' convolutions are tiny (8 × 8 × 8): with several threads on a shared machine they
    # spin-wait for each other and the time measures the contention, not the converter's work
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for depth in (50, 100, 200):
        net = chain(depth)
        bridge_s, convert_s = [], []
        for _ in range(3):  # best of three: a shared machine's slow spells are not the network's cost
            t0 = time.perf_counter()
            ann = convert2snn.bridge(net, x[:1])
            t1 = time.perf_counter()
            convert2snn.convert(ann, "rate", x, progress=False)
            bridge_s.append(t1 - t0)
            convert_s.append(time.perf_counter() - t1)
        out["chains"][depth] = {"bridge_s": min(bridge_s), "convert_s": min(convert_s)}
        best = out["chains"][depth]
        log(
            f"chain of {depth} Conv–ReLU layers (best of 3): bridge {best['bridge_s']:.1f} s, "
            f"convert {best['convert_s']:.1f} s"
        )
    torch.set_num_threads(threads)
    if not resnet:
        return out
    model = randomised_torchvision("resnet50")
    x = torch.rand(256, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t0 = time.perf_counter()
        for i in range(0, 256, 32):
            model(x[i : i + 32])
        ann_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ann = convert2snn.bridge(model, x[:1])
    t1 = time.perf_counter()
    convert2snn.convert(ann, "rate", x, batch_size=32, progress=False)
    t2 = time.perf_counter()
    out["resnet50_224"] = {
        "ann_forward_s": ann_s,
        "bridge_s": t1 - t0,
        "convert_s": t2 - t1,
        "ratio": (t2 - t0) / ann_s,
    }
    log(
        f"ResNet-50 224²: ANN over 256 images {ann_s:.1f} s; bridge {t1 - t0:.1f} s + convert {t2 - t1:.1f} s "
        f"= {(t2 - t0) / ann_s:.2f} × the ANN"
    )
    return out


# -- report ------------------------------------------------------------------------------------------------
def _fmt(v, spec=".3g") -> str:
    return "–" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = (
        "| model | size | bridge s | bridge diff | rate check / calib / build s | rate limit | rate err T=64 / 256 "
        "| ANN on 256 levels | population err T=64 / 256 | temporal err (vs rounded ANN) | refusal (first) |"
    )
    lines = [head, "|---|---:|---:|---:|---|---:|---|---:|---|---|---|"]
    for r in rows:
        if "bridge_error" in r:
            lines.append(
                f"| {r['model']} | {r['size']} | {r['bridge_s']:.1f} | – | – | – | – | – | – | – | bridge: "
                f"{r['bridge_error']} |"
            )
            continue
        rate, pop, tmp = r["rate"], r["population"], r["temporal"]
        refusal = next((e["refusal"] for e in (rate, pop, tmp) if "refusal" in e), "")
        stages = (
            f"{rate['check_s']:.2f} / {rate['calibrate_s']:.2f} / {rate['build_s']:.2f}"
            if "build_s" in rate
            else f"refused in {rate.get('refused_after_s', 0):.2f} s"
        )
        lines.append(
            f"| {r['model']} | {r['size']} | {r['bridge_s']:.1f} | {_fmt(r['bridge_diff'], '.1e')} | {stages} | "
            f"{_fmt(rate.get('limit_check'), '.1e')} | "
            f"{_fmt(rate.get('error_T64'))} / {_fmt(rate.get('error_T256'))} | "
            f"{_fmt(rate.get('rounded_ann_error_256'))} | "
            f"{_fmt(pop.get('error_T64'))} / {_fmt(pop.get('error_T256'))} | "
            f"{_fmt(tmp.get('error_vs_rounded'), '.1e')} | {refusal[:120]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", default=None, help=f"subset of the zoo (default all: {', '.join(ZOO)})")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--scaling-only", action="store_true")
    p.add_argument("--chains-only", action="store_true", help="the scaling checks without ResNet-50 at 224²")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "zoo.json")
    p.add_argument("--keras-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_child:
        keras_child(args.keras_child[0], int(args.keras_child[1]), args.keras_child[2])
        return 0
    warnings.filterwarnings("ignore")
    result: dict = {
        "command": " ".join(["python", "benchmarks/bench_zoo.py"] + (argv or sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": [],
    }
    if not (args.scaling_only or args.chains_only):
        for key in args.models or list(ZOO):
            if key not in ZOO:
                p.error(f"unknown model {key!r}; the zoo: {', '.join(ZOO)}")
            log(f"{key} ({ZOO[key]}²) …")
            row = run_model(key, ZOO[key])
            result["rows"].append(row)
            log(json.dumps(row, default=float)[:600])
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1, default=float))  # kept if a later model is stopped
        print(table(result["rows"]))
    if args.scaling_only or args.chains_only or not args.skip_scaling:
        result["scaling"] = scaling(resnet=not args.chains_only)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=float))
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
