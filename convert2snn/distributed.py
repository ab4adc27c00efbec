"""Data-parallel simulation under ``torchrun``: shard the samples, simulate, merge exactly.

    torchrun --nproc_per_node 2 -m convert2snn evaluate snn.c2s --data test.npz     # or any script
                                                                                    # calling evaluate

When the process runs under ``torchrun`` (with any number of processes, one included) or inside an
initialised ``torch.distributed`` process group, every simulation (`SpikingModel.evaluate`,
``predict``, ``spike_counts``) takes a contiguous shard of the samples per rank, and the per-rank
results are gathered on every rank in rank order: outputs are concatenated, spike counts and
synaptic operations summed (float64 sums of integers: exact), per-sample statistics merged
(`Histogram` counts added, `Correlation` moments merged with Chan's formula). The result equals a
single process's (bit for bit where the shards' batches coincide with the single run's batches).
Backend: NCCL when CUDA is available (each rank on its ``LOCAL_RANK`` GPU), gloo otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .simulate import SimulationResult, SpikeRecord


def context() -> tuple[int, int]:
    """(rank, world size); joins the ``torchrun`` process group on first use (also a group of one:
    ``--nproc_per_node 1`` runs the same gather and merge as several). (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ and "MASTER_ADDR" in os.environ
    if not dist.is_available() or (world <= 1 and not under_torchrun):
        return 0, 1
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def joined() -> bool:
    """Whether this process is in a ``torch.distributed`` process group (after `context`)."""
    return dist.is_available() and dist.is_initialized()


def shard(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` samples (the first n mod world ranks take one more)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def gather(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order, on every rank."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def merge(result: SimulationResult, sink: Any = None) -> SimulationResult:
    """The per-rank `SimulationResult`s (and sink states) merged into the whole run's, on every rank."""
    state = sink.state() if sink is not None else None
    parts = gather((result, state))
    results = [r for r, _ in parts]
    if sink is not None:
        sink.merge_states([s for _, s in parts])
    outputs = {t: np.concatenate([r.outputs[t] for r in results]) for t in results[0].outputs}

    def summed(field: str) -> dict[str, np.ndarray]:
        total: dict[str, np.ndarray] = {}
        for r in results:
            for k, v in getattr(r.spikes, field).items():
                total[k] = total[k] + v if k in total else v.copy()
        return total

    neurons: dict[str, int] = {}
    for r in results:
        neurons.update(r.spikes.neurons)
    first = next((r.spikes.traces for r in results if r.samples), {})
    record = SpikeRecord(
        per_step=summed("per_step"),
        per_neuron=summed("per_neuron"),
        neurons=neurons,
        sops_per_step=summed("sops_per_step"),
        traces=first,
    )
    return SimulationResult(outputs=outputs, spikes=record, samples=sum(r.samples for r in results))
