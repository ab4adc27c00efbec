"""Metrics of a converted SNN: synaptic operations, MACs, energy, time-to-accuracy, ANN↔SNN correlation.

Everything that counts spikes goes through the simulation's `_SpikeCounter` hooks
(`convert2snn.simulate`); this module supplies what those counts are multiplied with and the
result table:

- **fan-out** of every neuron: the number of synapses its spike drives in the next weighted
  layer(s) — for a Conv consumer the (output position, output channel) pairs whose receptive field
  contains it (stride, padding, dilation and groups included), for a Linear consumer its
  out_features; pooling / flatten / pad / scale / add / concat chains are followed to the weighted
  consumers, and a neuron that reaches another neuron (or the readout) without a weight (e.g.
  through a residual Add) drives one synapse per element it reaches. It is computed exactly on the
  SNN graph with all weights replaced by ones (`fan_out`);
- **synaptic operations** (SOPs): Σ spikes × fan-out, per neuron layer and time step (the counter
  multiplies each step's spikes with the fan-out vector);
- **MACs** of the ANN's Conv/Linear layers, and of the layers an analog input drives before the
  first neuron (the SNN computes them once per inference: the input current is constant);
- **energy** (45 nm estimates, Horowitz 2014): E_SNN = SOPs · E_AC + input MACs · E_MAC,
  E_ANN = MACs · E_MAC, with presets for fp32 / fp16 / int8 or custom values;
- **time-to-accuracy**: the first requested T within 1 pp and 0.1 pp of the ANN's accuracy;
- **per-layer correlation**: Pearson r between each neuron's decoded rate (count / T · λ) and the
  ANN activation it stands for, over neurons and samples — where r drops, the conversion breaks.
"""
from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import fx, nn

from bridges.fold import CONV_TRANSPOSE_TYPES, CONV_TYPES, WEIGHTED_TYPES
from bridges.modules import Affine, Pad

from .errors import ConversionError, InvalidInputError
from .nodes import MembraneReadout, SpikingMaxPool, is_neuron
from .sequence import SeqAdd, SeqCat, SeqModule, propagate_shapes

# -- energy ------------------------------------------------------------------------------------------

ENERGY_PRESETS: dict[str, tuple[float, float]] = {
    # name: (E_MAC, E_AC) in pJ per operation, 45 nm CMOS (Horowitz, ISSCC 2014)
    "45nm-fp32": (4.6, 0.9),
    "45nm-fp16": (1.5, 0.4),
    "45nm-int8": (0.23, 0.03),
}
_PRESET_ALIASES = {"fp32": "45nm-fp32", "fp16": "45nm-fp16", "int8": "45nm-int8", "45nm": "45nm-fp32"}


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in picojoules: a multiply-accumulate (ANN) and an accumulate (SNN synaptic op)."""

    name: str
    e_mac_pj: float
    e_ac_pj: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "e_mac_pj": self.e_mac_pj, "e_ac_pj": self.e_ac_pj}


def energy_model(spec: Any = "45nm-fp32") -> EnergyModel:
    """An `EnergyModel` from a preset name ("fp32", "fp16", "int8", "45nm-fp32", …), a string
    "E_MAC,E_AC" in pJ, a (E_MAC, E_AC) pair, a dict with ``e_mac_pj``/``e_ac_pj``, or an `EnergyModel`."""
    if isinstance(spec, EnergyModel):
        return spec
    if spec is None:
        spec = "45nm-fp32"
    if isinstance(spec, dict):
        try:
            return EnergyModel(str(spec.get("name", "custom")), float(spec["e_mac_pj"]), float(spec["e_ac_pj"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"an energy model dict needs numeric 'e_mac_pj' and 'e_ac_pj', got {spec!r}") from exc
    if isinstance(spec, str):
        key = _PRESET_ALIASES.get(spec.strip().lower(), spec.strip().lower())
        if key in ENERGY_PRESETS:
            return EnergyModel(key, *ENERGY_PRESETS[key])
        parts = spec.split(",")
        if len(parts) == 2:
            try:
                return _custom(float(parts[0]), float(parts[1]))
            except ValueError:
                pass
        raise InvalidInputError(f"unknown energy model {spec!r}: use one of {', '.join(list(_PRESET_ALIASES) + list(ENERGY_PRESETS))} "
                                "or 'E_MAC,E_AC' in pJ (e.g. '4.6,0.9')")
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return _custom(float(spec[0]), float(spec[1]))
    raise InvalidInputError(f"cannot make an energy model from {spec!r}")


def _custom(e_mac: float, e_ac: float) -> EnergyModel:
    if not (e_mac >= 0 and e_ac >= 0 and math.isfinite(e_mac) and math.isfinite(e_ac)):
        raise InvalidInputError(f"energies per operation must be finite and non-negative, got E_MAC={e_mac}, E_AC={e_ac}")
    return EnergyModel("custom", e_mac, e_ac)


def snn_energy_pj(sops: float, input_macs: float, model: EnergyModel) -> float:
    """Energy of one SNN inference: synaptic ops are accumulates, the analog input layer's work is MACs."""
    return sops * model.e_ac_pj + input_macs * model.e_mac_pj


