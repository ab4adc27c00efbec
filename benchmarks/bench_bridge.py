#!/usr/bin/env python
"""Bridge conversion time: Keras VGG-16 (CIFAR-10 size) → clean torch.fx graph.

Measures, in one run:

(a) tf2onnx alone with its default settings (all optimisers): ``tf2onnx.convert.from_keras``
    called as `bridges.keras_child` calls it, timed inside a child process, TensorFlow
    import and model loading excluded;
(b) our whole `bridges.to_torch("vgg16.keras")`, wall clock, in a fresh process, with the
    breakdown: export child (TF import, .keras load, tf2onnx with our optimiser subset, ONNX
    save, interpreter start/exit), ONNX → raw fx graph (onnx2torch), canonicalisation — and,
    before it, the imports a fresh process pays (torch, onnx2torch + torchvision, bridges);
(c) equivalence: Keras vs clean torch output, max abs diff relative to the output scale, on
    logits (softmax removed on both sides) and on the softmax outputs; plus the clean graph's
    module census (no onnx2torch module and no `Permute` may be left).

``--ablation`` adds: every tf2onnx optimiser choice around ours (each one left out, a few
added, none, all) with the ONNX it leaves and what our canonicalisation makes of it, and the
export child's TensorFlow import time under the settings we could change.

Usage::

    python benchmarks/bench_bridge.py [--repeat 3] [--ablation] [--cache-dir DIR] [--json FILE]

TensorFlow is never imported into this process (nor torch): every measurement runs in a
child ``python -c`` process. The model (random weights, randomised BatchNorm statistics) and
its Keras reference outputs are built once and cached in ``--cache-dir`` (default
``~/.cache/convert2snn/bench``). Timings on a loaded machine vary a lot: the best of
``--repeat`` fresh processes is reported, with the median and CPU seconds next to it, and the
load average before and after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# Child scripts (run with `python -c`, PYTHONPATH = repository root).
# --------------------------------------------------------------------------------------------

BUILD = textwrap.dedent("""
    import os, sys, json
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import keras
    from keras import layers

    out_model, out_ref = sys.argv[1], sys.argv[2]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = inp
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            x = layers.MaxPooling2D(2)(x)
        else:
            x = layers.Conv2D(v, 3, padding="same", kernel_initializer="he_normal")(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu", kernel_initializer="he_normal")(x)
    x = layers.Dropout(0.5)(x)
    logits = layers.Dense(10, name="logits")(x)
    out = layers.Softmax()(logits)
    model = keras.Model(inp, out, name="vgg16_cifar10")
    # Random but non-trivial BatchNorm statistics, so that folding BN is actually tested.
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c).astype("f4"), rng.normal(0, 0.1, c).astype("f4"),
                               rng.normal(0, 0.1, c).astype("f4"), rng.uniform(0.5, 1.5, c).astype("f4")])
    model.save(out_model)
    xs = rng.normal(size=(16, 32, 32, 3)).astype("f4")
    probs = model.predict(xs, verbose=0)
    logits = keras.Model(inp, model.get_layer("logits").output).predict(xs, verbose=0)
    np.savez(out_ref, x=xs, probs=probs, logits=logits)
    print(json.dumps({"params": int(model.count_params()), "layers": len(model.layers)}))
