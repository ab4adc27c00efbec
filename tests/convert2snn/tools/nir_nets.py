"""Networks for the NIR export and interop tests: the MNIST-style CNN of the issue (Conv–ReLU–AvgPool–Conv–ReLU–
Flatten–Linear) and a residual CNN (an identity skip into an Add), both for 8×8 digits, trained briefly."""

from __future__ import annotations

import torch
from torch import nn

from tests.convert2snn.nets import digits_arrays, train_classifier


class AvgCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        torch.manual_seed(5)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12 * 2 * 2, classes)
        self.eval()

    def forward(self, x):
        h = torch.relu(self.conv2(self.pool(torch.relu(self.conv1(x)))))
        return self.fc(h.flatten(1))


class ResidualCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, classes)
        self.eval()

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv3(torch.relu(self.conv2(h))) + h)  # identity skip
        return self.fc(self.pool(h).flatten(1))


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits_arrays()
    return torch.from_numpy(x), torch.from_numpy(y)


def trained(net: nn.Module, epochs: int = 6) -> nn.Module:
    """``net`` trained on the first 1 200 digits (a few seconds)."""
    x, y = digits()
    return train_classifier(net.train(), x[:1200], y[:1200], epochs=epochs, lr=3e-3)


def sequence(x: torch.Tensor, steps: int) -> torch.Tensor:
    """A constant input current for ``steps`` steps: [T, B, ...]."""
    return x.unsqueeze(0).expand(steps, *x.shape).contiguous()


def run_in(consumer: str, snn, path, steps: int = 16, samples: int = 64, own_neurons: bool = False):
    """Export ``snn`` for ``consumer`` to ``path``, run the file there on test digits for ``steps`` steps and compare
    with convert2snn's own run: (Agreement, the consumer's mean output, ours, the labels)."""
    import warnings

    from convert2snn.tools import nir_consumers

    x, y = digits()
    x, y = x[-samples:], y[-samples:]  # held out from training
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the default neurons' warning (tested in test_nir)
        snn.to_nir(path, consumer=consumer)
    xs = sequence(x, steps)
    readout, spikes = nir_consumers.reference(snn.network, xs)
    run = nir_consumers.simulate(consumer, path, xs, own_neurons=own_neurons)
    assert set(run.spikes) == set(spikes), "every spiking layer recorded under its NIR node name"
    return nir_consumers.compare(run, readout, spikes), run.outputs.mean(0), readout, y
