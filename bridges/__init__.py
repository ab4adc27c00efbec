"""bridges: framework crossing for convert2snn (Keras → ONNX → clean torch.fx graph).

Knows nothing about spikes. The pipeline::

    Keras model/file ──(child process: TensorFlow + tf2onnx)──► ONNX      `to_onnx`
    ONNX ──(onnx2torch + bridges.converters)──► raw fx graph              `onnx_to_torch`
    raw fx graph ──(bridges.passes rules)──► clean fx graph               `canonicalize`

`to_torch` runs the whole chain for any supported input.
"""

from ._torchvision_guard import import_onnx2torch

import_onnx2torch()  # before anything imports onnx2torch: see _torchvision_guard

from .api import BridgeTimings, LayerStatus, inspect_layers, to_torch  # noqa: E402
from .canonicalize import BridgeInfo, max_relative_diff  # noqa: E402
from .errors import ConversionError, ExportError, InvalidInputError, UnsupportedLayerError  # noqa: E402
from .keras_to_onnx import to_onnx  # noqa: E402

__all__ = [
    "to_onnx",
    "to_torch",
    "inspect_layers",
    "BridgeInfo",
    "BridgeTimings",
    "LayerStatus",
    "max_relative_diff",
    "ConversionError",
    "ExportError",
    "InvalidInputError",
    "UnsupportedLayerError",
]
