"""ONNX ConvTranspose with asymmetric padding (Keras Conv*DTranspose padding='same').

onnx2torch refuses asymmetric ``pads`` on ConvTranspose. A transposed convolution with pads
(b, e) on an axis is the unpadded one with b elements cropped at the start and e at the end,
so we emit ConvTranspose(padding=0) followed by a crop (a `Pad` with negative widths).
"""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn

from ..modules import Pad
from .registry import replace_converter

_CONVT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    attrs = node.attributes
    weight = graph.initializers[node.input_values[1]].to_torch()
    bias = graph.initializers[node.input_values[2]].to_torch() if len(node.input_values) > 2 else None
    n = weight.dim() - 2
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotImplementedError(f"ConvTranspose node '{node.name}': auto_pad={attrs['auto_pad']} is not supported")
    if "output_shape" in attrs:
        raise NotImplementedError(f"ConvTranspose node '{node.name}': the output_shape attribute is not supported")
    pads = list(attrs.get("pads", [0] * 2 * n))
    groups = attrs.get("group", 1)
    begins, ends = pads[:n], pads[n:]
    symmetric = begins == ends
    module = _CONVT[n](
        in_channels=weight.shape[0],
        out_channels=weight.shape[1] * groups,
        kernel_size=tuple(attrs.get("kernel_shape", weight.shape[2:])),
        stride=tuple(attrs.get("strides", [1] * n)),
        padding=tuple(begins) if symmetric else 0,
        output_padding=tuple(attrs.get("output_padding", [0] * n)),
        groups=groups,
        dilation=tuple(attrs.get("dilations", [1] * n)),
        bias=bias is not None,
    )
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    if not symmetric:
        crop = []
        for b, e in zip(reversed(begins), reversed(ends)):  # F.pad order: last axis first
            crop.extend([-b, -e])
        module = nn.Sequential(module, Pad(tuple(crop)))
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
    )


@replace_converter(operation_type="ConvTranspose", version=1)
@replace_converter(operation_type="ConvTranspose", version=11)
def conv_transpose(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """ONNX ConvTranspose → ``nn.ConvTranspose*d`` (padding 0 and a cropping `Pad` when pads are asymmetric)."""
    return _convert(node, graph)
