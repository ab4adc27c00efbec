"""Per-sample statistics of a simulation: receivers of each sample's spike counts at every requested T.

The simulation's spike counter (`convert2snn.simulate`) hands a sink each sample's counts; a sink
keeps what it needs and can merge its state with other processes' (`convert2snn.distributed`):

- `Histogram`: SpKeras SpikeCounter mode=1, how many (sample, neuron) pairs fired k spikes;
- `Correlation`: per-layer Pearson r between each neuron's decoded rate (count / T · λ) and the
  ANN activation it stands for, over neurons and samples — where r drops, the conversion breaks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import fx

from bridges import ops

from ..sequence import propagate_shapes
from .ops import node_shape


class Moments:
    """Streaming Pearson correlation (Chan et al.'s pairwise merge of means and co-moments)."""

    __slots__ = ("n", "mx", "my", "sxx", "syy", "sxy")

    def __init__(self):
        self.n = 0
        self.mx = self.my = self.sxx = self.syy = self.sxy = 0.0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.double().reshape(-1)
        y = y.double().reshape(-1)
        m = x.numel()
        if m == 0:
            return
        bx, by = float(x.mean()), float(y.mean())
        dx, dy = x - bx, y - by
        bxx, byy, bxy = float((dx * dx).sum()), float((dy * dy).sum()), float((dx * dy).sum())
        n = self.n + m
        ddx, ddy = bx - self.mx, by - self.my
        self.sxx += bxx + ddx * ddx * self.n * m / n
        self.syy += byy + ddy * ddy * self.n * m / n
        self.sxy += bxy + ddx * ddy * self.n * m / n
        self.mx += ddx * m / n
        self.my += ddy * m / n
        self.n = n

    def merge(self, other: Moments) -> None:
        """Add another stream's moments (Chan et al.'s pairwise formula)."""
        if other.n == 0:
            return
        n = self.n + other.n
        ddx, ddy = other.mx - self.mx, other.my - self.my
        w = self.n * other.n / n
        self.sxx += other.sxx + ddx * ddx * w
        self.syy += other.syy + ddy * ddy * w
        self.sxy += other.sxy + ddx * ddy * w
        self.mx += ddx * other.n / n
        self.my += ddy * other.n / n
        self.n = n

    def r(self) -> float | None:
        if self.n < 2 or self.sxx <= 0 or self.syy <= 0:
            return None
        return float(self.sxy / math.sqrt(self.sxx * self.syy))


class SampleCounts:
    """Receives per-sample spike counts from the simulation's counter (`simulate(..., sink=...)`).

    Subclasses implement what is done with them; `begin_batch` sees the batch's input (the ANN's layout).
    """

    def begin_batch(self, x: torch.Tensor) -> None:
        """Called with each batch's input ``x`` (the ANN's layout) before its counts arrive; nothing here."""
        pass

    def update(self, layer: str, t: int, counts: torch.Tensor) -> None:
        """``counts``: [B, neurons] spikes of each sample's neurons in steps 1..t."""

    def end_batch(self) -> None:
        """Called after a batch's last counts; nothing here."""
        pass

    def state(self) -> Any:
        """What other processes need to merge this one's samples in (`convert2snn.distributed`)."""
        return None

    def merge_states(self, states: list[Any]) -> None:
        """Replace this sink's statistics with the merge of every process's ``state()`` (rank order)."""


class Histogram(SampleCounts):
    """SpKeras SpikeCounter mode=1: per layer, how many (sample, neuron) pairs fired k spikes, k = 0..max."""

    def __init__(self):
        self.counts: dict[str, np.ndarray] = {}

    def update(self, layer: str, t: int, counts: torch.Tensor) -> None:
        """Add every (sample, neuron) count in ``counts`` to ``layer``'s histogram (bin k: pairs with k spikes)."""
        hist = torch.bincount(counts.round().long().reshape(-1).cpu()).numpy()
        old = self.counts.get(layer, np.zeros(0, dtype=np.int64))
        size = max(old.size, hist.size)
        merged = np.zeros(size, dtype=np.int64)
        merged[: old.size] += old
        merged[: hist.size] += hist
        self.counts[layer] = merged

    def state(self) -> dict[str, np.ndarray]:
        """The per-layer histograms: layer → int64 array of pair counts per spike count."""
        return self.counts

    def merge_states(self, states: list[dict[str, np.ndarray]]) -> None:
        """Replace the histograms with the bin-wise sum of every process's ``state()``."""
        self.counts = {}
        for counts in states:
            for layer, hist in counts.items():
                old = self.counts.get(layer, np.zeros(0, dtype=np.int64))
                merged = np.zeros(max(old.size, hist.size), dtype=np.int64)
                merged[: old.size] += old
                merged[: hist.size] += hist
                self.counts[layer] = merged


class Correlation(SampleCounts):
    """Pearson r per layer and T between decoded rates (count / t · λ) and the ANN activations."""

    def __init__(self, ann: fx.GraphModule, pairs: dict[str, tuple[str, torch.Tensor]], device: Any = "cpu"):
        self.ann = ann
        self.pairs = pairs  # neuron layer → (ANN node name, λ flattened per neuron)
        self.device = device
        self.moments: dict[tuple[str, int], Moments] = {}
        self.activations: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def begin_batch(self, x: torch.Tensor) -> None:
        """Run the ANN on ``x`` and keep each paired node's activations, [B, neurons], by neuron layer."""
        wanted = {node for node, _ in self.pairs.values()}
        captured: dict[str, torch.Tensor] = {}

        class Capture(fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                if n.name in wanted:
                    captured[n.name] = out.detach().reshape(out.shape[0], -1).float()
                return out

        Capture(self.ann.to(self.device).eval()).run(x.to(self.device))
        self.activations = {layer: captured[node] for layer, (node, _) in self.pairs.items() if node in captured}

    def update(self, layer: str, t: int, counts: torch.Tensor) -> None:
        """Add ``layer``'s decoded rates (counts / t · λ) against its ANN activations to the (layer, t) moments.

        Skipped for a layer without captured activations or whose activations differ in shape from ``counts``.
        """
        if layer not in self.activations:
            return
        ann = self.activations[layer]
        if ann.shape != counts.shape:
            return
        lam = self.pairs[layer][1].to(counts.device)
        self.moments.setdefault((layer, t), Moments()).update(counts.float() / t * lam, ann)

    def state(self) -> dict[tuple[str, int], Moments]:
        """The (layer, T) → `Moments` map, to merge with other processes'."""
        return self.moments

    def merge_states(self, states: list[dict[tuple[str, int], Moments]]) -> None:
        """Replace the moments with the merge of every process's ``state()``."""
        self.moments = {}
        for moments in states:
            for key, m in moments.items():
                self.moments.setdefault(key, Moments()).merge(m)

    def result(self, layers: Iterable[str], timesteps: list[int]) -> dict[str, list[float | None]]:
        """Layer → Pearson r at each of ``timesteps`` (None where undefined) for the paired layers among ``layers``."""
        out = {}
        for layer in layers:
            if layer in self.pairs:
                out[layer] = [self.moments[(layer, t)].r() if (layer, t) in self.moments else None for t in timesteps]
        return out


def correlation_pairs(model: Any) -> dict[str, tuple[str, torch.Tensor]]:
    """Neuron layer → (the ANN node it stands for, λ per neuron) for layers with a one-to-one ANN counterpart
    (not the pieces of a piecewise activation: each carries one piece of the value, not the value)."""
    sources = model.sources  # SNN module → the ANN node it stands for
    propagate_shapes(model.ann, torch.zeros((1,) + tuple(model.bridge_info.input_shape)))
    ann_shapes = {n.name: node_shape(n, 1) for n in model.ann.graph.nodes}
    pieces = {
        n.name
        for n in model.ann.graph.nodes
        if n.op == "call_module" and isinstance(model.ann.get_submodule(n.target), ops.SCALAR_ACTIVATIONS)
    }
    pairs = {}
    for layer, neurons in model.neuron_counts().items():
        node = sources.get(layer)
        shape = ann_shapes.get(node)
        if node is None or node in pieces or shape is None or int(np.prod(shape)) != neurons:
            continue
        scale = model.scales.get(node) if isinstance(model.scales, dict) else None
        if isinstance(scale, torch.Tensor):
            try:
                lam = scale.float().expand(shape).reshape(-1).clone()
            except RuntimeError:
                lam = torch.ones(neurons)
        else:
            lam = torch.ones(neurons)
        pairs[layer] = (node, lam)
    return pairs


__all__ = ["SampleCounts", "Histogram", "Correlation", "correlation_pairs"]
