"""ONNX → raw `torch.fx.GraphModule` with onnx2torch (plus our converters), after a support check."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from torch import fx

from .errors import InvalidInputError, UnsupportedLayerError

_BRIDGE_META_KEY = "convert2snn.bridge"

# Ops with a known reason and a known way out.
_HINTS = {
    "Loop": "Keras GRU and SimpleRNN export as an ONNX Loop, which is not supported; use an LSTM layer, "
            "or unroll the recurrence (unroll=True) before exporting",
    "Scan": "recurrent layers exported as Scan are not supported; use an LSTM layer",
    "If": "data-dependent control flow (If) cannot be converted; remove the branch from the model",
    "GRU": "GRU is not supported; use an LSTM layer",
    "RNN": "SimpleRNN is not supported; use an LSTM layer",
}


@dataclass
class OnnxNodeInfo:
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
            raise InvalidInputError(f"'{path}' is not a readable ONNX model ({type(exc).__name__}: {exc}); it may be truncated") from exc
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


def node_support(proto: onnx.ModelProto) -> list[OnnxNodeInfo]:
    """Every ONNX node with its Keras layer (when known) and whether a converter exists."""
    from onnx2torch.node_converters.registry import get_converter

    from . import converters  # noqa: F401  (registers ours)

    layers = bridge_metadata(proto).get("keras_layers", [])
    opsets = {o.domain: o.version for o in proto.opset_import}
    out = []
    for node in proto.graph.node:
        layer = layer_of(node.name, layers) if layers else None
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
        where = f"Keras layer '{n.layer}' (ONNX node '{n.name}', op {n.op_type})" if n.layer else f"ONNX node '{n.name}' (op {n.op_type})"
        lines.append(f"  - {where}: {n.reason}")
    first = bad[0]
    raise UnsupportedLayerError(
        f"{len(bad)} unsupported op(s) in the model:\n" + "\n".join(lines)
        + "\nRemove or replace these layers; `convert2snn inspect MODEL` lists the support status of every layer.",
        layer=first.layer, op=first.op_type,
    )


def onnx_to_fx(proto: onnx.ModelProto) -> fx.GraphModule:
    """onnx2torch's graph for ``proto`` (checked first; see `check_supported`)."""
    from onnx2torch import convert

    from . import converters  # noqa: F401

    check_supported(proto)
    try:
        return convert(proto)
    except NotImplementedError as exc:
        raise UnsupportedLayerError(f"onnx2torch cannot convert the model: {exc}") from exc
