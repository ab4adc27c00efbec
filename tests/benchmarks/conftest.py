"""The benchmark scripts, imported as modules for their tests (benchmarks/ is not a package)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
# what the scripts import from each other: forgotten after each test, so that every test imports them fresh
SCRIPTS = ("bench_accuracy", "bench_finetune", "bench_nir", "train_models")


def _script(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))
        for script in SCRIPTS:
            sys.modules.pop(script, None)


@pytest.fixture
def bench_accuracy():
    """`benchmarks/bench_accuracy.py` as a module."""
    yield from _script("bench_accuracy")


@pytest.fixture
def bench_finetune():
    """`benchmarks/bench_finetune.py` as a module."""
    yield from _script("bench_finetune")


@pytest.fixture
def bench_nir():
    """`benchmarks/bench_nir.py` as a module."""
    yield from _script("bench_nir")
