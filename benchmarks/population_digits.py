"""Population conversion on scikit-learn's bundled digits: the numbers in RESULTS.md ("Population conversion").

    python benchmarks/population_digits.py [--models DIR] [--out benchmarks/results/population_digits.json]

1. ReLU CNN (PyTorch, seeded, trained here in ~10 s): rate conversion vs population conversion
   (dither) at n = 1, 4, 16 (and threshold mismatch at n = 16): accuracy at every T on a grid up
   to 256, the first T from which the SNN stays within 0.5 pp (and 1 pp) of the ANN, neurons,
   neurons × T and spikes per inference there.
2. Keras MLP (sigmoid + tanh) and Keras LSTM (rows as time steps), trained in a child process by
   examples/population_example.py: accuracy vs n ∈ {1, 4, 16, 64} for both mismatch models.
3. What other activations cost: the same CNN trained (PyTorch, seeded) with SiLU, GELU, ELU,
   LeakyReLU(0.1), hard-swish, Mish, Softplus and tanh instead of ReLU, each converted to
   populations (n = 4, 16; a scalar activation becomes one population per monotone piece):
   accuracy at every T, the first T within 0.5 pp of its ANN, neurons and spikes there
   (``--activations-only`` runs just this part).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import convert2snn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import population_example as example  # noqa: E402  (digits split, Keras training in a child process)

GRID = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256]


class DigitsCNN(nn.Module):
    """conv 16 → ReLU → maxpool → conv 32 → ReLU → maxpool → dense 64 → ReLU → dense 10."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        h = self.pool(torch.relu(self.c1(x)))
        h = self.pool(torch.relu(self.c2(h)))
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


class ActivationCNN(DigitsCNN):
    """DigitsCNN with another activation in place of every ReLU."""

    def __init__(self, activation: nn.Module):
        super().__init__()
        self.a1, self.a2, self.a3 = activation, copy.deepcopy(activation), copy.deepcopy(activation)

    def forward(self, x):
        h = self.pool(self.a1(self.c1(x)))
        h = self.pool(self.a2(self.c2(h)))
        return self.fc2(self.a3(self.fc1(h.flatten(1))))


ACTIVATIONS = {
    "ReLU": nn.ReLU,
    "SiLU": nn.SiLU,
    "GELU": nn.GELU,
    "ELU": nn.ELU,
    "LeakyReLU(0.1)": lambda: nn.LeakyReLU(0.1),
    "Hardswish": nn.Hardswish,
    "Mish": nn.Mish,
    "Softplus": nn.Softplus,
    "Tanh": nn.Tanh,
}


def train_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 60, activation: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    net = DigitsCNN() if activation is None else ActivationCNN(activation)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


def stays_within(ts: list[int], acc: list[float], ann: float, pp: float) -> int | None:
    """The first T from which every later T of the grid is within ``pp`` of the ANN."""
    first = None
    for t, a in zip(ts, acc):
        if a >= ann - pp / 100 - 1e-12:
            first = t if first is None else first
        else:
            first = None
    return first


def run_cnn(x_tr, y_tr, x_te, y_te) -> dict:
    x_tr4, x_te4 = x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8)
    t0 = time.perf_counter()
    net = train_cnn(x_tr4, y_tr)
    out = {"train_s": time.perf_counter() - t0, "runs": []}
    configs = [
        ("rate", {}),
        ("population", {"n": 1}),
        ("population", {"n": 4}),
        ("population", {"n": 16}),
        ("population", {"n": 16, "mismatch": "threshold"}),
    ]
    for kind, opts in configs:
        snn = convert2snn.convert(net, kind, calibration_data=x_tr4, progress=False, **opts)
        t0 = time.perf_counter()
        r = snn.evaluate(x_te4, y_te, timesteps=GRID)
        wall = time.perf_counter() - t0
        neurons = sum(snn.neuron_counts().values())
        run = {
            "type": kind,
            **opts,
            "neurons": neurons,
            "ann": r.ann_accuracy,
            "accuracy": r.accuracy,
            "spikes_per_neuron": r.spikes_per_neuron,
            "sim_wall_s_T256": wall,
        }
        for pp in (0.5, 1.0):
            t = stays_within(GRID, r.accuracy, r.ann_accuracy, pp)
            run[f"T_{pp}pp"] = t
            if t is not None:
                i = GRID.index(t)
                run[f"neuron_steps_{pp}pp"] = neurons * t
                run[f"spikes_{pp}pp"] = r.spikes_per_neuron[i] * neurons
        out["runs"].append(run)
        print(
            f"[cnn] {kind} {opts}: neurons {neurons}, T(0.5pp) {run['T_0.5pp']}, T(1pp) {run['T_1.0pp']}, "
            f"acc@{GRID[:8]} {[round(100 * a, 1) for a in r.accuracy[:8]]}, sim {wall:.1f}s",
            flush=True,
        )
    return out


