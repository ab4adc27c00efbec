"""Running an SNN over time: batches, time chunks, input encoding, spike counting.

One simulation up to max(T) serves every requested T: the readout reports its running
estimate at each step, so accuracy at T = 4, 8, …, 256 comes from a single run. Time is
processed in chunks so that memory stays bounded for long T; neuron state carries over
between chunks. Analog input is passed as a stride-0 view, so the layers before the first
neuron compute once per sample (see `convert2snn.sequence`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn

from .nodes import is_neuron
from .progress import progress_bar
from .sequence import constant_sequence

# Memory for one chunk's activations (all layers, the whole batch) when nothing else is said.
DEFAULT_CHUNK_BYTES = 1 << 30


@dataclass
class SpikeRecord:
    """Spikes of each neuron layer: per time step (summed over samples and neurons) and per neuron."""

    per_step: dict[str, np.ndarray] = field(default_factory=dict)  # layer → [T_max] spikes at step t
    per_neuron: dict[str, np.ndarray] = field(default_factory=dict)  # layer → [neurons] spikes over all samples
    neurons: dict[str, int] = field(default_factory=dict)  # layer → neurons per sample


@dataclass
class SimulationResult:
    outputs: dict[int, np.ndarray]  # T → [N, C] readout after T steps
    spikes: SpikeRecord
    samples: int


class _SpikeCounter:
    """Forward hooks on every neuron module: the one counting mechanism behind all spike metrics."""

    def __init__(self, network: nn.Module, names: dict[str, str], steps: int, per_neuron: bool):
        self.per_step: dict[str, torch.Tensor] = {}
        self.per_neuron: dict[str, torch.Tensor] = {}
        self.neurons: dict[str, int] = {}
        self.offset = 0
        self.steps = steps
        self.per_neuron_enabled = per_neuron
        self.handles = []
        for module_name, module in network.named_modules():
            if is_neuron(module):
                layer = names.get(module_name, module_name)
                self.handles.append(module.register_forward_hook(self._hook(layer)))

    def _hook(self, layer: str):
        def hook(_module, _inputs, spikes: torch.Tensor) -> None:
            steps = spikes.shape[0]
            flat = spikes.detach().reshape(steps, spikes.shape[1], -1)
            self.neurons[layer] = flat.shape[2]
            if layer not in self.per_step:
                self.per_step[layer] = torch.zeros(self.steps, dtype=torch.float64)
            self.per_step[layer][self.offset:self.offset + steps] += flat.sum(dim=(1, 2)).double().cpu()
            if self.per_neuron_enabled:
                counts = flat.sum(dim=(0, 1)).double().cpu()
                self.per_neuron[layer] = self.per_neuron.get(layer, torch.zeros_like(counts)) + counts
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def chunk_length(activation_elements: int, batch: int, steps: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Time steps per chunk so that a chunk's activations fit in ``budget_bytes``."""
    per_step = max(1, activation_elements) * batch * 4 * 2  # float32, input and output of each layer
    return int(max(1, min(steps, budget_bytes // per_step)))


@torch.no_grad()
def simulate(network: nn.Module, x: torch.Tensor, timesteps: list[int], *, batch_size: int = 256,
             encoding: str = "analog", seed: int = 0, device: str | torch.device = "cpu", layer_names: dict[str, str] | None = None,
             activation_elements: int = 0, per_neuron: bool = False, progress: bool = True,
             chunk: int | None = None) -> SimulationResult:
    """Simulate ``network`` on ``x`` (the ANN's layout, [N, ...]) up to max(timesteps).

    ``encoding="analog"`` feeds ``x`` as a constant current; ``"poisson"`` feeds Bernoulli spikes
    with probability ``x`` per step (``x`` in [0, 1]), drawn from a generator seeded with ``seed``.
    """
    steps = max(timesteps)
    wanted = sorted(set(timesteps))
    network = network.to(device).eval()
    counter = _SpikeCounter(network, layer_names or {}, steps, per_neuron)
    outputs: dict[int, list[torch.Tensor]] = {t: [] for t in wanted}
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = x.shape[0]
    try:
        for start in progress_bar(range(0, n, batch_size), desc=f"simulating T={steps}", enabled=progress,
                                  total=math.ceil(n / batch_size)):
            xb = x[start:start + batch_size].to(device)
            functional.reset_net(network)
            tc = chunk or chunk_length(activation_elements, xb.shape[0], steps)
            counter.offset = 0
            for t0 in range(0, steps, tc):
                length = min(tc, steps - t0)
                if encoding == "poisson":
                    noise = torch.rand((length,) + tuple(xb.shape), generator=gen).to(device)
                    x_seq = (noise < xb.unsqueeze(0)).to(xb.dtype)
                else:
                    x_seq = constant_sequence(xb, length)
                out = network(x_seq)
                for t in wanted:
                    if t0 < t <= t0 + length:
                        outputs[t].append(out[t - t0 - 1].float().cpu())
                counter.offset += length
            functional.reset_net(network)
    finally:
        counter.close()
    record = SpikeRecord(per_step={k: v.numpy() for k, v in counter.per_step.items()},
                         per_neuron={k: v.numpy() for k, v in counter.per_neuron.items()}, neurons=dict(counter.neurons))
    return SimulationResult(outputs={t: torch.cat(v).numpy() for t, v in outputs.items()}, spikes=record, samples=n)