""")

# (a) and the optimiser ablation: tf2onnx.from_keras with the export child's arguments.
TF2ONNX = textwrap.dedent("""
    import json, os, sys, time
    from bridges import keras_child as kc
    model_path, optimizers, out_path, import_mode = sys.argv[1:5]
    kc.silence_tensorflow()
    if import_mode == "onednn":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    if import_mode != "keep_optional" and hasattr(kc, "skip_optional_imports"):
        kc.skip_optional_imports()
    w0, c0 = time.perf_counter(), time.process_time()
    import tensorflow as tf
    import tf2onnx
    import keras
    w1, c1 = time.perf_counter(), time.process_time()
    model = keras.models.load_model(model_path, compile=False)
    layer_table = kc._layer_table(model)
    model = keras.Model(model.inputs, model.outputs)
    w2, c2 = time.perf_counter(), time.process_time()
    result = {"import": w1 - w0, "cpu_import": c1 - c0, "load": w2 - w1, "cpu_load": c2 - c1,
              "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__}}
    if optimizers != "skip":
        from tf2onnx import optimizer as tf2onnx_optimizer
        from tf2onnx.optimizer import optimizer_base
        import tf2onnx.convert as tf2onnx_convert
        stats = {"calls": 0, "opt_wall": 0.0, "opt_cpu": 0.0}
        original_optimize_graph = tf2onnx_convert.optimizer.optimize_graph
        def optimize_graph(*args, **kwargs):  # time the optimiser loop as a whole
            ow, oc = time.perf_counter(), time.process_time()
            try:
                return original_optimize_graph(*args, **kwargs)
            finally:
                stats["opt_wall"] += time.perf_counter() - ow
                stats["opt_cpu"] += time.process_time() - oc
        tf2onnx_convert.optimizer.optimize_graph = optimize_graph
        original_optimize = optimizer_base.GraphOptimizerBase.optimize
        def optimize(self, *args, **kwargs):  # count optimiser invocations (each deep-copies the graph)
            stats["calls"] += 1
            return original_optimize(self, *args, **kwargs)
        optimizer_base.GraphOptimizerBase.optimize = optimize
        available = tf2onnx_optimizer._get_optimizers()
        if optimizers == "all":
            chosen = None
        elif optimizers == "none":
            chosen = {}
        else:
            names = kc.FAST_OPTIMIZERS if optimizers == "fast" else [n for n in optimizers.split(",") if n]
            chosen = {k: v for k, v in available.items() if k in names}
        spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="input"),)
        w3, c3 = time.perf_counter(), time.process_time()
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, inputs_as_nchw=["input"],
                                               optimizers=chosen)
        result.update(export=time.perf_counter() - w3, cpu_export=time.process_time() - c3, **stats)
        ops = {}
        for node in proto.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        result["ops"] = ops
        if out_path != "-":
            import onnx
            entry = proto.metadata_props.add()
            entry.key = "convert2snn.bridge"
            entry.value = json.dumps({"source": "keras", "keras_flavour": "keras", "keras_layers": layer_table,
                                      "inputs_as_nchw": ["input"], "input_shapes": [[32, 32, 3]]})
            onnx.save(proto, out_path)
    print("RESULT " + json.dumps(result))
