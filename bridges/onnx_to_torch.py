"""ONNX → raw `torch.fx.GraphModule` with onnx2torch (plus our converters), after a support check."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx2torch import convert
from onnx2torch.node_converters.registry import get_converter
from torch import fx

from . import converters  # noqa: F401  (registers ours with onnx2torch)
from .errors import InvalidInputError, UnsupportedLayerError

_BRIDGE_META_KEY = "convert2snn.bridge"

_ERF_HINT = (
    "an error function (GELU written out, as tf2onnx exports Keras gelu) has no converter; retrain with ReLU, or "
    "bring the model as torch (nn.GELU exports as an ONNX Gelu op, which conversion_type='population' takes)"
)
# Ops with a known reason and a known way out.
_HINTS = {
    "Loop": "Keras GRU and SimpleRNN export as an ONNX Loop, which is not supported; use an LSTM layer, "
    "or unroll the recurrence (unroll=True) before exporting",
    "Scan": "recurrent layers exported as Scan are not supported; use an LSTM layer",
    "If": "data-dependent control flow (If) cannot be converted; remove the branch from the model",
    "GRU": "GRU is not supported; use an LSTM layer",
    "RNN": "SimpleRNN is not supported; use an LSTM layer",
    "Erf": _ERF_HINT,
    "Erfc": _ERF_HINT,
    "StatefulPartitionedCall": "tf2onnx left this layer as a TensorFlow function call (Keras 3 exports a grouped "
    "Conv2D, groups > 1, this way, and custom layers): ONNX has no such op. Use DepthwiseConv2D or separate "
    "Conv2D layers instead of groups",
    "PartitionedCall": "tf2onnx left this layer as a TensorFlow function call (a grouped Conv2D or a custom "
    "layer): ONNX has no such op. Use DepthwiseConv2D or separate Conv2D layers instead of groups",
}


@dataclass
class OnnxNodeInfo:
    """One ONNX node: its name, op type, Keras layer (when known) and whether a converter exists (and why not)."""

    name: str
    op_type: str
    layer: str | None
    supported: bool
    reason: str = ""


def load_onnx(model: Any) -> onnx.ModelProto:
    """An `onnx.ModelProto` from a proto or a path, with a clear error for anything else."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise InvalidInputError(f"ONNX file '{path}' does not exist")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - protobuf raises many types
            raise InvalidInputError(
                f"'{path}' is not a readable ONNX model ({type(exc).__name__}: {exc}); it may be truncated"
            ) from exc
        if not proto.graph.node:
            raise InvalidInputError(f"'{path}' contains no ONNX graph (empty or not an ONNX file)")
        return proto
    raise InvalidInputError(f"expected an ONNX path or onnx.ModelProto, got {type(model).__name__}")


def bridge_metadata(proto: onnx.ModelProto) -> dict:
    """What `to_onnx` recorded about the source model (Keras layers, input layout), if anything."""
    for entry in proto.metadata_props:
        if entry.key == _BRIDGE_META_KEY:
            return json.loads(entry.value)
    return {}


def layer_of(node_name: str, layers: list[dict]) -> str | None:
    """The Keras layer an ONNX node came from, read off tf2onnx's scoped node names."""
    parts = re.split(r"[/:]", node_name)
    best = None
    for entry in layers:
        name = entry["name"]
        pattern = re.compile(re.escape(name) + r"(_\d+)?$")
        if any(pattern.match(p) for p in parts) and (best is None or len(name) > len(best)):
            best = name
    return best


