"""The GPU run in one command: compiled kernels checked, TF32 checked, the speed table, torchrun.

    bash benchmarks/gpu/run.sh                        # on the GPU machine (installs the carried wheels first)
    python benchmarks/gpu/gpu_check.py --device cpu --quick --out /tmp/gpu   # the dry run (slow test suite)

Stages, each timed and recorded in ``OUT/gpu.json`` even when another fails (a failure is recorded
with its message, the run goes on; exit status 1 if any stage failed):

1. ``environment``: Python, torch, Triton, SpikingJelly, onnx2torch, the device and its memory;
2. ``kernel_tests``: ``tests/convert2snn/neurons/test_kernels.py`` with ``TRITON_INTERPRET``
   unset — on CUDA the Triton kernels run compiled on CUDA tensors, spikes compared bit for bit
   with the CPU torch loops on the same inputs (the whole-network test included);
3. ``tf32``: a converted random CIFAR VGG simulated on the device with TF32 convolutions off
   and on, each compared with the CPU run: the fraction of spike counts and predictions that
   differ, and what PyTorch's TF32 flags were (the engine leaves them as the user set them);
4. ``speed``: ``benchmarks/bench_speed.py`` on the device (random VGG: speed does not depend on
   the weights): rate at T = 8…128 and batch 32…1024, population n = 16, single-spike temporal,
   SpikingJelly's converted model interleaved in the same run; its JSON beside ours;
5. ``torchrun``: ``torch.distributed.run --nproc_per_node 1`` (NCCL on CUDA, gloo on the CPU)
   evaluates a converted network; the merged result must equal one plain process's;
6. ``fine_tune``: `SpikingModel.fine_tune` of the random VGG on the device at T = 2, 4, 8 (learned
   thresholds, a few batches): images per second of backpropagation through time, the micro-batch
   the memory plan chose, the loss.

``--quick`` shrinks every stage to seconds (the dry run). Wall-time budget on an H200: see README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def environment(args) -> dict:
    import numpy
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": args.device,
        "cuda_available": torch.cuda.is_available(),
    }
    for name in ("triton", "spikingjelly", "onnx2torch", "onnx"):
        try:
            info[name] = __import__(name).__dict__.get("__version__", "installed")
        except ImportError:
            info[name] = None
    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(
            device_name=props.name,
            multiprocessors=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
        )
    return info


def kernel_tests(args) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled where a GPU is
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/convert2snn/neurons/test_kernels.py"]
    if args.quick:
        cmd += ["-k", "carries_over or networks_give_the_same and rate"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.stage_timeout)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    if proc.returncode != 0:
        raise RuntimeError("kernel tests failed:\n" + "\n".join(tail))
    return {"summary": tail[-1] if tail else "", "compiled": bool(args.device.startswith("cuda"))}


def _random_vgg_snn(samples: int):
    import warnings

    import torch
    from bench_speed import random_vgg

    import convert2snn

    x = torch.rand(samples, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert2snn.convert(random_vgg(), "rate", x, progress=False), x


def tf32(args) -> dict:
    import numpy as np
    import torch

    snn, x = _random_vgg_snn(64 if args.quick else 512)
    steps = 8 if args.quick else 32
    reference = snn.spike_counts(x, timesteps=steps, per_neuron=True)
    ref_pred = snn.predict(x, timesteps=steps).argmax(1)
    flags = {
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    out = {"flags_as_found": flags, "T": steps, "samples": int(x.shape[0]), "runs": {}}
    snn.to(args.device)
    try:
        for allow in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = allow
            torch.backends.cudnn.allow_tf32 = allow
            counts = snn.spike_counts(x, timesteps=steps, per_neuron=True)
            pred = snn.predict(x, timesteps=steps).argmax(1)
            differ = sum(int((counts[k] != reference[k]).sum()) for k in reference)
            total = sum(int(np.asarray(reference[k]).size) for k in reference)
            out["runs"][f"tf32_{'on' if allow else 'off'}"] = {
                "spike_counts_differing": differ / total,
                "predictions_differing": float((pred != ref_pred).mean()),
            }
    finally:
        torch.backends.cuda.matmul.allow_tf32 = flags["matmul_allow_tf32"]
        torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]
        snn.to("cpu")
    return out


def speed(args) -> dict:
    import bench_speed

    path = Path(args.out) / "speed.json"
    argv = ["--device", args.device, "--random", "--json", str(path), "--ttfs"]
    if args.quick:
        argv += ["--timesteps", "8", "--batches", "32", "--main-batch", "32", "--main-T", "8", "--repeat", "1"]
        argv += ["--population", "1"]
    else:
        argv += ["--timesteps", "8", "16", "32", "64", "128", "--batches", "32", "128", "512", "1024"]
        argv += ["--main-batch", "256", "--main-T", "32", "--population", "1", "2", "4"]
    if bench_speed.main(argv) != 0:
        raise RuntimeError("bench_speed.py failed")
    result = json.loads(path.read_text())
    return {"json": path.name, "rows": result["rows"], "other_codes": result["other_codes"]}


DIST_SCRIPT = """
import json, os, sys, warnings
import numpy as np, torch
import convert2snn
warnings.simplefilter("ignore")
snn = convert2snn.load(sys.argv[1])
if torch.cuda.is_available():
    snn.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
