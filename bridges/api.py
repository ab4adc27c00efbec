"""`to_torch` and `inspect_layers`: one entry point for every kind of model."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import fx, nn

from .canonicalize import BridgeInfo, canonicalize, has_output_softmax
from .converters.lstm import LSTM
from .errors import InvalidInputError
from .keras_to_onnx import is_keras_model, is_keras_path, to_onnx
from .onnx_to_torch import (
    bridge_metadata,
    check_supported,
    load_onnx,
    node_layers,
    node_support,
    onnx2torch_warnings_silenced,
    onnx_to_fx,
)
from .status import status


def _source_kind(model: Any) -> str:
    if isinstance(model, onnx.ModelProto):
        return "onnx"
    if isinstance(model, nn.Module):
        return "torch"
    if is_keras_model(model):
        return "keras"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise InvalidInputError(f"model file '{path}' does not exist")
        if path.suffix.lower() == ".onnx":
            return "onnx"
        if is_keras_path(path):
            return "keras"
        raise InvalidInputError(
            f"'{path}': unknown model format (expected .keras, .h5, a SavedModel directory, .onnx, "
            "a keras.Model or a torch.nn.Module)"
        )
    raise InvalidInputError(
        f"cannot convert an object of type {type(model).__name__}: expected a keras.Model, a path to "
        ".keras/.h5/SavedModel/.onnx, an onnx.ModelProto or a torch.nn.Module"
    )


def onnx_input_shape(proto: onnx.ModelProto) -> tuple[int, ...]:
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InvalidInputError(f"models with {len(inputs)} inputs are not supported (exactly one input is)")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = []
    for i, d in enumerate(dims[1:], start=1):
        if not d.HasField("dim_value") or d.dim_value <= 0:
            raise InvalidInputError(
                f"input '{inputs[0].name}' has a dynamic dimension {i} ('{d.dim_param or '?'}'): "
                "only the batch dimension may be dynamic; fix the input shape when exporting"
            )
        shape.append(d.dim_value)
    return tuple(shape)


@dataclass
class BridgeTimings:
    """Seconds of each bridge stage: the Keras export, the ONNX import (or torch trace), the clean-up."""

    export: float = 0.0
    import_onnx: float = 0.0
    canonicalize: float = 0.0
    # Keras input only: the export child's own stage timings, as `to_onnx` reports them
    # (import_tf, load, export, save, process, and cpu_<stage>).
    export_stages: dict = field(default_factory=dict)


def to_torch(
    model: Any,
    example_input: torch.Tensor | None = None,
    *,
    onnx_path: str | os.PathLike | None = None,
    timings: BridgeTimings | None = None,
    check_inputs: torch.Tensor | None = None,
    progress: bool = True,
) -> fx.GraphModule:
    """A clean `torch.fx.GraphModule` (PyTorch layout, batch first) equivalent to ``model``.

    ``model`` is a `keras.Model`, a path to `.keras`/`.h5`/SavedModel/`.onnx`, an
    `onnx.ModelProto` or a `torch.nn.Module` (then ``example_input``, a batch, is required).
    Keras models are exported to ONNX in a child process (``onnx_path`` keeps that file).
    The result carries ``.bridge_info`` (a `BridgeInfo`): input layout, layer names, whether a
    final softmax was kept. ``check_inputs``: a batch in the original model's layout and range
    (e.g. calibration data) on which the clean graph is checked against the import, besides the
    random inputs every graph is checked on. ``progress``: a status line for each phase that runs
    longer than a second, on a terminal (`bridges.status`). The user's model is not modified.
    """
    timings = timings if timings is not None else BridgeTimings()
    kind = _source_kind(model)
    if kind == "torch":
        with status("tracing and cleaning the torch module", progress):
            return _torch_to_clean(model, example_input, timings, check_inputs)
    with tempfile.TemporaryDirectory(prefix="convert2snn_") as tmp:
        if kind == "keras":
            t0 = time.perf_counter()
            path = Path(onnx_path) if onnx_path else Path(tmp) / "model.onnx"
            with status("exporting the Keras model to ONNX (TensorFlow, in a child process)", progress):
                timings.export_stages = dict(to_onnx(model, path).get("timings", {}))
            timings.export = time.perf_counter() - t0
            proto = onnx.load(str(path))
        else:
            proto = load_onnx(model)
        with status("importing the ONNX graph into torch and cleaning it", progress), onnx2torch_warnings_silenced():
            return _onnx_to_clean(proto, timings, kind, check_inputs)


def _onnx_to_clean(
    proto: onnx.ModelProto, timings: BridgeTimings, source: str, check_inputs: torch.Tensor | None
) -> fx.GraphModule:
    meta = bridge_metadata(proto)
    input_shape = onnx_input_shape(proto)
    permutation = (0, 3, 1, 2) if meta.get("inputs_as_nchw") and len(input_shape) == 3 else None
    if check_inputs is not None and permutation is not None:
        check_inputs = check_inputs.permute(permutation)
    t0 = time.perf_counter()
    raw = onnx_to_fx(proto)
    timings.import_onnx = time.perf_counter() - t0
    layers = meta.get("keras_layers", [])
    # onnx2torch names every module after its ONNX node
    layer_by_node = node_layers(proto, layers)
    sources = {}
    for node in raw.graph.nodes:
        if node.op == "call_module":
            sources[node.name] = layer_by_node.get(str(node.target)) or str(node.target)
    t0 = time.perf_counter()
    gm, clean_sources = canonicalize(raw, input_shape, sources, _matching(check_inputs, input_shape))
    timings.canonicalize = time.perf_counter() - t0
    gm.bridge_info = BridgeInfo(
        source="keras" if meta.get("source") == "keras" else source,
        input_shape=input_shape,
        input_permutation=permutation,
        layers=clean_sources,
        layer_classes={entry["name"]: entry["class"] for entry in layers},
        output_softmax=has_output_softmax(gm),
    )
    return gm


class _LeafTracer(fx.Tracer):
    """Standard layers and our LSTM stay single calls; everything else is traced through."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.LSTM, LSTM)) or super().is_leaf_module(m, qualname)


