"""The small canonical modules a clean graph may contain besides standard `torch.nn` layers.

A clean graph (see `bridges.passes`) is made of: Conv/ConvTranspose/Linear, BatchNorm (only
where it could not be folded), activations (ReLU, ReLU6, Hardtanh, LeakyReLU, Sigmoid, Tanh),
pooling (Max/Avg/AdaptiveAvg/AdaptiveMax), `nn.Flatten`, `nn.Upsample`, the modules below, and
the functions ``operator.add``, ``operator.sub``, ``operator.mul`` and ``torch.cat``.
Every module here keeps the batch dimension first and is traceable by `torch.fx`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Reshape(nn.Module):
    """Reshape every sample to ``shape`` (the batch dimension is kept)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, ...] reshaped to [B, *shape]."""
        return x.reshape((x.shape[0],) + self.shape)

    def extra_repr(self) -> str:
        """The target sample shape."""
        return f"shape={self.shape}"


class Permute(nn.Module):
    """Permute the non-batch dimensions; ``dims`` includes the batch axis and starts with 0."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        if dims[0] != 0:
            raise ValueError("Permute keeps the batch axis first")
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with its axes permuted by ``dims``."""
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        """The permutation, batch axis included."""
        return f"dims={self.dims}"


class Affine(nn.Module):
    """Elementwise ``x * scale + bias`` with constant tensors broadcast over the batch.

    What a BatchNorm that could not be folded, or a Mul/Add/Sub/Div by a constant, becomes.
    ``scale`` and ``bias`` have the shape of one sample or broadcast to it.
    """

    def __init__(self, scale: torch.Tensor | None, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("scale", None if scale is None else scale.detach().clone().float())
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x * scale + bias`` (either term skipped when None); same shape as ``x``."""
        if self.scale is not None:
            x = x * self.scale
        if self.bias is not None:
            x = x + self.bias
        return x


class Slice(nn.Module):
    """Per-sample slicing ``x[:, ..., start:stop:step, ...]`` on the axes ``dims`` (≥ 1: the batch axis
    is kept): crops, channel splits (chunk / split), strided subsampling. Steps are positive."""

    def __init__(self, dims: tuple[int, ...], starts: tuple[int, ...], stops: tuple[int, ...], steps: tuple[int, ...]):
        super().__init__()
        if not len(dims) == len(starts) == len(stops) == len(steps) or min(dims, default=1) < 1:
            raise ValueError("Slice needs one start, stop and step per axis, on axes ≥ 1")
        if min(steps, default=1) < 1:
            raise ValueError("Slice steps must be positive")
        self.dims = tuple(int(d) for d in dims)
        self.starts = tuple(int(v) for v in starts)
        self.stops = tuple(int(v) for v in stops)
        self.steps = tuple(int(v) for v in steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` sliced by ``start:stop:step`` on each of ``dims``."""
        index: list[slice] = [slice(None)] * x.dim()
        for dim, start, stop, step in zip(self.dims, self.starts, self.stops, self.steps):
            index[dim] = slice(start, stop, step)
        return x[tuple(index)]

    def extra_repr(self) -> str:
        """One ``dim d: start:stop:step`` per sliced axis."""
        return ", ".join(f"dim {d}: {a}:{b}:{c}" for d, a, b, c in zip(self.dims, self.starts, self.stops, self.steps))


class Pad(nn.Module):
    """Constant padding (``F.pad`` layout: last dimension first)."""

    def __init__(self, pads: tuple[int, ...], value: float = 0.0):
        super().__init__()
        self.pads = tuple(int(p) for p in pads)
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded with ``value`` by ``pads`` (negative widths crop)."""
        return F.pad(x, self.pads, mode="constant", value=self.value)

    def extra_repr(self) -> str:
        """The pads (``F.pad`` order) and the fill value."""
        return f"pads={self.pads}, value={self.value}"


def torch_pads(onnx_pads: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """ONNX padding [x1_begin, x2_begin, …, x1_end, x2_end, …] as `F.pad` takes it: last axis first,
    [xn_begin, xn_end, …, x1_begin, x1_end]."""
    n = len(onnx_pads) // 2
    out: list[int] = []
    for begin, end in zip(reversed(onnx_pads[:n]), reversed(onnx_pads[n:])):
        out.extend([int(begin), int(end)])
    return tuple(out)


class OutputSoftmax(nn.Softmax):
    """A softmax that ends the network. Kept so the ANN is exact; an SNN drops it (argmax is unchanged)."""


class ConstantTensor(nn.Module):
    """A constant input-independent tensor (kept as a module so it survives re-tracing)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value.detach().clone())

    def forward(self) -> torch.Tensor:
        """The stored constant (takes no input)."""
        return self.value
