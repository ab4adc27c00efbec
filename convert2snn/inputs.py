"""Checks of what users pass in: arrays, their shape and range against the model, labels and timesteps.

Every public entry point reads its data through these functions, so a mistake gets the same
clear `InvalidInputError` wherever it is made.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from bridges.canonicalize import BridgeInfo

from .errors import InvalidInputError


def as_tensor(x: Any, name: str = "x") -> torch.Tensor:
    """A float32 tensor from numpy / torch / nested lists, with clear errors for bad data."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001
            raise InvalidInputError(f"{name} cannot be read as an array: {exc}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InvalidInputError(f"{name} must be real-valued, got dtype {t.dtype}")
    t = t.float()
    if t.dim() == 0 or t.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise InvalidInputError(f"{name} contains {bad} NaN/inf value(s)")
    return t


def check_input_shape(x: torch.Tensor, info: BridgeInfo, name: str = "x") -> torch.Tensor:
    """Check ``x`` against the model's input shape (original layout) and return it in the ANN's layout."""
    expected = tuple(info.original_input_shape())
    got = tuple(x.shape[1:])
    if got != expected:
        layout = " (the original model's layout, e.g. NHWC for Keras)" if info.input_permutation else ""
        raise InvalidInputError(
            f"{name} has per-sample shape {got}, but the model expects {expected}{layout}; "
            f"pass an array of shape (N, {', '.join(map(str, expected))})"
        )
    return info.to_model_layout(x)


def labels_to_indices(y: Any, n: int, classes: int) -> np.ndarray:
    """Class indices (N,) from int labels or one-hot rows, checked against ``n`` inputs and ``classes``."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == classes:
        arr = arr.argmax(axis=1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInputError(
            f"labels must be class indices (N,) or one-hot (N, {classes}), got shape {np.asarray(y).shape}"
        )
    if arr.shape[0] != n:
        raise InvalidInputError(f"{arr.shape[0]} labels for {n} inputs")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InvalidInputError("labels must be integers (class indices) or one-hot rows")
        arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= classes:
        raise InvalidInputError(
            f"labels must lie in [0, {classes - 1}] (the model has {classes} outputs); got {arr.min()}..{arr.max()}"
        )
    return arr


def check_timesteps(timesteps: Any) -> list[int]:
    """One or several positive step counts, sorted, without repeats."""
    if isinstance(timesteps, (int, np.integer)):
        values = [timesteps]
    elif isinstance(timesteps, Iterable) and not isinstance(timesteps, (str, bytes)):
        values = list(timesteps)
    else:
        values = None
    if not values or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1 for t in values):
        raise InvalidInputError(f"timesteps must be a positive integer or a list of them, got {timesteps!r}")
    return sorted({int(t) for t in values})


def _dtype_name(data: Any) -> str:
    """numpy's name of the dtype of ``data`` as passed (numpy, torch, TensorFlow tensors, lists)."""
    dtype = getattr(data, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    try:
        return np.dtype(dtype).name if dtype is not None else np.asarray(data).dtype.name
    except TypeError:  # a dtype numpy cannot read (TensorFlow's): the array's
        return np.asarray(data).dtype.name


# The "input far below the calibration range" check needs a batch: a single dark image is no evidence.
MIN_SAMPLES_FOR_A_SMALL_RANGE = 8


@dataclass(frozen=True)
class InputRange:
    """The range and dtype of the inputs a network was calibrated on, kept in its report: an SNN's
    scales hold only for inputs in that range (calibrated on 0–255 pixels, it is wrong on [0, 1])."""

    dtype: str | None  # as the user passed the data; None: the data-free option input_range
    low: float
    high: float
    samples: int

    @classmethod
    def of(cls, data: Any, x: torch.Tensor) -> InputRange:
        """The range of ``x`` (``data`` read by `as_tensor`) with the dtype of ``data`` as passed."""
        return cls(_dtype_name(data), float(x.min()), float(x.max()), int(x.shape[0]))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> InputRange | None:
        """The range stored in a report (`as_dict`), or None for models saved without one."""
        return cls(**d) if d else None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (kept in `ConversionReport.calibration_inputs`)."""
        return asdict(self)

    def __str__(self) -> str:
        if self.dtype is None:
            return f"inputs in [{self.low:.4g}, {self.high:.4g}] (the input_range option, no calibration data)"
        return f"{self.samples} samples of {self.dtype} in [{self.low:.4g}, {self.high:.4g}]"

    def unscaled_warning(self, name: str) -> str | None:
        """Why integer inputs beyond 0/1 look like unscaled images (0–255), or None."""
        if self.dtype is None or np.dtype(self.dtype).kind not in "iu" or self.high <= 1:
            return None
        return (
            f"{name} is {self.dtype} with values in [{self.low:.4g}, {self.high:.4g}]: if the model was trained on "
            f"scaled inputs (e.g. x / 255), scale the calibration data the same way — the SNN's scales hold only "
            f"for inputs in the range it was calibrated on. Pass float data to silence this if the model takes "
            f"{self.dtype} values as they are."
        )

    def mismatch(self, x: torch.Tensor, name: str) -> str | None:
        """Why ``x`` lies far from this range, or None: it reaches beyond the range by more than the
        range's width, or a batch of several samples lies, varying, within the range's lowest tenth
        (0–1 inputs after calibration on 0–255; not checked against a data-free bound)."""
        width = self.high - self.low
        if width <= 0 or x.numel() == 0:
            return None
        low, high = float(x.min()), float(x.max())
        if low < self.low - width or high > self.high + width:
            how = "reaches far beyond it"
        elif (
            self.dtype is not None
            and x.shape[0] >= MIN_SAMPLES_FOR_A_SMALL_RANGE
            and low < high < self.low + width / 10
        ):
            how = f"lies within its lowest tenth, {width / (high - self.low):.3g}× below its top"
        else:
            return None
        return (
            f"{name} lies in [{low:.4g}, {high:.4g}], but the SNN was calibrated on {self}: the input {how}; "
            "scale it as the calibration data was (the CLI's --scale), or convert again with data in this range"
        )


def check_input_range(x: torch.Tensor, calibrated: InputRange | None, name: str, strict: bool) -> bool:
    """Warn (or, ``strict``, raise `InvalidInputError`) when ``x`` lies far from the calibration
    inputs' range; True if it did."""
    problem = calibrated.mismatch(x, name) if calibrated is not None else None
    if problem is None:
        return False
    if strict:
        raise InvalidInputError(problem + " (strict=True)")
    warnings.warn(f"convert2snn: {problem}", UserWarning, stacklevel=4)
    return True