with np.load(sys.argv[2]) as f:
    x, y = f["x"], f["y"]
r = snn.evaluate(x, y, timesteps=[4, 16], batch_size=16)
import torch.distributed as dist
if dist.get_rank() == 0:
    json.dump({"result": r.as_dict(), "world": dist.get_world_size(), "backend": dist.get_backend()},
              open(sys.argv[3], "w"))
"""


def torchrun(args) -> dict:
    import numpy as np

    snn, x = _random_vgg_snn(64)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_dist_"))  # not under OUT: the device returns 8 files at most
    x_eval = x[:32].numpy()
    y = snn.ann_predict(x_eval).argmax(1)
    np.savez(work / "data.npz", x=x_eval, y=y)
    snn.save(work / "snn.c2s")
    (work / "script.py").write_text(DIST_SCRIPT)
    if args.device.startswith("cuda"):
        snn.to(args.device)
    plain = snn.evaluate(x_eval, y, timesteps=[4, 16], batch_size=16)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmd += [str(work / "script.py"), str(work / "snn.c2s"), str(work / "data.npz"), str(work / "out.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.stage_timeout)
    if proc.returncode != 0:
        raise RuntimeError("torchrun failed:\n" + "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:]))
    merged = json.loads((work / "out.json").read_text())
    for name in ("accuracy", "spikes_per_neuron", "sops"):
        if not np.allclose(merged["result"][name], getattr(plain, name), rtol=1e-6, atol=0):
            raise RuntimeError(f"torchrun's {name} {merged['result'][name]} differs from one process's")
    return {"world": merged["world"], "backend": merged["backend"], "accuracy": plain.accuracy}


def fine_tune(args) -> dict:
    import copy

    snn, x = _random_vgg_snn(64 if args.quick else 2048)
    y = snn.ann_predict(x).argmax(1)  # the ANN's own labels: something learnable
    batches, batch = (2, 32) if args.quick else (8, 256)
    out = {}
    for steps in [2] if args.quick else [2, 4, 8]:
        model = copy.deepcopy(snn).to(args.device)
        result = model.fine_tune(
            x, y, timesteps=steps, batch_size=batch, steps_per_epoch=batches, learn_thresholds=True, progress=False
        )
        epoch = result.epochs[0]
        out[f"T{steps}"] = {
            "images_per_s": epoch.samples / epoch.seconds,
            "batch": batch,
            "micro_batch": result.micro_batch,
            "loss": epoch.loss,
            "accuracy_before": result.accuracy_before,
            "accuracy_after": result.accuracy_after,
        }
        log(f"  fine-tune T={steps}: {out[f'T{steps}']['images_per_s']:.0f} images/s, micro-batch {result.micro_batch}")
    return out


STAGES = {
    "environment": environment,
    "kernel_tests": kernel_tests,
    "tf32": tf32,
    "speed": speed,
    "torchrun": torchrun,
    "fine_tune": fine_tune,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the GPU run) or cpu (the dry run)")
    p.add_argument("--quick", action="store_true", help="every stage in seconds (the dry run)")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_out"), help="where gpu.json and speed.json go")
    p.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    p.add_argument("--stage-timeout", type=int, default=300, help="seconds for a stage's child process")
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no GPU (use --device cpu for the dry run)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report: dict = {"command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "stages": {}}
    start = time.perf_counter()
    for name in args.stages:
        log(f"{name} …")
        t0 = time.perf_counter()
        try:
            result, error = STAGES[name](args), None
        except Exception as exc:  # noqa: BLE001 - one stage's failure is recorded; the others still run
            result, error = None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
            log(f"{name} FAILED: {error}")
        report["stages"][name] = {"seconds": round(time.perf_counter() - t0, 1), "result": result, "error": error}
        log(f"{name}: {report['stages'][name]['seconds']} s" + (" (failed)" if error else ""))
        (Path(args.out) / "gpu.json").write_text(json.dumps(report, indent=1, default=str))  # kept if killed
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    (Path(args.out) / "gpu.json").write_text(json.dumps(report, indent=1, default=str))
    failed = [name for name, stage in report["stages"].items() if stage["error"]]
    log(f"done in {report['total_seconds']} s; " + (f"FAILED: {', '.join(failed)}" if failed else "every stage passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
