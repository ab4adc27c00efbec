"""Sweep of conversion settings on a small CNN trained on scikit-learn's digits (8×8, 10 classes).

    python benchmarks/sweep_digits.py [--out benchmarks/results/digits_sweep] [--epochs 40]

Trains the CNN with PyTorch (seeded, ~20 s on a laptop CPU), then runs `convert2snn.sweep` over
normalisation percentiles, neuron types, initial potentials, per-channel scales and Mueller's
percentile search (global and per layer), and writes results.{csv,md,json} and the plots.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import convert2snn


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.c3 = nn.Conv2d(32, 32, 3, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        h = torch.relu(self.bn1(self.c1(x)))
        h = self.pool(torch.relu(self.c2(h)))
        h = self.avg(torch.relu(self.c3(h)))
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def digits(seed: int = 0):
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1297], y[:1297]), (x[1297:], y[1297:])


def train(x, y, epochs: int = 40, seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


CONFIGS = [
    {"name": "max-norm (p=100) per-layer", "percentile": 100.0, "per_channel": False},
    {"name": "p=99.99 per-layer", "percentile": 99.99, "per_channel": False},
    {"name": "p=99.9 per-layer", "percentile": 99.9, "per_channel": False},
    {"name": "p=99.9 per-channel (default)"},
    {"name": "default, no centering (v_init=0)", "v_init": 0.0},
    {"name": "default, LIF tau=50", "neuron": "lif", "tau": 50.0},
    {"name": "default, Poisson input", "encoding": "poisson"},
    {"name": "search global", "search": {"target_T": 8}},
    {"name": "search per layer", "search": {"target_T": 8, "per_layer": True}},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/digits_sweep")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = digits()
    t0 = time.perf_counter()
    cache = Path(args.out) / "digits_cnn.pt"
    if cache.exists():
        net = DigitsCNN()
        net.load_state_dict(torch.load(cache, weights_only=True))
        net.eval()
    else:
        net = train(x_train, y_train, args.epochs)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), cache)
    with torch.no_grad():
        acc = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    print(
        f"DigitsCNN (trained or loaded from {cache}) in {time.perf_counter() - t0:.1f} s: "
        f"test accuracy {100 * acc:.2f} %"
    )
    t0 = time.perf_counter()
    result = convert2snn.sweep(
        net, CONFIGS, data=(x_train, x_test, y_test, y_train), timesteps=args.timesteps, output_dir=args.out
    )
    print(result.to_markdown())
    print(f"sweep of {len(CONFIGS)} configurations in {time.perf_counter() - t0:.1f} s; files: {result.files}")


if __name__ == "__main__":
    main()