""")

# (b) + (c): a fresh process that imports what a user imports and runs bridges.to_torch.
RUNNER = textwrap.dedent("""
    import json, sys, time, resource
    w0 = time.perf_counter()
    import torch
    w1 = time.perf_counter()
    import onnx2torch  # imports torchvision; `import bridges` would import it anyway
    w2 = time.perf_counter()
    import bridges
    w3 = time.perf_counter()
    import copy, dataclasses
    import numpy as np
    import onnx
    from bridges.modules import OutputSoftmax, Permute

    ref = np.load(sys.argv[2])
    paths = sys.argv[1].split(",")
    results = []
    for path in paths:
        timings = bridges.BridgeTimings()
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        gm = bridges.to_torch(path, timings=timings)
        total = time.perf_counter() - t0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = lambda a, b: (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
        x = gm.bridge_info.to_model_layout(torch.from_numpy(ref["x"]))
        with torch.no_grad():
            probs = gm(x)
            logit_gm = copy.deepcopy(gm)
            for node in list(logit_gm.graph.nodes):
                if node.op == "call_module" and isinstance(logit_gm.get_submodule(node.target), OutputSoftmax):
                    node.replace_all_uses_with(node.args[0])
                    logit_gm.graph.erase_node(node)
            logit_gm.recompile()
            logits = logit_gm(x)
        rel = lambda out, want: float(np.abs(out.numpy() - want).max() / np.abs(want).max())
        census = {}
        for m in gm.modules():
            key = type(m).__module__ + "." + type(m).__name__
            census[key] = census.get(key, 0) + 1
        results.append({
            "path": path, "to_torch": total, "timings": dataclasses.asdict(timings),
            "cpu_parent": cpu(self0, self1), "cpu_children": cpu(kids0, kids1),
            "diff_logits": rel(logits, ref["logits"]), "diff_probs": rel(probs, ref["probs"]),
            "logit_scale": float(np.abs(ref["logits"]).max()), "max_prob": float(ref["probs"].max()),
            "census": census,
            "onnx2torch_modules": sum(v for k, v in census.items() if k.startswith("onnx2torch")),
            "permutes": sum(1 for m in gm.modules() if isinstance(m, Permute)),
            "softmax_kept": bool(gm.bridge_info.output_softmax),
        })
    print("RESULT " + json.dumps({
        "import_torch": w1 - w0, "import_onnx2torch": w2 - w1, "import_bridges": w3 - w2,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnx2torch": getattr(onnx2torch, "__version__", "?"), "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "results": results}))
""")

ABLATION_SETS = [
    # (label, tf2onnx optimiser spec)
    ("all (tf2onnx default)", "all"),
    ("ours: FAST_OPTIMIZERS", "fast"),
    ("ours − optimize_transpose", "-optimize_transpose"),
    ("ours − fold_constants", "-fold_constants"),
    ("ours − remove_identity", "-remove_identity"),
    ("ours − remove_back_to_back", "-remove_back_to_back"),
    ("ours − global_pool_optimizer", "-global_pool_optimizer"),
    ("ours + reshape_optimizer", "+reshape_optimizer"),
    ("ours + merge_duplication", "+merge_duplication"),
    ("none", "none"),
]


def _fast_optimizers() -> tuple[str, ...]:
    """`FAST_OPTIMIZERS`, read from the source (importing the module is harmless too, but keep
    this process free of anything but the standard library)."""
    import ast

    tree = ast.parse((ROOT / "bridges" / "keras_child.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FAST_OPTIMIZERS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("FAST_OPTIMIZERS not found in bridges/keras_child.py")


def _resolve(spec: str) -> str:
    fast = list(_fast_optimizers())
    if spec.startswith("-"):
        return ",".join(n for n in fast if n != spec[1:])
    if spec.startswith("+"):
        return ",".join(fast + [spec[1:]])
    return spec


def _run(script: str, *args: str, timeout: float = 900) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
    )
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][len("RESULT ") :])
    out["process_wall"] = wall
    return out


def _build(cache: Path) -> tuple[Path, Path]:
    model, ref = cache / "vgg16_cifar10.keras", cache / "vgg16_cifar10_ref.npz"
    if not (model.exists() and ref.exists()):
        print(f"building the Keras VGG-16 in a child process → {model}", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, "-c", BUILD, str(model), str(ref)], env=env, capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0:
            raise RuntimeError(f"model build failed:\n{proc.stderr[-3000:]}")
    return model, ref


def _best(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{min(values):.2f} ({statistics.median(values):.2f})"


def _cpu_info() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement (best is reported)")
    parser.add_argument(
        "--ablation", action="store_true", help="also measure the optimiser choices and TF import settings"
    )
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/convert2snn/bench"))
    parser.add_argument("--json", help="write the raw measurements to this file")
    args = parser.parse_args(argv)

    cache = Path(args.cache_dir)
    model, ref = _build(cache)
    load_before = os.getloadavg()
    started = time.perf_counter()
    raw: dict = {
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_info(), "platform": platform.platform()},
        "fast_optimizers": list(_fast_optimizers()),
        "tf2onnx_default": [],
        "ours": [],
    }

    # (a) and (b), interleaved so that a change in machine load hits both alike.
    for i in range(args.repeat):
        print(f"[{i + 1}/{args.repeat}] tf2onnx default (all optimisers) …", flush=True)
        raw["tf2onnx_default"].append(_run(TF2ONNX, str(model), "all", "-", "default"))
        print(f"[{i + 1}/{args.repeat}] bridges.to_torch …", flush=True)
        raw["ours"].append(_run(RUNNER, str(model), str(ref)))

    if args.ablation:
        raw["ablation"] = []
        onnx_paths = []
        for label, spec in ABLATION_SETS:
            path = cache / f"ablation_{len(onnx_paths)}.onnx"
            print(f"ablation: tf2onnx with {label} …", flush=True)
            res = _run(TF2ONNX, str(model), _resolve(spec), str(path), "default")
            res.update(label=label, optimizers=_resolve(spec))
            raw["ablation"].append(res)
            onnx_paths.append(str(path))
        print("ablation: ONNX → clean torch for every variant …", flush=True)
        bridged = _run(RUNNER, ",".join(onnx_paths), str(ref))
        for res, b in zip(raw["ablation"], bridged["results"]):
            res["bridge"] = b
        raw["import_ablation"] = {}
        for mode, label in (
            ("default", "ours: ONEDNN_OPTS=0, no sklearn/matplotlib"),
            ("keep_optional", "ONEDNN_OPTS=0, Keras imports sklearn/matplotlib"),
            ("onednn", "ONEDNN_OPTS=1, no sklearn/matplotlib"),
        ):
            runs = []
            for i in range(args.repeat):
                print(f"ablation: TF import, {label} [{i + 1}/{args.repeat}] …", flush=True)
                runs.append(_run(TF2ONNX, str(model), "skip", "-", mode))
            raw["import_ablation"][label] = runs

    raw["load_average"] = {"before": load_before, "after": os.getloadavg()}
    raw["bench_wall"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    print()
    print(report(raw, args))
    return 0


def report(raw: dict, args: argparse.Namespace) -> str:
    a, b = raw["tf2onnx_default"], raw["ours"]
    r = [x["results"][0] for x in b]
    st = [x["timings"]["export_stages"] for x in r]

    def col(xs, key):
        return [x[key] for x in xs]

    n = len(a)
    versions = dict(a[0]["versions"], **b[0]["versions"])
    lines = []
    lines.append(
        f"Machine: {raw['machine']['cpus']} CPU cores ({raw['machine']['cpu']}), no GPU; "
        f"load average before/after: {raw['load_average']['before'][0]:.1f} / {raw['load_average']['after'][0]:.1f}"
    )
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append(f"Our tf2onnx optimisers (FAST_OPTIMIZERS): {', '.join(raw['fast_optimizers'])}")
    lines.append(f"Seconds, best of {n} fresh processes" + (" (median in brackets)" if n > 1 else "") + ".")
    lines.append("")
    lines.append("| stage | wall s | CPU s |")
    lines.append("|---|---:|---:|")
    lines.append(
        "| **(a) tf2onnx `from_keras`, default settings (all optimisers)** | "
        f"**{_best(col(a, 'export'))}** | {_best(col(a, 'cpu_export'))} |"
    )
    lines.append(
        f"|   of which tf2onnx's optimisers ({a[0]['calls']} optimiser runs) | {_best(col(a, 'opt_wall'))} | "
        f"{_best(col(a, 'opt_cpu'))} |"
    )
    lines.append(f"|   (not counted: TF import {_best(col(a, 'import'))}, .keras load {_best(col(a, 'load'))}) | | |")
    lines.append(
        f'| **(b) ours: `bridges.to_torch("vgg16.keras")`, total** | **{_best(col(r, "to_torch"))}** | '
        f"{_best([x['cpu_parent'] + x['cpu_children'] for x in r])} |"
    )
    lines.append(f"|   export child, whole process | {_best(col(st, 'process'))} | {_best(col(r, 'cpu_children'))} |")
    lines.append(
        f"|     TensorFlow + tf2onnx import | {_best(col(st, 'import_tf'))} | {_best(col(st, 'cpu_import_tf'))} |"
    )
    lines.append(f"|     load .keras (+ layer table) | {_best(col(st, 'load'))} | {_best(col(st, 'cpu_load'))} |")
    lines.append(
        f"|     tf2onnx `from_keras`, our optimisers | {_best(col(st, 'export'))} | {_best(col(st, 'cpu_export'))} |"
    )
    lines.append(f"|     ONNX save | {_best(col(st, 'save'))} | {_best(col(st, 'cpu_save'))} |")
    other = [s["process"] - s["import_tf"] - s["load"] - s["export"] - s["save"] for s in st]
    lines.append(f"|     interpreter start-up and exit | {_best(other)} | |")
    tt = [x["timings"] for x in r]
    lines.append(f"|   ONNX → raw fx graph (onnx2torch `convert`) | {_best(col(tt, 'import_onnx'))} | |")
    lines.append(f"|   canonicalisation (passes + equivalence check) | {_best(col(tt, 'canonicalize'))} | |")
    rest = [x["to_torch"] - t["export"] - t["import_onnx"] - t["canonicalize"] for x, t in zip(r, tt)]
    lines.append(f"|   rest (temp files, `onnx.load`, support check) | {_best(rest)} | |")
    lines.append(f"| before `to_torch`, a fresh process imports: torch | {_best(col(b, 'import_torch'))} | |")
    lines.append(f"|   onnx2torch (+ torchvision) | {_best(col(b, 'import_onnx2torch'))} | |")
    lines.append(f"|   bridges (the rest) | {_best(col(b, 'import_bridges'))} | |")
    ratio_best = min(col(a, "export")) / min(col(r, "to_torch"))
    ratio_med = statistics.median(col(a, "export")) / statistics.median(col(r, "to_torch"))
    lines.append("")
    lines.append(
        f"Ratio (a) / (b): {ratio_best:.2f} on the best times, {ratio_med:.2f} on the medians "
        "(> 1: the whole Keras → clean torch bridge, TensorFlow import included, is faster than "
        "tf2onnx's default conversion step alone)."
    )
    lines.append("")
    first = r[0]
    lines.append(
        f"(c) Equivalence, 16 random inputs: Keras vs clean torch, max |diff| / max |Keras output|: "
        f"logits {max(col(r, 'diff_logits')):.1e} (logit scale {first['logit_scale']:.3g}), "
        f"softmax outputs {max(col(r, 'diff_probs')):.1e}. Clean graph: "
        f"{first['onnx2torch_modules']} onnx2torch modules, {first['permutes']} Permute, "
        f"softmax kept as OutputSoftmax: {first['softmax_kept']}; modules: "
        + ", ".join(f"{k.rsplit('.', 1)[1]} ×{v}" for k, v in first["census"].items() if not k.endswith("GraphModule"))
    )
    if "ablation" in raw:
        lines.append("")
        lines.append("Optimiser choices (one fresh child each; our bridge applied to each ONNX in one process):")
        lines.append("")
        lines.append(
            "| tf2onnx optimisers | runs | optimisers CPU s | `from_keras` wall s (CPU s) | ONNX nodes | Transpose | "
            "clean: onnx2torch / Permute / modules | onnx2torch + canonicalise s | logits diff |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---|---:|---:|")
        for res in raw["ablation"]:
            br = res["bridge"]
            nmods = sum(v for k, v in br["census"].items() if not k.endswith("GraphModule"))
            lines.append(
                f"| {res['label']} | {res['calls']} | {res['opt_cpu']:.2f} | "
                f"{res['export']:.2f} ({res['cpu_export']:.2f}) | "
                f"{sum(res['ops'].values())} | {res['ops'].get('Transpose', 0)} | "
                f"{br['onnx2torch_modules']} / {br['permutes']} / {nmods} | "
                f"{br['timings']['import_onnx'] + br['timings']['canonicalize']:.2f} | {br['diff_logits']:.1e} |"
            )
        lines.append("")
        lines.append("Export child's TensorFlow + tf2onnx + keras import (fresh process each):")
        lines.append("")
        lines.append("| settings | import wall s | import CPU s |")
        lines.append("|---|---:|---:|")
        for label, runs in raw["import_ablation"].items():
            lines.append(f"| {label} | {_best(col(runs, 'import'))} | {_best(col(runs, 'cpu_import'))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
