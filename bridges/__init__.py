"""bridges: framework crossing for convert2snn (Keras → ONNX → clean torch.fx graph).

Knows nothing about spikes. The pipeline::

    Keras model/file ──(child process: TensorFlow + tf2onnx)──► ONNX      `to_onnx`
    ONNX ──(onnx2torch + bridges.converters)──► raw fx graph              `onnx_to_torch`
    raw fx graph ──(bridges.passes rules)──► clean fx graph               `canonicalize`

`to_torch` runs the whole chain for any supported input.
"""
from .api import BridgeTimings, LayerStatus, inspect_layers, to_torch
from .canonicalize import BridgeInfo, max_relative_diff
from .errors import ConversionError, ExportError, InvalidInputError, UnsupportedLayerError
from .keras_to_onnx import to_onnx

__all__ = [
    "to_onnx", "to_torch", "inspect_layers", "BridgeInfo", "BridgeTimings", "LayerStatus", "max_relative_diff",
    "ConversionError", "ExportError", "InvalidInputError", "UnsupportedLayerError",
]