def ann_energy_pj(macs: float, model: EnergyModel) -> float:
    return macs * model.e_mac_pj


# -- MACs ----------------------------------------------------------------------------------------------

def module_macs(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one weighted layer for one sample (shapes without the batch axis)."""
    if isinstance(module, nn.Linear):
        return int(np.prod(out_shape)) * module.in_features
    if isinstance(module, CONV_TYPES):
        return int(np.prod(out_shape)) * (module.in_channels // module.groups) * int(np.prod(module.kernel_size))
    if isinstance(module, CONV_TRANSPOSE_TYPES):
        return int(np.prod(in_shape)) * (module.out_channels // module.groups) * int(np.prod(module.kernel_size))
    return 0


def _shape(node: Any, skip: int) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape[skip:]) if meta is not None and hasattr(meta, "shape") else None


@torch.no_grad()
def ann_macs(ann: fx.GraphModule, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs per sample of every Conv/Linear node of a (single-step, batch-first) ANN graph."""
    propagate_shapes(ann, torch.zeros((1,) + tuple(input_shape)))
    macs = {}
    for node in ann.graph.nodes:
        if node.op == "call_module":
            module = ann.get_submodule(node.target)
            if isinstance(module, WEIGHTED_TYPES):
                macs[node.name] = module_macs(module, _shape(node.args[0], 1), _shape(node, 1))
    return macs


def _weighted(gm: nn.Module, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    inner = module.module if isinstance(module, SeqModule) else module
    return inner if isinstance(inner, WEIGHTED_TYPES) else None


@torch.no_grad()
def input_layer_macs(network: fx.GraphModule, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs per sample of the SNN's weighted layers that see the input before any neuron.

    With analog input these layers compute a constant current, once per inference.
    """
    propagate_shapes(network, torch.zeros((1, 1) + tuple(input_shape)))
    analog: set[fx.Node] = set()
    macs = {}
    for node in network.graph.nodes:
        if node.op == "placeholder":
            analog.add(node)
            continue
        if node.op == "output" or not any(a in analog for a in node.all_input_nodes):
            continue
        if node.op == "call_module" and is_neuron(network.get_submodule(node.target)):
            continue
        analog.add(node)
        layer = _weighted(network, node)
        if layer is not None:
            macs[str(node.target)] = module_macs(layer, _shape(node.args[0], 2), _shape(node, 2))
    return macs


# -- fan-out -------------------------------------------------------------------------------------------

def _neuron_nodes(network: fx.GraphModule) -> list[fx.Node]:
    return [n for n in network.graph.nodes if n.op == "call_module" and is_neuron(network.get_submodule(n.target))]


def _reduced_terminal(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The structural (all-ones, no bias) version of a weighted layer, with one output channel per group.

    Returns its output and the multiplier (output channels per group) that turns the count of
    nonzero outputs into the count of synapses. For a Linear layer every input feature drives all
    out_features of its row.
    """
    if isinstance(layer, nn.Linear):
        return F.linear(x, torch.ones(1, layer.in_features, dtype=x.dtype)), layer.out_features
    g = layer.groups
    if isinstance(layer, CONV_TYPES):
        w = torch.ones((g, layer.in_channels // g) + tuple(layer.kernel_size), dtype=x.dtype)
        return layer._conv_forward(x, w, None), layer.out_channels // g
    w = torch.ones((layer.in_channels, 1) + tuple(layer.kernel_size), dtype=x.dtype)
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(layer.kernel_size)]
    out = conv(x, w, None, layer.stride, layer.padding, layer.output_padding, g, layer.dilation)
    return out, layer.out_channels // g


def _sum_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Pooling as a sum over each window (the path-count version of max/avg pooling); None if not simple."""
    adaptive = isinstance(pool, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                                 nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))
    dims = x.dim() - 2
    if adaptive:
        out = pool.output_size
        out = (out,) * dims if isinstance(out, int) or out is None else tuple(out)
        size = tuple(x.shape[2:])
        if any(o is not None and s % o for s, o in zip(size, out)):
            return None
        kernel = tuple(s // (o or s) for s, o in zip(size, out))
        stride, padding, ceil = kernel, 0, False
    elif isinstance(pool, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        if getattr(pool, "dilation", 1) not in (1, (1,) * dims):
            return None
        kernel, stride, padding, ceil = pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode
    else:
        return None
    tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims  # noqa: E731
    kernel, stride, padding = tup(kernel), tup(stride or kernel), tup(padding)
    if any(s < k for s, k in zip(stride, kernel)):
        return None  # overlapping windows: a neuron reaches several pooled values
    if dims == 1:
        return F.avg_pool2d(x.unsqueeze(-2), (1,) + kernel, (1,) + stride, (0,) + padding, ceil, True, 1).squeeze(-2)
    pool_fn = F.avg_pool2d if dims == 2 else F.avg_pool3d
    return pool_fn(x, kernel, stride, padding, ceil, True, 1)


class _NotInjective(Exception):
    """The routing from a neuron to its consumers duplicates values: path counts would overcount."""


def _route(network: fx.GraphModule, start: fx.Node, x: torch.Tensor, *, exact: bool) -> torch.Tensor:
    """Synapses reached from the values ``x`` ([B, *sample]) placed at ``start``, per batch row.

    ``exact=True``: ``x`` is a batch of one-hot rows and routing ops run as themselves (monotone on
    non-negative input); the result counts the distinct synapses each row reaches.
    ``exact=False``: ``x`` is ones; pools become window sums and the result (to be differentiated)
    is the total path count — equal to the synapse count when every neuron reaches at most one
    value of each consumer's input (`_NotInjective` is raised otherwise).
    """
    live: dict[fx.Node, torch.Tensor] = {start: x}
    batch = x.shape[0]
    total = torch.zeros(batch, dtype=x.dtype) if exact else x.new_zeros(())
    seen = False

    def count(y: torch.Tensor, multiplier: int = 1) -> None:
        nonlocal total
        if exact:
            total = total + (y != 0).reshape(batch, -1).sum(1).to(total.dtype) * multiplier
        else:
            total = total + y.sum() * multiplier

    def zeros_like_node(node: fx.Node) -> torch.Tensor:
        return torch.zeros((batch,) + _shape(node, 2), dtype=x.dtype)

    for node in network.graph.nodes:
        if not seen:
            seen = node is start
            continue
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        inputs = [a for a in node.all_input_nodes if a in live]
        if not inputs:
            continue
        if node.op != "call_module":
            if node.target in (operator.add, operator.sub) and len(node.args) == 2:
                if len(inputs) > 1 and not exact:
                    raise _NotInjective(str(node.target))
                live[node] = sum(live[a] for a in inputs)
                continue
            if exact:
                raise ConversionError(f"cannot follow {node.op} {node.target} when counting synapses")
            raise _NotInjective(f"function {node.target}")
        module = network.get_submodule(node.target)
        if is_neuron(module) or isinstance(module, MembraneReadout):
            count(sum(live[a] for a in inputs))  # a weightless (identity) synapse per element reached
            continue
        inner = module.module if isinstance(module, SeqModule) else module
        if isinstance(inner, WEIGHTED_TYPES):
            y, multiplier = _reduced_terminal(inner, live[inputs[0]])
            count(y, multiplier)
            continue
        if isinstance(module, SeqAdd):
            if len(inputs) > 1 and not exact:
                raise _NotInjective("an Add joins two branches of the same neuron layer")
            live[node] = sum(live[a] for a in inputs)
            continue
        if isinstance(module, SeqCat):
            parts = [live[a] if a in live else zeros_like_node(a) for a in node.args]
            live[node] = torch.cat(parts, dim=module.dim)
            continue
        value = live[inputs[0]]
        if getattr(module, "routes_as_identity", False):  # synapse / delay modules: element to element
            live[node] = value
            continue
        if isinstance(module, SpikingMaxPool):
            inner = module.pool
        if isinstance(inner, Affine):
            live[node] = value if inner.scale is None else value * (inner.scale != 0).to(value.dtype)
        elif isinstance(inner, Pad):
            live[node] = F.pad(value, inner.pads, mode="constant", value=0.0)
        elif isinstance(inner, (nn.Flatten, nn.Unflatten, nn.Identity)) or type(inner).__name__ in ("Reshape", "Permute"):
            live[node] = inner(value)
        elif _is_pool(inner):
            if exact:
                live[node] = inner(value)
            else:
                pooled = _sum_pool(inner, value)
                if pooled is None:
                    raise _NotInjective(f"{type(inner).__name__} with overlapping windows")
                live[node] = pooled
        elif exact:  # any other map: its dependency structure, |f(x) − f(0)|
            live[node] = _generic(module, value)
        else:
            raise _NotInjective(type(inner).__name__)
    return total


def _is_pool(m: nn.Module) -> bool:
    return isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                          nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                          nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))


def _generic(module: nn.Module, value: torch.Tensor) -> torch.Tensor:
    seq = value.unsqueeze(0)
    y = module(seq) - module(torch.zeros_like(seq))
    functional.reset_net(module)
    return y[0].abs()


@torch.no_grad()
def _exact_fan_out(network: fx.GraphModule, start: fx.Node, shape: tuple[int, ...], chunk: int) -> torch.Tensor:
    n = int(np.prod(shape))
    out = torch.zeros(n, dtype=torch.float64)
    for i0 in range(0, n, chunk):
        rows = min(chunk, n - i0)
        onehot = torch.zeros(rows, n)
        onehot[torch.arange(rows), torch.arange(i0, i0 + rows)] = 1.0
        out[i0:i0 + rows] = _route(network, start, onehot.reshape((rows,) + shape), exact=True).double()
    return out


def _path_fan_out(network: fx.GraphModule, start: fx.Node, shape: tuple[int, ...]) -> torch.Tensor:
    # float64 throughout (exact integer path counts); the network's own weights are never used here
    ones = torch.ones((1,) + shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        total = _route(network, start, ones, exact=False)
        if not total.requires_grad:
            return torch.zeros(int(np.prod(shape)), dtype=torch.float64)
        (grad,) = torch.autograd.grad(total, ones)
    return grad.reshape(-1).round()


@torch.no_grad()
def fan_out(network: fx.GraphModule, input_shape: tuple[int, ...], *, layers: Iterable[str] | None = None,
            include_input: bool = False, method: str = "auto", chunk: int = 256) -> dict[str, np.ndarray]:
    """Synapses each neuron drives (see the module docstring), per neuron layer: arrays of the layer's per-sample shape.

    ``method="auto"`` counts paths with one backward pass when every neuron reaches at most one value
    of each consumer's input (non-overlapping pooling, no branch re-joining, no upsampling) — then
    paths and synapses coincide — and otherwise feeds one-hot inputs in chunks (exact in all cases,
    slower for large layers). ``"exact"`` always uses one-hot inputs. ``include_input=True`` adds the
    fan-out of the input (``"input"``; used for spike-coded input).
    """
    if method not in ("auto", "exact", "paths"):
        raise InvalidInputError(f"method must be 'auto', 'exact' or 'paths', got {method!r}")
    propagate_shapes(network, torch.zeros((1, 1) + tuple(input_shape)))
    starts = [(str(n.target), n) for n in _neuron_nodes(network)]
    if include_input:
        starts.insert(0, ("input", next(n for n in network.graph.nodes if n.op == "placeholder")))
    wanted = None if layers is None else set(layers)
    result = {}
    try:
        for name, node in starts:
            if wanted is not None and name not in wanted:
                continue
            shape = _shape(node, 2)
            counts = None
            if method in ("auto", "paths"):
                try:
                    counts = _path_fan_out(network, node, shape)
                except _NotInjective:
                    if method == "paths":
                        raise
            if counts is None:
                counts = _exact_fan_out(network, node, shape, chunk)
            result[name] = counts.reshape(shape).numpy()
    finally:
        functional.reset_net(network)
    return result


# -- accuracy ------------------------------------------------------------------------------------------

def time_to_accuracy(timesteps: list[int], accuracy: list[float], ann_accuracy: float, tolerance: float) -> int | None:
    """The first requested T whose accuracy is within ``tolerance`` (a fraction, 0.01 = 1 pp) of the ANN's."""
    for t, a in zip(timesteps, accuracy):
        if a >= ann_accuracy - tolerance - 1e-12:
            return int(t)
    return None


# -- correlation ---------------------------------------------------------------------------------------

class _Moments:
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

    def merge(self, other: "_Moments") -> None:
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
        pass

    def update(self, layer: str, t: int, counts: torch.Tensor) -> None:
        """``counts``: [B, neurons] spikes of each sample's neurons in steps 1..t."""

    def end_batch(self) -> None:
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
        hist = torch.bincount(counts.round().long().reshape(-1).cpu()).numpy()
        old = self.counts.get(layer, np.zeros(0, dtype=np.int64))
        size = max(old.size, hist.size)
        merged = np.zeros(size, dtype=np.int64)
        merged[:old.size] += old
        merged[:hist.size] += hist
        self.counts[layer] = merged

    def state(self) -> dict[str, np.ndarray]:
        return self.counts

    def merge_states(self, states: list[dict[str, np.ndarray]]) -> None:
        self.counts = {}
        for counts in states:
            for layer, hist in counts.items():
                old = self.counts.get(layer, np.zeros(0, dtype=np.int64))
                merged = np.zeros(max(old.size, hist.size), dtype=np.int64)
                merged[:old.size] += old
                merged[:hist.size] += hist
                self.counts[layer] = merged


class Correlation(SampleCounts):
    """Pearson r per layer and T between decoded rates (count / t · λ) and the ANN activations."""

    def __init__(self, ann: fx.GraphModule, pairs: dict[str, tuple[str, torch.Tensor]], device: Any = "cpu"):
        self.ann = ann
        self.pairs = pairs  # neuron layer → (ANN node name, λ flattened per neuron)
        self.device = device
        self.moments: dict[tuple[str, int], _Moments] = {}
        self.activations: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def begin_batch(self, x: torch.Tensor) -> None:
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
        if layer not in self.activations:
            return
        ann = self.activations[layer]
        if ann.shape != counts.shape:
            return
        lam = self.pairs[layer][1].to(counts.device)
        self.moments.setdefault((layer, t), _Moments()).update(counts.float() / t * lam, ann)

    def state(self) -> dict[tuple[str, int], _Moments]:
        return self.moments

    def merge_states(self, states: list[dict[tuple[str, int], _Moments]]) -> None:
        self.moments = {}
        for moments in states:
            for key, m in moments.items():
                self.moments.setdefault(key, _Moments()).merge(m)

    def result(self, layers: Iterable[str], timesteps: list[int]) -> dict[str, list[float | None]]:
        out = {}
        for layer in layers:
            if layer in self.pairs:
                out[layer] = [self.moments[(layer, t)].r() if (layer, t) in self.moments else None for t in timesteps]
        return out


def correlation_pairs(model: Any) -> dict[str, tuple[str, torch.Tensor]]:
    """Neuron layer → (the ANN node it stands for, λ per neuron) for layers with a one-to-one ANN counterpart."""
    sources = getattr(model.network, "snn_sources", {})
    propagate_shapes(model.ann, torch.zeros((1,) + tuple(model.bridge_info.input_shape)))
    ann_shapes = {n.name: _shape(n, 1) for n in model.ann.graph.nodes}
    pairs = {}
    for layer, neurons in model.neuron_counts().items():
        node = sources.get(layer)
        shape = ann_shapes.get(node)
        if node is None or shape is None or int(np.prod(shape)) != neurons:
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


# -- the result table ----------------------------------------------------------------------------------

def _si(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _joules(pj: float | None) -> str:
    if pj is None:
        return "—"
    for factor, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= factor:
            return f"{pj / factor:.3g} {unit}"
    return f"{pj:.3g} pJ"


@dataclass
class EvaluationResult:
    """Accuracy at every requested T from one simulation, with the ANN's accuracy, spikes, SOPs and energy.

    All counts are per inference (averaged over the samples). ``layer_*`` dicts are keyed by neuron layer.
    """

    timesteps: list[int]
    accuracy: list[float]
    ann_accuracy: float
    spikes_per_neuron: list[float]  # mean spikes per neuron per inference, up to each T
    layer_spikes_per_neuron: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0
    neurons: dict[str, int] = field(default_factory=dict)
    sops: list[float] = field(default_factory=list)  # synaptic operations per inference, up to each T
    layer_sops: dict[str, list[float]] = field(default_factory=dict)  # by the neuron layer that spiked
    input_macs: float = 0.0  # MACs of the analog input layer(s), once per inference
    ann_macs: float = 0.0
    layer_macs: dict[str, float] = field(default_factory=dict)  # ANN Conv/Linear layers
    energy_model: dict[str, Any] = field(default_factory=lambda: energy_model().as_dict())
    snn_energy_pj: list[float] = field(default_factory=list)
    ann_energy_pj: float = 0.0
    time_to_accuracy: dict[str, int | None] = field(default_factory=dict)  # "1pp" / "0.1pp" → T or None
    layer_correlation: dict[str, list[float | None]] = field(default_factory=dict)

    def accuracy_at(self, t: int) -> float:
        return self.accuracy[self.timesteps.index(t)]

    def with_energy(self, spec: Any) -> "EvaluationResult":
        """The same result with energies under another energy model (preset name or custom values)."""
        model = energy_model(spec)
        return replace(self, energy_model=model.as_dict(),
                       snn_energy_pj=[snn_energy_pj(s, self.input_macs, model) for s in self.sops],
                       ann_energy_pj=ann_energy_pj(self.ann_macs, model))

    def energy_ratio(self) -> list[float | None]:
        """E_SNN / E_ANN at each T."""
        return [e / self.ann_energy_pj if self.ann_energy_pj else None for e in self.snn_energy_pj]

    def as_dict(self) -> dict[str, Any]:
        return {"timesteps": self.timesteps, "accuracy": self.accuracy, "ann_accuracy": self.ann_accuracy,
                "spikes_per_neuron": self.spikes_per_neuron, "layer_spikes_per_neuron": self.layer_spikes_per_neuron,
                "samples": self.samples, "neurons": self.neurons, "sops": self.sops, "layer_sops": self.layer_sops,
                "input_macs": self.input_macs, "ann_macs": self.ann_macs, "layer_macs": self.layer_macs,
                "energy_model": self.energy_model, "snn_energy_pj": self.snn_energy_pj,
                "ann_energy_pj": self.ann_energy_pj, "energy_ratio": self.energy_ratio(),
                "time_to_accuracy": self.time_to_accuracy, "layer_correlation": self.layer_correlation}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvaluationResult":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.as_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None, per_layer: bool = False) -> str:
        """One row per T (``per_layer=True``: one row per T and neuron layer)."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        if per_layer:
            writer.writerow(["T", "layer", "neurons", "spikes_per_neuron", "sops", "correlation"])
            for i, t in enumerate(self.timesteps):
                for layer, spikes in self.layer_spikes_per_neuron.items():
                    r = self.layer_correlation.get(layer, [None] * len(self.timesteps))[i]
                    sops = self.layer_sops.get(layer, [None] * len(self.timesteps))[i]
                    writer.writerow([t, layer, self.neurons.get(layer, ""), f"{spikes[i]:.6f}",
                                     "" if sops is None else f"{sops:.1f}", "" if r is None else f"{r:.6f}"])
        else:
            writer.writerow(["T", "accuracy", "ann_accuracy", "spikes_per_neuron", "sops", "snn_energy_pj",
                             "ann_energy_pj", "energy_ratio"])
            ratios = self.energy_ratio()
            for i, (t, a, s) in enumerate(zip(self.timesteps, self.accuracy, self.spikes_per_neuron)):
                sops = self.sops[i] if i < len(self.sops) else None
                energy = self.snn_energy_pj[i] if i < len(self.snn_energy_pj) else None
                ratio = ratios[i] if i < len(ratios) else None
                writer.writerow([t, f"{a:.6f}", f"{self.ann_accuracy:.6f}", f"{s:.6f}",
                                 "" if sops is None else f"{sops:.1f}", "" if energy is None else f"{energy:.1f}",
                                 f"{self.ann_energy_pj:.1f}", "" if ratio is None else f"{ratio:.6f}"])
        if path is not None:
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()

    def __str__(self) -> str:
        em = self.energy_model
        lines = [f"ANN accuracy: {100 * self.ann_accuracy:.2f} %  ({self.samples} samples)"]
        if self.ann_macs:
            lines.append(f"ANN: {_si(self.ann_macs, 'MAC')} per inference = {_joules(self.ann_energy_pj)}   "
                         f"(energy model {em['name']}: E_MAC {em['e_mac_pj']} pJ, E_AC {em['e_ac_pj']} pJ)")
        has_sops = len(self.sops) == len(self.timesteps)
        header = f"{'T':>6} {'SNN acc %':>10} {'loss pp':>8} {'spikes/neuron':>14}"
        if has_sops:
            header += f" {'SOPs':>10} {'E_SNN':>10} {'E_SNN/E_ANN':>12}"
        lines.append(header)
        ratios = self.energy_ratio()
        for i, (t, a, s) in enumerate(zip(self.timesteps, self.accuracy, self.spikes_per_neuron)):
            row = f"{t:>6} {100 * a:>10.2f} {100 * (self.ann_accuracy - a):>8.2f} {s:>14.3f}"
            if has_sops:
                ratio = ratios[i] if i < len(ratios) else None
                row += (f" {_si(self.sops[i], ''):>10} {_joules(self.snn_energy_pj[i]) if self.snn_energy_pj else '—':>10}"
                        f" {'—' if ratio is None else f'{ratio:.3f}':>12}")
            lines.append(row)
        if self.time_to_accuracy:
            parts = []
            for key, label in (("1pp", "1 pp"), ("0.1pp", "0.1 pp")):
                t = self.time_to_accuracy.get(key)
                parts.append(f"within {label} of the ANN at T={t}" if t else
                             f"not within {label} up to T={max(self.timesteps)}")
            lines.append("time to accuracy: " + "; ".join(parts))
        if self.layer_spikes_per_neuron:
            t = self.timesteps[-1]
            lines.append(f"per layer at T={t}:")
            lines.append(f"  {'layer':<24} {'neurons':>8} {'spikes/neuron':>14} {'rate/step':>10} {'SOPs':>10} {'r(ANN,SNN)':>11}")
            for layer, spikes in self.layer_spikes_per_neuron.items():
                r = self.layer_correlation.get(layer, [None])[-1]
                sops = self.layer_sops.get(layer, [None])[-1]
                lines.append(f"  {layer[:24]:<24} {self.neurons.get(layer, 0):>8} {spikes[-1]:>14.3f} {spikes[-1] / t:>10.4f}"
                             f" {_si(sops, ''):>10} {'—' if r is None else f'{r:.4f}':>11}")
        return "\n".join(lines)


__all__ = ["ENERGY_PRESETS", "EnergyModel", "energy_model", "fan_out", "ann_macs", "input_layer_macs", "module_macs",
           "time_to_accuracy", "EvaluationResult", "Histogram", "Correlation", "SampleCounts", "snn_energy_pj",
           "ann_energy_pj", "correlation_pairs"]