def _matching(x: torch.Tensor | None, input_shape: tuple[int, ...]) -> torch.Tensor | None:
    """``x`` when it is a batch of the model's input shape (the caller checks shapes with a clear
    error; a mismatch here only leaves the extra check out)."""
    return x if x is not None and tuple(x.shape[1:]) == tuple(input_shape) else None


def _torch_to_clean(
    model: nn.Module, example_input: torch.Tensor | None, timings: BridgeTimings, check_inputs: torch.Tensor | None
) -> fx.GraphModule:
    if example_input is None:
        raise InvalidInputError(
            "a torch.nn.Module needs an example input batch to fix its input shape: "
            "to_torch(module, example_input=torch.zeros(1, C, H, W))"
        )
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise InvalidInputError("example_input must be a tensor with a batch dimension first, e.g. shape (1, C, H, W)")
    t0 = time.perf_counter()
    module = copy.deepcopy(model).eval().float()
    try:
        graph = _LeafTracer().trace(module)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises many kinds
        raise InvalidInputError(
            f"torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: {exc}); "
            "export it to ONNX with torch.onnx.export and pass the .onnx file instead"
        ) from exc
    raw = fx.GraphModule(module, graph)
    timings.import_onnx = time.perf_counter() - t0
    t0 = time.perf_counter()
    input_shape = tuple(example_input.shape[1:])
    gm, sources = canonicalize(raw, input_shape, check_inputs=_matching(check_inputs, input_shape))
    timings.canonicalize = time.perf_counter() - t0
    gm.bridge_info = BridgeInfo(
        source="torch",
        input_shape=tuple(example_input.shape[1:]),
        layers=sources,
        output_softmax=has_output_softmax(gm),
    )
    return gm


@dataclass
class LayerStatus:
    """One row of `inspect_layers`: an original layer (or ONNX node) and whether it bridges."""

    layer: str
    op_types: list[str]
    supported: bool
    reason: str = ""


def inspect_layers(model: Any, progress: bool = True) -> list[LayerStatus]:
    """List a model's layers with their bridge support status, before any conversion work.

    For Keras input this runs the ONNX export in a child process (with a status line on a terminal
    when ``progress``).
    """
    kind = _source_kind(model)
    if kind == "torch":
        raise InvalidInputError("inspect_layers takes Keras or ONNX models; for a torch module use to_torch directly")
    with tempfile.TemporaryDirectory(prefix="convert2snn_") as tmp:
        if kind == "keras":
            path = Path(tmp) / "model.onnx"
            with status("exporting the Keras model to ONNX (TensorFlow, in a child process)", progress):
                to_onnx(model, path)
            proto = onnx.load(str(path))
        else:
            proto = load_onnx(model)
    keras_layers = [entry["name"] for entry in bridge_metadata(proto).get("keras_layers", [])]
    rows: dict[str, LayerStatus] = {}
    for info in node_support(proto):
        # a Keras model's nodes that belong to no layer (tf2onnx's own layout ops) share one row
        key = info.layer or (_NO_LAYER if keras_layers else info.name)
        row = rows.setdefault(key, LayerStatus(layer=key, op_types=[], supported=True))
        if info.op_type not in row.op_types:
            row.op_types.append(info.op_type)
        if not info.supported:
            row.supported = False
            row.reason = info.reason
    # in the Keras model's layer order (ONNX's order follows tf2onnx's rewrites: a BatchNormalization
    # folded into the Conv before it may leave a Reshape that comes first)
    order = {name: i for i, name in enumerate(keras_layers)}
    return sorted(rows.values(), key=lambda r: order.get(r.layer, len(order)))


_NO_LAYER = "(no Keras layer: tf2onnx's layout ops)"


__all__ = ["to_torch", "to_onnx", "inspect_layers", "check_supported", "LayerStatus", "BridgeTimings"]
