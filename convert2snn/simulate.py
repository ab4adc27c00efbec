"""Running an SNN over time: batches, time chunks, input encoding, spike counting.

One simulation up to max(T) serves every requested T: the readout reports its running
estimate at each step, so accuracy at T = 4, 8, …, 256 comes from a single run. Time is
processed in chunks so that memory stays bounded for long T; neuron state carries over
between chunks. Analog input is passed as a stride-0 view, so the layers before the first
neuron compute once per sample (see `convert2snn.sequence`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import platform
from dataclasses import dataclass, field

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn

from .errors import SimulationMemoryError
from .inputs import check_timesteps
from .neurons import is_neuron, unit_spikes
from .progress import progress_bar
from .sequence import constant_sequence, memory_order, multi_step_mode

# Memory for one chunk's activations (all layers, the whole batch) when nothing else is said.
DEFAULT_CHUNK_BYTES = 1 << 30
# On the CPU, the largest single layer output of a chunk: tensors above glibc's mmap threshold
# (32 MiB) are fresh pages on every allocation, page-faulted in at ~3x the cost of reusing heap
# memory, and small chunks keep a layer's output in cache for the neuron scan that reads it next.
# Measured on the CIFAR-10 VGG (benchmarks/bench_speed.py): 2 steps x batch 128 (16 MiB) runs
# 1.15-1.3x faster than 16 steps.
CPU_LAYER_CHUNK_BYTES = 16 << 20
# glibc's malloc gives allocations above its mmap threshold (adaptive, at most 32 MiB) fresh pages
# every time and hands freed heap tops above its trim threshold back to the OS, so the next chunk
# page-faults them in again. A chunked simulation allocates and frees many multi-MiB tensors per
# chunk: on the CIFAR-10 VGG (batch 128, T = 32) the faults cost 10-15 % of a CPU simulation.
# `tune_cpu_allocator` raises both thresholds, so up to 256 MiB of freed memory stays for reuse.
MALLOC_MMAP_THRESHOLD = 64 << 20
MALLOC_TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)

logger = logging.getLogger("convert2snn")


@dataclass
class SpikeRecord:
    """Spikes of each neuron layer: per time step (summed over samples and neurons) and per neuron."""

    per_step: dict[str, np.ndarray] = field(default_factory=dict)  # layer → [T_max] spikes at step t
    per_neuron: dict[str, np.ndarray] = field(default_factory=dict)  # layer → [neurons] spikes over all samples
    neurons: dict[str, int] = field(default_factory=dict)  # layer → neurons per sample
    sops_per_step: dict[str, np.ndarray] = field(default_factory=dict)  # layer → [T_max] spikes × fan-out at step t
    traces: dict[str, np.ndarray] = field(default_factory=dict)  # layer → [T_max, k] spike trains of the first sample


@dataclass
class SimulationResult:
    """What `simulate` returns: the readout after each requested T (T → [N, C]), the spike record, the sample count."""

    outputs: dict[int, np.ndarray]  # T → [N, C] readout after T steps
    spikes: SpikeRecord
    samples: int


def _sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t.sum(dim)`` for spike counts, reduced in ``t``'s memory order: torch's reductions over a
    channels-last tensor's outer axes are up to 10x slower than over the same memory viewed as
    contiguous. An expanded axis is multiplied, not summed (exact for counts)."""
    if t.stride(dim) == 0:  # an expanded axis (a silent or constant chunk): every slice is the same
        return t.select(dim, 0) * t.shape[dim]
    order = memory_order(t)
    kept = [d for d in order if d != dim]
    out = t.permute(order).sum(dim=order.index(dim))  # dims: `kept`, in memory order
    return out.permute([kept.index(d) for d in sorted(kept)])


