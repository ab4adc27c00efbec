"""ONNX Gelu (opset 20; what ``torch.onnx.export`` writes for ``nn.GELU``) → ``nn.GELU``."""

from __future__ import annotations

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import nn


@add_converter(operation_type="Gelu", version=20)
def gelu(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """ONNX Gelu → ``nn.GELU`` with the same ``approximate`` mode ('none' or 'tanh')."""
    approximate = node.attributes.get("approximate", "none")
    if isinstance(approximate, bytes):
        approximate = approximate.decode()
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu node '{node.name}': approximate={approximate!r} (only 'none' and 'tanh')")
    return OperationConverterResult(
        torch_module=nn.GELU(approximate=approximate), onnx_mapping=onnx_mapping_from_node(node)
    )
