"""Small torch networks for tests: a seeded generator over the rate-convertible layer set."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RandomNet(nn.Module):
    """A random architecture from {Conv, BN, ReLU, ReLU6, Add, Concat, AvgPool, MaxPool, Dense}."""

    def __init__(self, seed: int, channels: int = 2, size: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        pick = lambda n: int(torch.randint(n, (1,), generator=g))  # noqa: E731
        self.kind = pick(4)
        width = 4 + pick(5)
        self.c1 = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, padding=1)
        self.c3 = nn.Conv2d(width, width, 1)
        self.act2 = nn.ReLU6() if pick(2) else nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pick(2) else nn.AvgPool2d(2)
        merged = 2 * width if self.kind == 1 else width
        self.fc1 = nn.Linear(merged * (size // 2) ** 2, 16)
        self.fc2 = nn.Linear(16, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / max(1, p[0].numel()) ** 0.5))
            self.bn.running_mean.copy_(torch.randn(width, generator=g) * 0.3)
            self.bn.running_var.copy_(torch.rand(width, generator=g) + 0.5)
        self.eval()

    def forward(self, x):
        a = torch.relu(self.bn(self.c1(x)))
        b = self.act2(self.c2(a))
        if self.kind == 0:  # residual
            h = torch.relu(a + self.c3(b))
        elif self.kind == 1:  # concat
            h = torch.cat([a, torch.relu(self.c3(b))], dim=1)
        elif self.kind == 2:  # plain
            h = torch.relu(self.c3(b))
        else:  # residual with subtraction-free two-branch sum after pooling
            h = b + torch.relu(self.c3(a))
        h = self.pool(h)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, 4)
        self.eval()

    def forward(self, x):
        return torch.softmax(self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)), dim=1)


def digits_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as float32 [N, 1, 8, 8] in [0, 1] and int64 labels, in a seeded order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))
    return (d.images / 16.0).astype(np.float32)[order, None], d.target.astype(np.int64)[order]


def train_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> nn.Module:
    """``net`` trained in place with Adam on (x, y), batches of 64 in a seeded order; returned in eval mode."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()