class _SpikeCounter:
    """Forward hooks on every neuron module: the one counting mechanism behind all spike metrics.

    Always: spikes per layer and step. Optionally: spikes per neuron (summed over samples);
    synaptic operations per layer and step (``fan_out``: layer → per-neuron fan-out; the key
    ``"input"`` counts spike-coded input through a pre-hook on the network); per-sample counts up
    to each T in ``snapshots`` handed to ``sink`` (a `convert2snn.metrics.SampleCounts`: histograms,
    ANN↔SNN correlation); spike trains of chosen neurons of the first sample (``trace``).
    ``enabled=False`` attaches no hooks (nothing counted; `simulate(count=False)`).
    """

    def __init__(
        self,
        network: nn.Module,
        names: dict[str, str],
        steps: int,
        per_neuron: bool,
        *,
        fan_out: dict[str, torch.Tensor] | None = None,
        snapshots: tuple[int, ...] = (),
        sink=None,
        trace: dict[str, torch.Tensor] | None = None,
        enabled: bool = True,
    ):
        self.per_step: dict[str, torch.Tensor] = {}
        self.per_neuron: dict[str, torch.Tensor] = {}
        self.sops: dict[str, torch.Tensor] = {}
        self.traces: dict[str, torch.Tensor] = {}
        self.neurons: dict[str, int] = {}
        self.offset = 0
        self.batch = -1
        self.steps = steps
        self.per_neuron_enabled = per_neuron
        self.fan_out = {k: v.reshape(-1).double() for k, v in (fan_out or {}).items()}
        self.snapshots = list(snapshots) if sink is not None else []  # sorted, as `simulate` passes them
        self.sink = sink
        self.trace = trace or {}
        self.running: dict[str, torch.Tensor] = {}
        self.handles = []
        if not enabled:  # no hooks: nothing is counted, the record stays empty
            return
        for module_name, module in network.named_modules():
            if is_neuron(module):
                layer = names.get(module_name, module_name)
                self.handles.append(module.register_forward_hook(self._hook(layer)))
        if "input" in self.fan_out:
            self.handles.append(network.register_forward_pre_hook(self._input_hook))

    def start_batch(self, x: torch.Tensor) -> None:
        self.offset = 0
        self.batch += 1
        self.running = {}
        if self.sink is not None:
            self.sink.begin_batch(x)

    def end_batch(self) -> None:
        if self.sink is not None:
            self.sink.end_batch()

    def _add_sops(self, layer: str, over_batch: torch.Tensor) -> None:
        """``over_batch``: [steps, *unit_shape] spikes summed over the batch."""
        fan = self.fan_out.get(layer)
        if fan is None:
            return
        if fan.device != over_batch.device:
            fan = self.fan_out[layer] = fan.to(over_batch.device)
        if layer not in self.sops:
            self.sops[layer] = torch.zeros(self.steps, dtype=torch.float64, device=over_batch.device)
        steps = over_batch.shape[0]
        self.sops[layer][self.offset : self.offset + steps] += over_batch.reshape(steps, -1).double() @ fan

    def _input_hook(self, _module, args) -> None:
        x_seq = args[0].detach()
        self._add_sops("input", _sum(x_seq, 1))

    def _hook(self, layer: str):
        def hook(_module, _inputs, spikes: torch.Tensor) -> None:
            units = unit_spikes(_module, spikes.detach())  # [steps, B, *unit_shape], in the simulation's layout
            steps, batch = units.shape[:2]
            self.neurons[layer] = units[0, 0].numel()
            # One pass over the spikes (summed over the batch) feeds the per-step, per-neuron and SOP
            # counts; the per-sample counts cost a second pass, only when asked for. Flattening happens
            # after the reduction, so a channels-last layout costs no copy of the spikes. Counters stay
            # on the simulation's device (no host copy, no sync per chunk): see `record`.
            over_batch = _sum(units, 1)
            if layer not in self.per_step:
                self.per_step[layer] = torch.zeros(self.steps, dtype=torch.float64, device=units.device)
            self.per_step[layer][self.offset : self.offset + steps] += over_batch.reshape(steps, -1).sum(dim=1).double()
            if self.per_neuron_enabled:
                counts = over_batch.sum(dim=0).double().reshape(-1)
                self.per_neuron[layer] = self.per_neuron.get(layer, torch.zeros_like(counts)) + counts
            self._add_sops(layer, over_batch)
            if self.snapshots:
                running = self.running.get(layer)
                if running is None:
                    running = torch.zeros_like(units[0], dtype=torch.float32)
                for t in self.snapshots:
                    if self.offset < t <= self.offset + steps:
                        self.sink.update(layer, t, (running + _sum(units[: t - self.offset], 0)).reshape(batch, -1))
                self.running[layer] = running + _sum(units, 0)
            if self.batch == 0 and layer in self.trace:
                if layer not in self.traces:
                    self.traces[layer] = torch.zeros(self.steps, len(self.trace[layer]), device=units.device)
                idx = self.trace[layer].to(units.device)
                self.traces[layer][self.offset : self.offset + steps] = units[:, 0].reshape(steps, -1)[:, idx].float()

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def record(self) -> SpikeRecord:
        """Everything counted, on the host (the one device→host copy of a simulation)."""
        host = lambda d: {k: v.cpu().numpy() for k, v in d.items()}  # noqa: E731
        return SpikeRecord(
            per_step=host(self.per_step),
            per_neuron=host(self.per_neuron),
            neurons=dict(self.neurons),
            sops_per_step=host(self.sops),
            traces=host(self.traces),
        )


