"""NIR (Neuromorphic Intermediate Representation) export and import of rate-converted SNNs.

Mapped: Conv2d → ``nir.Conv2d``, Linear → ``nir.Affine``, AvgPool2d → ``nir.AvgPool2d``,
Flatten → ``nir.Flatten``, a per-channel/elementwise scale → ``nir.Scale``, `IFNeuron` →
``nir.IF``, the `MembraneReadout` → ``nir.Output``. Graphs must be chains (no residual Add or
Concat yet); `SpikingMaxPool`, LIF neurons and population nodes have no NIR equivalent and are
refused with the layer's name.

NIR 1.0's IF neuron knows only a hard reset (``v_reset``), while convert2snn's exactness rests on
reset by subtraction and an initial potential of θ/2 (SpikingJelly's own exporter refuses
soft-reset neurons for this reason). Both are written into each IF node's ``metadata``
(``convert2snn.reset = "subtract"``, ``convert2snn.v_init``), and `from_nir` honours them, so a
round trip through this module is exact; a NIR consumer that ignores the metadata simulates a
hard-reset network and will not reproduce these spikes. The graph's metadata says so too.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn

from bridges.modules import Affine

from ..errors import InvalidInputError, UnsupportedLayerError
from ..neurons import IFNeuron, MembraneReadout
from ..sequence import SeqModule

WARNING = (
    "IF nodes use reset by subtraction and an initial potential (see each node's metadata "
    "'convert2snn.reset' and 'convert2snn.v_init'); a hard-reset simulation of this graph differs"
)


def require_nir() -> Any:
    """The ``nir`` package, or a clear error naming the extra that installs it."""
    try:
        import nir  # noqa: PLC0415  (optional: the nir extra)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidInputError("NIR export needs the 'nir' package: pip install 'convert2snn[nir]'") from exc
    return nir


def _chain(network: torch.fx.GraphModule) -> list[tuple[str, nn.Module]]:
    order = []
    previous = None
    for node in network.graph.nodes:
        if node.op == "placeholder":
            previous = node
        elif node.op == "call_module":
            if len(node.all_input_nodes) != 1 or node.all_input_nodes[0] is not previous:
                raise UnsupportedLayerError(
                    f"layer '{node.target}': NIR export supports chains of layers only (no residual Add or Concat yet)",
                    layer=str(node.target),
                )
            order.append((str(node.target), network.get_submodule(node.target)))
            previous = node
        elif node.op == "output":
            break
        else:
            raise UnsupportedLayerError(
                f"node '{node.name}' ({node.op} {node.target}) has no NIR equivalent", layer=node.name
            )
    return order


def to_nir(network: torch.fx.GraphModule, input_shape: tuple[int, ...]) -> Any:
    """A ``nir.NIRGraph`` of a rate-converted network (see the module doc for what maps)."""
    nir = require_nir()
    chain = _chain(network)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[2:])))
        for name, m in chain
    ]
    try:
        with torch.no_grad():
            functional.reset_net(network)
            network(torch.zeros((1, 1) + tuple(input_shape)))
            functional.reset_net(network)
    finally:
        for h in hooks:
            h.remove()
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    edges, previous, previous_shape = [], "input", tuple(input_shape)
    for name, module in chain:
        key = name.replace(".", "_")
        inner = module.module if isinstance(module, SeqModule) else module
        numpy = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        if isinstance(inner, nn.Conv2d):
            if inner.padding_mode != "zeros" or isinstance(inner.padding, str):
                raise UnsupportedLayerError(
                    f"layer '{name}': Conv2d padding {inner.padding!r} ({inner.padding_mode}) has no NIR equivalent",
                    layer=name,
                )
            nodes[key] = nir.Conv2d(
                input_shape=np.array(previous_shape[1:]),
                weight=numpy(inner.weight),
                stride=np.array(inner.stride),
                padding=np.array(inner.padding),
                dilation=np.array(inner.dilation),
                groups=inner.groups,
                bias=numpy(inner.bias) if inner.bias is not None else np.zeros(inner.out_channels, np.float32),
            )
        elif isinstance(inner, nn.Linear):
            nodes[key] = nir.Affine(
                weight=numpy(inner.weight),
                bias=numpy(inner.bias) if inner.bias is not None else np.zeros(inner.out_features, np.float32),
            )
        elif isinstance(inner, nn.AvgPool2d):
            nodes[key] = nir.AvgPool2d(
                kernel_size=np.array(_pair(inner.kernel_size)),
                stride=np.array(_pair(inner.stride)),
                padding=np.array(_pair(inner.padding)),
            )
        elif isinstance(inner, nn.Flatten):
            nodes[key] = nir.Flatten(
                input_type={"input": np.array(previous_shape)},
                start_dim=inner.start_dim - 1,
                end_dim=inner.end_dim if inner.end_dim < 0 else inner.end_dim - 1,
            )
        elif isinstance(inner, Affine) and inner.bias is None and inner.scale is not None:
            nodes[key] = nir.Scale(scale=np.broadcast_to(numpy(inner.scale), previous_shape).copy())
        elif isinstance(inner, IFNeuron) and inner.tau is None:
            if inner.max_spikes > 1 or not inner.uniform_start:
                what = "fires bursts (max_spikes_per_step > 1)" if inner.max_spikes > 1 else "starts per channel"
                raise UnsupportedLayerError(
                    f"layer '{name}': the IF neuron {what}, which NIR's IF cannot state; convert with binary "
                    "spikes and without recipes='potential' to export",
                    layer=name,
                )
            shape = shapes[name]
            nodes[key] = nir.IF(
                r=np.ones(shape, np.float32),
                v_threshold=np.full(shape, inner.v_threshold, np.float32),
                v_reset=np.zeros(shape, np.float32),
                metadata={"convert2snn.reset": "subtract", "convert2snn.v_init": float(inner.v_init)},
            )
        elif isinstance(inner, MembraneReadout):
            nodes["output"] = nir.Output(
                output_type={"output": np.array(previous_shape)},
                metadata={"convert2snn.readout": "running mean of the input current"},
            )
            edges.append((previous, "output"))
            previous = None
            break
        else:
            raise UnsupportedLayerError(
                f"layer '{name}' ({type(inner).__name__}) has no NIR equivalent; NIR export "
                "covers Conv2d, Linear, AvgPool2d, Flatten, scales and IF neurons",
                layer=name,
            )
        edges.append((previous, key))
        previous, previous_shape = key, shapes[name]
    if previous is not None:
        nodes["output"] = nir.Output(output_type={"output": np.array(previous_shape)})
        edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"convert2snn.warning": WARNING})


def _pair(v: Any) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def write_nir(graph: Any, path: str | os.PathLike) -> str:
    """Write a ``nir.NIRGraph`` (from `to_nir`) to ``path``."""
    require_nir().write(str(path), graph)
    return str(path)


def from_nir(graph_or_path: Any) -> nn.Sequential:
    """A multi-step network of convert2snn modules from a NIR chain written by `to_nir`."""
    nir = require_nir()
    graph = nir.read(str(graph_or_path)) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    following = dict(graph.edges)
    layers: list[nn.Module] = []
    key = following.get("input")
    while key is not None and key != "output":
        node = graph.nodes[key]
        tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        if isinstance(node, nir.Conv2d):
            w = tensor(node.weight)
            conv = nn.Conv2d(
                w.shape[1] * int(node.groups),
                w.shape[0],
                tuple(w.shape[2:]),
                stride=tuple(node.stride),
                padding=tuple(int(p) for p in node.padding),
                dilation=tuple(node.dilation),
                groups=int(node.groups),
            )
            conv.weight.data, conv.bias.data = w, tensor(node.bias)
            layers.append(SeqModule(conv))
        elif isinstance(node, nir.Affine):
            w = tensor(node.weight)
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data, lin.bias.data = w, tensor(node.bias)
            layers.append(SeqModule(lin))
        elif isinstance(node, nir.AvgPool2d):
            layers.append(SeqModule(nn.AvgPool2d(tuple(node.kernel_size), tuple(node.stride), tuple(node.padding))))
        elif isinstance(node, nir.Flatten):
            layers.append(
                SeqModule(nn.Flatten(node.start_dim + 1, node.end_dim if node.end_dim < 0 else node.end_dim + 1))
            )
        elif isinstance(node, nir.Scale):
            layers.append(SeqModule(Affine(tensor(node.scale), None)))
        elif isinstance(node, nir.IF):
            meta = node.metadata or {}
            if meta.get("convert2snn.reset") != "subtract":
                raise UnsupportedLayerError(
                    f"NIR node '{key}': hard-reset IF neurons are not supported (convert2snn "
                    "simulates reset by subtraction)",
                    layer=key,
                )
            thresholds = np.unique(np.asarray(node.v_threshold))
            if thresholds.size != 1:
                raise UnsupportedLayerError(f"NIR node '{key}': per-neuron thresholds are not supported", layer=key)
            layers.append(IFNeuron(v_threshold=float(thresholds[0]), v_init=float(meta.get("convert2snn.v_init", 0.0))))
        else:
            raise UnsupportedLayerError(f"NIR node '{key}' ({type(node).__name__}) is not supported", layer=key)
        key = following.get(key)
    if key == "output" and (graph.nodes["output"].metadata or {}).get("convert2snn.readout"):
        layers.append(MembraneReadout())
    return nn.Sequential(*layers)


__all__ = ["to_nir", "write_nir", "from_nir", "require_nir"]
