"""The exception hierarchy shared by the bridges and the SNN side.

Every error a user can trigger with a bad model or bad data is one of these, with a
message that names the offending thing (layer, op, shape, option) and says what to do.
"""

from __future__ import annotations


class ConversionError(Exception):
    """Base class: the model could not be bridged or converted."""


class UnsupportedLayerError(ConversionError):
    """A layer / op has no supported equivalent (in the bridge or in the chosen conversion type)."""

    def __init__(self, message: str, *, layer: str | None = None, op: str | None = None):
        super().__init__(message)
        self.layer = layer
        self.op = op


class InvalidInputError(ConversionError, ValueError):
    """An argument is wrong: a missing file, data of the wrong shape, an unknown option."""


class ExportError(ConversionError):
    """The Keras → ONNX export (run in a child process) failed."""

    def __init__(self, message: str, *, layer: str | None = None):
        super().__init__(message)
        self.layer = layer


def unsupported(what: str, *, layer: str | None, op: str | None, hint: str) -> UnsupportedLayerError:
    """Build an UnsupportedLayerError with the standard message layout."""
    where = f"layer '{layer}'" if layer else "a node"
    op_part = f" (op {op})" if op else ""
    return UnsupportedLayerError(f"{where}{op_part}: {what}. {hint}", layer=layer, op=op)