def chunk_length(
    activation_elements: int,
    batch: int,
    steps: int,
    budget_bytes: int | None = None,
    *,
    largest_elements: int = 0,
    device: torch.device | str = "cpu",
) -> int:
    """Time steps per chunk so that a chunk's activations fit in ``budget_bytes``; on the CPU also
    so that its largest layer output (``largest_elements`` per sample and step) stays within
    `CPU_LAYER_CHUNK_BYTES`."""
    budget = DEFAULT_CHUNK_BYTES if budget_bytes is None else budget_bytes
    per_step = _bytes_per_sample_step(activation_elements) * batch
    length = budget // per_step
    if torch.device(device).type == "cpu" and largest_elements > 0:
        length = min(length, CPU_LAYER_CHUNK_BYTES // (largest_elements * 4 * batch))
    return int(max(1, min(steps, length)))


@functools.lru_cache(maxsize=1)
def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (see `MALLOC_TRIM_THRESHOLD`), when
    a simulation first runs on the CPU. True if done; a no-op off glibc or with
    ``CONVERT2SNN_NO_MALLOC_TUNING=1`` in the environment."""
    if os.environ.get("CONVERT2SNN_NO_MALLOC_TUNING") == "1" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    done = (
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD) == 1
    )
    logger.info(
        "convert2snn: glibc malloc thresholds raised for CPU simulation (mmap %d MiB, trim %d MiB); "
        "CONVERT2SNN_NO_MALLOC_TUNING=1 leaves them alone",
        MALLOC_MMAP_THRESHOLD >> 20,
        MALLOC_TRIM_THRESHOLD >> 20,
    )
    return done


def memory_format_for(x: torch.Tensor, device: torch.device | str) -> torch.memory_format:
    """The layout to simulate image batches in: channels-last on the CPU, where oneDNN's
    convolutions run 1.3-1.6x faster in it (measured on the CIFAR-10 VGG, batch 128-2048); the
    default layout elsewhere and for inputs that are not [N, C, H, W]."""
    if x.dim() == 4 and torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.channels_last
    return torch.contiguous_format


def _bytes_per_sample_step(activation_elements: int) -> int:
    return max(1, activation_elements) * 4 * 2  # float32, input and output of each layer


def available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (None when unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def plan_batch(activation_elements: int, batch_size: int, device: torch.device) -> int:
    """The batch size to simulate with: ``batch_size`` reduced so that one time step of the batch
    fits the chunk budget. Raises `SimulationMemoryError` if one sample's single step cannot fit
    in the device's free memory."""
    per_sample = _bytes_per_sample_step(activation_elements)
    free = available_memory(device)
    if free is not None and per_sample > free:
        raise SimulationMemoryError(
            f"one sample needs {per_sample / 2**20:.0f} MiB of activations per time step but only "
            f"{free / 2**20:.0f} MiB are free on {device}; use a smaller input or a device with more memory"
        )
    return int(max(1, min(batch_size, DEFAULT_CHUNK_BYTES // per_sample)))


@torch.no_grad()
def simulate(
    network: nn.Module,
    x: torch.Tensor,
    timesteps: list[int],
    *,
    batch_size: int = 256,
    encoding: str = "analog",
    seed: int = 0,
    device: str | torch.device = "cpu",
    layer_names: dict[str, str] | None = None,
    activation_elements: int = 0,
    per_neuron: bool = False,
    progress: bool = True,
    chunk: int | None = None,
    fan_out: dict[str, torch.Tensor] | None = None,
    sink=None,
    trace: dict[str, torch.Tensor] | None = None,
    largest_activation: int = 0,
    count: bool = True,
) -> SimulationResult:
    """Simulate ``network`` on ``x`` (the ANN's layout, [N, ...]) up to max(timesteps).

    ``encoding="analog"`` feeds ``x`` as a constant current; ``"poisson"`` feeds Bernoulli spikes
    with probability ``x`` per step (``x`` in [0, 1]), drawn from a generator seeded with ``seed``.
    ``fan_out``, ``sink`` and ``trace``: see `_SpikeCounter` (synaptic operations, per-sample counts
    at every requested T, spike trains of the first sample); ``count=False`` counts nothing (the
    result's spike record is empty). ``largest_activation``: the largest layer output per sample
    and step, which bounds the chunk length on the CPU (`chunk_length`). Image batches run in
    `memory_format_for`'s layout; the network's 4-D weights are put in the same layout. On the
    CPU the first simulation of a process raises glibc's malloc thresholds (`tune_cpu_allocator`).
    """
    wanted = check_timesteps(timesteps)
    steps = wanted[-1]
    batch_size = plan_batch(activation_elements, batch_size, torch.device(device))  # before any hook is attached
    layout = memory_format_for(x, device)
    if torch.device(device).type == "cpu":
        tune_cpu_allocator()
    network = network.to(device=device, memory_format=layout).eval()
    with multi_step_mode(network):  # a network left in single-step mode by its user gets it back after
        counter = _SpikeCounter(
            network,
            layer_names or {},
            steps,
            per_neuron,
            fan_out=fan_out,
            snapshots=tuple(wanted),
            sink=sink,
            trace=trace,
            enabled=count,
        )
        outputs: dict[int, list[torch.Tensor]] = {t: [] for t in wanted}
        gen = torch.Generator(device="cpu").manual_seed(seed)
        n = x.shape[0]
        try:
            for start in progress_bar(
                range(0, n, batch_size), desc=f"simulating T={steps}", enabled=progress, total=math.ceil(n / batch_size)
            ):
                xb = x[start : start + batch_size].to(device).contiguous(memory_format=layout)
                functional.reset_net(network)
                tc = chunk or chunk_length(
                    activation_elements, xb.shape[0], steps, largest_elements=largest_activation, device=device
                )
                counter.start_batch(xb)
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
                            outputs[t].append(out[t - t0 - 1].float())  # to the host once, at the end
                    counter.offset += length
                counter.end_batch()
                functional.reset_net(network)
        finally:
            counter.close()
    return SimulationResult(
        outputs={t: torch.cat(v).cpu().numpy() for t, v in outputs.items()}, spikes=counter.record(), samples=n
    )
