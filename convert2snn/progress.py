"""tqdm progress bars that stay quiet where nobody watches (non-TTY, CI, ``progress=False``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

from bridges.status import shown, status

__all__ = ["progress_bar", "shown", "status"]

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T], *, desc: str, enabled: bool | None = True, total: int | None = None, leave: bool = False
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` and stderr is a terminal."""
    if not shown(enabled):
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