def node_layers(proto: onnx.ModelProto, layers: list[dict] | None = None) -> dict[str, str]:
    """ONNX node name → Keras layer, for every node whose layer can be told.

    tf2onnx scopes most node names with the layer (``model/conv1_1/BiasAdd``), but the nodes
    its optimisers create or fuse are named after the op (``Conv__45``). Their constant
    inputs (weights, biases: ``model/dw_1/Squeeze:0``) and outputs still carry the scope, so
    those are read next: constants first (they belong to the node's own layer, whereas a
    dynamic input comes from the previous layer), then outputs.
    """
    if layers is None:
        layers = bridge_metadata(proto).get("keras_layers", [])
    if not layers:
        return {}
    constants = {i.name for i in proto.graph.initializer}
    constants |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    out = {}
    for node in proto.graph.node:
        candidates = [node.name] + [v for v in node.input if v in constants] + list(node.output)
        for name in candidates:
            layer = layer_of(name, layers)
            if layer is not None:
                out[node.name] = layer
                break
    # What is still unnamed (a Transpose the optimiser moved, …) belongs with its only
    # consumer, or else with its only producer.
    producer = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for v in n.input:
            if v in producer:
                consumers.setdefault(producer[v].name, []).append(n)
    changed = True
    while changed:
        changed = False
        for node in proto.graph.node:
            if node.name in out:
                continue
            users = {u.name for u in consumers.get(node.name, [])}
            sources = {producer[v].name for v in node.input if v in producer and v not in constants}
            for group in (users, sources):
                if len(group) == 1 and next(iter(group)) in out:
                    out[node.name] = out[next(iter(group))]
                    changed = True
                    break
    return out


def node_support(proto: onnx.ModelProto) -> list[OnnxNodeInfo]:
    """Every ONNX node with its Keras layer (when known) and whether a converter exists."""
    layers = node_layers(proto)
    opsets = {o.domain: o.version for o in proto.opset_import}
    out = []
    for node in proto.graph.node:
        layer = layers.get(node.name)
        supported, reason = True, ""
        if node.op_type in _HINTS:
            supported, reason = False, _HINTS[node.op_type]
        else:
            try:
                get_converter(node.op_type, opsets.get(node.domain, opsets.get("", 17)), node.domain)
            except NotImplementedError:
                supported, reason = False, f"no converter for ONNX op {node.op_type}"
        out.append(OnnxNodeInfo(node.name, node.op_type, layer, supported, reason))
    return out


def check_supported(proto: onnx.ModelProto) -> None:
    """Raise `UnsupportedLayerError` naming every unsupported node (and its Keras layer)."""
    bad = [n for n in node_support(proto) if not n.supported]
    if not bad:
        return
    lines = []
    for n in bad:
        where = (
            f"Keras layer '{n.layer}' (ONNX node '{n.name}', op {n.op_type})"
            if n.layer
            else f"ONNX node '{n.name}' (op {n.op_type})"
        )
        lines.append(f"  - {where}: {n.reason}")
    first = bad[0]
    raise UnsupportedLayerError(
        f"{len(bad)} unsupported op(s) in the model:\n"
        + "\n".join(lines)
        + "\nRemove or replace these layers; `convert2snn inspect MODEL` lists the support status of every layer.",
        layer=first.layer,
        op=first.op_type,
    )


# Warnings that onnx2torch's modules raise while the raw graph runs (the bridge's probes and checks)
# and that say nothing to a user: its Slice indexes with a list, which torch deprecates. The clean
# graph replaces those modules, so they never run in the user's model.
_ONNX2TORCH_NOISE = ("Using a non-tuple sequence for multidimensional indexing",)


@contextmanager
def onnx2torch_warnings_silenced() -> Iterator[None]:
    """Run onnx2torch's raw graph without its warnings that concern only its own code."""
    with warnings.catch_warnings():
        for message in _ONNX2TORCH_NOISE:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def onnx_to_fx(proto: onnx.ModelProto) -> fx.GraphModule:
    """onnx2torch's graph for ``proto`` (checked first; see `check_supported`)."""
    check_supported(proto)
    try:
        return convert(proto)
    except NotImplementedError as exc:
        raise UnsupportedLayerError(f"onnx2torch cannot convert the model: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - onnx2torch raises KeyError, ValueError, ... on models it cannot read
        raise UnsupportedLayerError(
            f"onnx2torch failed on the model ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "`convert2snn inspect MODEL` lists the support status of every layer"
        ) from exc
