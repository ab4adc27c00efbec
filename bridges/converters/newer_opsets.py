"""ONNX opsets 18–21 for onnx2torch 1.5, whose converters stop at opset 17.

`torch.onnx.export` writes opset 20 by default (torch 2.14), so without these a plain torch
export fails on its first ``Constant`` node. Most newer op versions only widen the accepted
types (float8, int4); those reuse onnx2torch's converter of the last version it knows. Where
a version added behaviour (Pad's ``axes`` input and ``wrap`` mode, AveragePool's dilations,
Resize's antialiasing, Reduce*'s axes as an input), the added behaviour is refused with a clear
message when it is used, so nothing is silently approximated. ``onnx.version_converter``
cannot do this instead: it has no downgrade adapters for Pad or ConstantOfShape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.node_converters.registry import add_converter, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

from . import average_pool  # noqa: F401  (our AveragePool converter must be registered before it is aliased)

Guard = Callable[[OnnxNode, OnnxGraph], None]


def _refuse(node: OnnxNode, what: str) -> None:
    raise NotImplementedError(f"{node.operation_type} node '{node.name}': {what} is not supported")


def _alias(op: str, versions: tuple[int, ...], known: int, guard: Guard | None = None) -> None:
    base = get_converter(op, known)

    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        if guard is not None:
            guard(node, graph)
        return base(node, graph)

    for version in versions:
        if not _registered(op, version):
            add_converter(operation_type=op, version=version)(convert)


def _registered(op: str, version: int) -> bool:
    """True when onnx2torch already has a converter for ``op`` at ``version`` (asked through its public lookup)."""
    try:
        get_converter(op, version)
    except NotImplementedError:
        return False
    return True


def _pad_guard(node: OnnxNode, graph: OnnxGraph) -> None:
    if len(node.input_values) > 3 and node.input_values[3]:
        _refuse(node, "padding only some axes (the 'axes' input of Pad-18)")
    if node.attributes.get("mode", "constant") == "wrap":
        _refuse(node, "mode='wrap'")


def _average_pool_guard(node: OnnxNode, graph: OnnxGraph) -> None:
    if any(d != 1 for d in node.attributes.get("dilations", [])):
        _refuse(node, f"dilations {list(node.attributes['dilations'])}")


def _resize_guard(node: OnnxNode, graph: OnnxGraph) -> None:
    if node.attributes.get("antialias", 0):
        _refuse(node, "antialias=1")
    if node.attributes.get("axes"):
        _refuse(node, "resizing only some axes ('axes')")
    if node.attributes.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        _refuse(node, f"keep_aspect_ratio_policy='{node.attributes['keep_aspect_ratio_policy']}'")


def _split_guard(node: OnnxNode, graph: OnnxGraph) -> None:
    if "num_outputs" in node.attributes and not (len(node.input_values) > 1 and node.input_values[1]):
        # Split-18 with num_outputs makes the last chunk smaller when the size does not divide
        _refuse(node, "num_outputs without an explicit 'split' input")


# type-only extensions
for _op, _versions, _known in [
    ("Constant", (19, 21), 13),
    ("Reshape", (19, 21), 14),
    ("Shape", (19, 21), 15),
    ("Cast", (19, 21), 13),
    ("Identity", (19, 21), 16),
    ("Flatten", (21,), 13),
    ("Transpose", (21,), 13),
    ("Squeeze", (21,), 13),
    ("Unsqueeze", (21,), 13),
    ("ConstantOfShape", (20, 21), 9),
]:
    _alias(_op, _versions, _known)
_alias("Pad", (18, 19, 21), 13, _pad_guard)
_alias("AveragePool", (19,), 11, _average_pool_guard)
_alias("Resize", (18, 19), 13, _resize_guard)
_alias("Split", (18,), 13, _split_guard)


@add_converter(operation_type="ReduceMean", version=18)
@add_converter(operation_type="ReduceMax", version=18)
@add_converter(operation_type="ReduceMax", version=20)
@add_converter(operation_type="ReduceMin", version=18)
@add_converter(operation_type="ReduceMin", version=20)
@add_converter(operation_type="ReduceProd", version=18)
@add_converter(operation_type="ReduceSumSquare", version=18)
@add_converter(operation_type="ReduceL1", version=18)
@add_converter(operation_type="ReduceL2", version=18)
@add_converter(operation_type="ReduceLogSum", version=18)
@add_converter(operation_type="ReduceLogSumExp", version=18)
def reduce_with_axes_input(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Reduce-18: the axes moved from an attribute to an (in practice constant) input."""
    axes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            axes = [int(a) for a in torch.as_tensor(get_const_value(node.input_values[1], graph)).flatten().tolist()]
        except KeyError:
            _refuse(node, "axes computed at run time (not a constant)")
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        _refuse(node, "noop_with_empty_axes=1")
    return OperationConverterResult(
        torch_module=OnnxReduceStaticAxes(
            operation_type=node.operation_type, axes=axes, keepdims=node.attributes.get("keepdims", 1)
        ),
        onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
    )
