"""ONNX AveragePool with asymmetric padding (Keras AveragePooling*D padding='same').

onnx2torch refuses asymmetric ``pads`` on AveragePool. TensorFlow's 'same' average pooling
divides by the number of *real* elements under the window (``count_include_pad=0``), so we
emit ``Pad(0) → AvgPool(padding=0)`` — a plain window sum / kernel size — followed by an
`Affine` whose per-position scale is kernel size / real elements (only where that differs
from 1). Symmetric pads keep onnx2torch's own converter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnx2torch.node_converters.registry import get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, get_shape_from_value_info, onnx_mapping_from_node
from torch import nn

from ..modules import Affine, Pad, torch_pads
from .registry import replace_converter

_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
# onnx2torch's own converter (symmetric pads), taken through its public lookup before ours replaces it
_onnx2torch_average_pool = get_converter("AveragePool", 11)


def _divisor_correction(spatial: tuple[int, ...], kernel, strides, begins, ends) -> torch.Tensor:
    """kernel size / number of unpadded elements, for every output position (shape [1, *out])."""
    n = len(spatial)
    ones = torch.ones((1, 1) + tuple(spatial))
    padded = F.pad(ones, torch_pads(list(begins) + list(ends)))
    pool = _AVG[n](kernel_size=tuple(kernel), stride=tuple(strides), padding=0)
    fraction = pool(padded)[0]  # real elements / kernel size
    return 1.0 / fraction


def _convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    n = len(attrs["kernel_shape"])
    pads = list(attrs.get("pads", [0] * 2 * n))
    begins, ends = pads[:n], pads[n:]
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or begins == ends or attrs.get("ceil_mode", 0):
        return _onnx2torch_average_pool(node, graph)
    if n not in _AVG:
        raise NotImplementedError(f"AveragePool node '{node.name}': {n} spatial axes (1 to 3 are supported)")
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * n))
    parts: list[nn.Module] = [
        Pad(torch_pads(begins + ends)),
        _AVG[n](kernel_size=tuple(kernel), stride=tuple(strides), padding=0),
    ]
    if not attrs.get("count_include_pad", 0):
        info = graph.value_info.get(node.input_values[0])
        shape = get_shape_from_value_info(info) if info is not None else None
        if shape is None or len(shape) != n + 2 or any(not isinstance(d, int) or d <= 0 for d in shape[2:]):
            raise NotImplementedError(f"AveragePool node '{node.name}': asymmetric padding needs a known input shape")
        correction = _divisor_correction(tuple(shape[2:]), kernel, strides, begins, ends)
        if not torch.allclose(correction, torch.ones_like(correction)):
            parts.append(Affine(correction, None))
    return OperationConverterResult(torch_module=nn.Sequential(*parts), onnx_mapping=onnx_mapping_from_node(node))


@replace_converter(operation_type="AveragePool", version=7)
@replace_converter(operation_type="AveragePool", version=10)
@replace_converter(operation_type="AveragePool", version=11)
def average_pool(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """ONNX AveragePool with asymmetric pads → ``Pad → AvgPool`` (+ an `Affine` divisor correction unless
    ``count_include_pad``); other AveragePools go to onnx2torch's own converter."""
    return _convert(node, graph)
