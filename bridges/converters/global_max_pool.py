"""ONNX GlobalMaxPool (Keras GlobalMaxPooling*) → adaptive max pooling to size 1."""

from __future__ import annotations

from onnx2torch.node_converters.registry import add_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node
from torch import nn

_ADAPTIVE_MAX = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}


@add_converter(operation_type="GlobalMaxPool", version=1)
def global_max_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """ONNX GlobalMaxPool on a rank-3 to rank-5 input → ``nn.AdaptiveMaxPool*d(1)``."""
    info = graph.value_info.get(node.input_values[0])
    rank = len(info.type.tensor_type.shape.dim) if info is not None else 0
    if rank not in (3, 4, 5):
        raise NotImplementedError(
            f"GlobalMaxPool node '{node.name}': input rank {rank or 'unknown'} (1-3 spatial axes supported)"
        )
    return OperationConverterResult(torch_module=_ADAPTIVE_MAX[rank - 2](1), onnx_mapping=onnx_mapping_from_node(node))
