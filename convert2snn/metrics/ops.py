"""Operation counts of a converted SNN: the ANN's MACs and every neuron's fan-out.

- **MACs** of the ANN's Conv/Linear layers (each op's count is declared in `bridges.ops`), and of
  the layers an analog input drives before the first neuron (the SNN computes them once per
  inference: the input current is constant);
- **fan-out** of every neuron: the number of synapses its spike drives in the next weighted
  layer(s) — for a Conv consumer the (output position, output channel) pairs whose receptive field
  contains it (stride, padding, dilation and groups included), for a Linear consumer its
  out_features; pooling / flatten / pad / scale / add / concat chains and the routers of
  `convert2snn.neurons.protocol` are followed to the weighted consumers, and a neuron that reaches
  another neuron (or the readout) without a weight (e.g. through a residual Add) drives one synapse
  per element it reaches. It is computed exactly on the SNN graph with all weights replaced by
  ones (`fan_out`). Synaptic operations (SOPs) are Σ spikes × fan-out, per neuron layer and step
  (the simulation's spike counter multiplies each step's spikes with the fan-out vector).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import fx, nn

from bridges import ops
from bridges.modules import Affine, Pad

from ..errors import ConversionError, InvalidInputError
from ..neurons import Readout, SpikeRouter, is_neuron
from ..sequence import SeqAdd, SeqCat, SeqModule, propagate_shapes


def module_macs(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one layer for one sample (shapes without the batch axis), as its op
    declares them (0 for ops without MACs)."""
    spec = ops.spec(module)
    return 0 if spec is None or spec.macs is None else spec.macs(module, in_shape, out_shape)


def node_shape(node: Any, skip: int) -> tuple[int, ...] | None:
    """A node's recorded output shape (after `propagate_shapes`) without its first ``skip`` axes."""
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
            if isinstance(module, ops.WEIGHTED):
                macs[node.name] = module_macs(module, node_shape(node.args[0], 1), node_shape(node, 1))
    return macs


def _weighted(gm: nn.Module, node: fx.Node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    inner = module.module if isinstance(module, SeqModule) else module
    return inner if isinstance(inner, ops.WEIGHTED) else None


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
            macs[str(node.target)] = module_macs(layer, node_shape(node.args[0], 2), node_shape(node, 2))
    return macs


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
    if isinstance(layer, ops.CONV):
        w = torch.ones((g, layer.in_channels // g) + tuple(layer.kernel_size), dtype=x.dtype)
        return layer._conv_forward(x, w, None), layer.out_channels // g
    w = torch.ones((layer.in_channels, 1) + tuple(layer.kernel_size), dtype=x.dtype)
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(layer.kernel_size)]
    out = conv(x, w, None, layer.stride, layer.padding, layer.output_padding, g, layer.dilation)
    return out, layer.out_channels // g


def _sum_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Pooling as a sum over each window (the path-count version of max/avg pooling); None if not simple."""
    adaptive = isinstance(pool, ops.ADAPTIVE_POOL)
    dims = x.dim() - 2
    if adaptive:
        out = pool.output_size
        out = (out,) * dims if isinstance(out, int) or out is None else tuple(out)
        size = tuple(x.shape[2:])
        if any(o is not None and s % o for s, o in zip(size, out)):
            return None
        kernel = tuple(s // (o or s) for s, o in zip(size, out))
        stride, padding, ceil = kernel, 0, False
    elif isinstance(pool, ops.POOL):
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
        return torch.zeros((batch,) + node_shape(node, 2), dtype=x.dtype)

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
        if is_neuron(module) or isinstance(module, Readout):
            count(sum(live[a] for a in inputs))  # a weightless (identity) synapse per element reached
            continue
        inner = module.module if isinstance(module, SeqModule) else module
        if isinstance(inner, ops.WEIGHTED):
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
        if isinstance(module, SpikeRouter):  # spiking pools, synapses, delays: follow their routing map
            inner = module.routing_module()
        if isinstance(inner, Affine):
            live[node] = value if inner.scale is None else value * (inner.scale != 0).to(value.dtype)
        elif isinstance(inner, Pad):
            live[node] = F.pad(value, inner.pads, mode="constant", value=0.0)
        elif isinstance(inner, ops.MOVES_VALUES):
            live[node] = inner(value)
        elif isinstance(inner, ops.POOL):
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
        out[i0 : i0 + rows] = _route(network, start, onehot.reshape((rows,) + shape), exact=True).double()
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
def fan_out(
    network: fx.GraphModule,
    input_shape: tuple[int, ...],
    *,
    layers: Iterable[str] | None = None,
    include_input: bool = False,
    method: str = "auto",
    chunk: int = 256,
) -> dict[str, np.ndarray]:
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
            shape = node_shape(node, 2)
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


__all__ = ["module_macs", "ann_macs", "input_layer_macs", "fan_out", "node_shape"]
