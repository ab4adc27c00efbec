"""The exception hierarchy (shared with `bridges`), importable from convert2snn.

- `ConversionError`: base class of everything below.
- `UnsupportedLayerError`: a layer the bridge or the chosen conversion type cannot represent.
- `InvalidInputError` (also a ValueError): bad arguments, files or data.
- `ExportError`: the Keras → ONNX export in the child process failed.
- `ApproximationError`: ``strict=True`` and the conversion would have to approximate.
- `SimulationMemoryError` (also a MemoryError): not even one sample fits in the device's memory.
"""

from bridges.errors import ConversionError, ExportError, InvalidInputError, UnsupportedLayerError, unsupported


class ApproximationError(ConversionError):
    """An approximation would be needed and ``strict=True`` forbids it."""


class SimulationMemoryError(ConversionError, MemoryError):
    """A single sample's activations for one time step do not fit in the device's free memory."""


__all__ = [
    "ConversionError",
    "UnsupportedLayerError",
    "InvalidInputError",
    "ExportError",
    "ApproximationError",
    "SimulationMemoryError",
    "unsupported",
]
