"""Checks of what users pass in: arrays, their shape against the model, labels and timesteps.

Every public entry point reads its data through these functions, so a mistake gets the same
clear `InvalidInputError` wherever it is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from bridges.canonicalize import BridgeInfo

from .errors import InvalidInputError

# The timesteps reported when none are asked for (one simulation up to the largest serves all);
# a single-spike temporal network reports its latency instead (`SpikingModel.default_timesteps`).
DEFAULT_TIMESTEPS = (4, 8, 16, 32)


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
