"""`replace_converter`: like onnx2torch's `add_converter`, for ops it already handles partially."""

from __future__ import annotations

from onnx import defs
from onnx2torch.node_converters import registry as _registry


def replace_converter(operation_type: str, version: int, domain: str = defs.ONNX_DOMAIN):
    """Register a converter that takes over an op/version onnx2torch already registered."""
    description = _registry.OperationDescription(domain=domain, operation_type=operation_type, version=version)
    _registry._CONVERTER_REGISTRY.pop(description, None)
    return _registry.add_converter(operation_type=operation_type, version=version, domain=domain)