def run_activations(x_tr, y_tr, x_te, y_te) -> dict:
    """Section 3: each activation's CNN through population conversion at n = 4 and 16."""
    x_tr4, x_te4 = x_tr.reshape(-1, 1, 8, 8), x_te.reshape(-1, 1, 8, 8)
    grid = [t for t in GRID if t <= 64]
    out: dict = {"grid": grid, "runs": []}
    for name, make in ACTIVATIONS.items():
        t0 = time.perf_counter()
        net = train_cnn(x_tr4, y_tr, activation=make())
        train_s = time.perf_counter() - t0
        for n in (4, 16):
            t0 = time.perf_counter()
            snn = convert2snn.convert(net, "population", calibration_data=x_tr4, n=n, progress=False)
            convert_s = time.perf_counter() - t0
            r = snn.evaluate(x_te4, y_te, timesteps=grid)
            neurons = sum(snn.neuron_counts().values())
            t_half = stays_within(grid, r.accuracy, r.ann_accuracy, 0.5)
            at = grid.index(t_half) if t_half is not None else None
            run = {
                "activation": name,
                "n": n,
                "train_s": train_s,
                "convert_s": convert_s,
                "neurons": neurons,
                "ann": r.ann_accuracy,
                "accuracy": r.accuracy,
                "T_0.5pp": t_half,
                "spikes_0.5pp": None if at is None else r.spikes_per_neuron[at] * neurons,
                "spikes_per_step": r.spikes_per_neuron[-1] * neurons / grid[-1],
            }
            out["runs"].append(run)
            print(
                f"[activations] {name} n={n}: ANN {100 * r.ann_accuracy:.1f}, neurons {neurons}, T(0.5pp) {t_half}, "
                f"acc@{grid[:6]} {[round(100 * a, 1) for a in r.accuracy[:6]]}",
                flush=True,
            )
    return out


def activations_table(out: dict) -> str:
    grid = out["grid"]
    shown = [t for t in (1, 2, 4, 8, 16, 64) if t in grid]
    lines = [
        "| activation | n | neurons | ANN | " + " | ".join(f"T={t}" for t in shown) + " | T(0.5 pp) | spikes there |",
        "|---|---:|---:|---:|" + "---:|" * len(shown) + "---:|---:|",
    ]
    for run in out["runs"]:
        accs = " | ".join(f"{100 * run['accuracy'][grid.index(t)]:.1f}" for t in shown)
        spikes = "–" if run["spikes_0.5pp"] is None else f"{run['spikes_0.5pp']:,.0f}".replace(",", " ")
        lines.append(
            f"| {run['activation']} | {run['n']} | {run['neurons']:,} | {100 * run['ann']:.1f} | {accs} | "
            f"{run['T_0.5pp'] or '> ' + str(grid[-1])} | {spikes} |".replace(",", " ")
        )
    return "\n".join(lines)


def run_keras(models: Path, x_tr, x_te, y_te) -> dict:
    if not (models / "mlp.keras").exists() or not (models / "lstm.keras").exists():
        models.mkdir(parents=True, exist_ok=True)
        example.train_in_child(models)
    ts = [1, 2, 4, 8, 16, 32, 64]
    out = {}
    for name, shape in (("mlp", (-1, 64)), ("lstm", (-1, 8, 8))):
        out[name] = {}
        for mismatch in ("dither", "threshold"):
            rows = example.compare(
                models / f"{name}.keras",
                x_tr.reshape(shape),
                x_te.reshape(shape),
                y_te,
                [1, 4, 16, 64] + ([256] if mismatch == "threshold" else []),
                ts,
                mismatch,
            )
            out[name][mismatch] = rows
            print(example.table(f"{name}, mismatch={mismatch}", rows, ts), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=Path.home() / ".cache" / "convert2snn" / "population_digits")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "population_digits.json")
    p.add_argument("--skip-keras", action="store_true")
    p.add_argument("--activations-only", action="store_true", help="only section 3 (other activations)")
    args = p.parse_args(argv)
    x_tr, x_te, y_tr, y_te = example.digits_split()
    result: dict = {"grid": GRID}
    if args.activations_only and args.out.exists():  # keep the other sections of an earlier full run
        result = json.loads(args.out.read_text())
    if not args.activations_only:
        result["cnn"] = run_cnn(x_tr, y_tr, x_te, y_te)
        if not args.skip_keras:
            result["keras"] = run_keras(args.models, x_tr, x_te, y_te)
    result["activations"] = run_activations(x_tr, y_tr, x_te, y_te)
    print(activations_table(result["activations"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
