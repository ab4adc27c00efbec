"""The exception hierarchy (shared with `bridges`), importable from convert2snn.

- `ConversionError`: base class of everything below.
- `UnsupportedLayerError`: a layer the bridge or the chosen conversion type cannot represent.
- `InvalidInputError` (also a ValueError): bad arguments, files or data.
- `ExportError`: the Keras → ONNX export in the child process failed.
- `ApproximationError`: ``strict=True`` and the conversion would have to approximate.
"""
from bridges.errors import ConversionError, ExportError, InvalidInputError, UnsupportedLayerError, unsupported


class ApproximationError(ConversionError):
    """An approximation would be needed and ``strict=True`` forbids it."""


__all__ = ["ConversionError", "UnsupportedLayerError", "InvalidInputError", "ExportError", "ApproximationError",
           "unsupported"]
