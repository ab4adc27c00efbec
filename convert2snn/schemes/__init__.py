"""Coding schemes: how a clean ANN becomes an SNN (`base` defines the interface).

- `rate`: integrate-and-fire neurons, spike counts code values;
- `population`: n heterogeneous neurons per unit (ReLU, sigmoid, tanh, LSTM gates);
- `temporal`: spike timing against a global oscillation (single spike per neuron, or phase code);
- `common`: the rules all of them share, declared once on `Scheme`.

A new scheme is one module: a `SchemeOptions` subclass, a `Scheme` subclass registered with
`@register("name")`, and its rules; importing it here makes ``conversion_type="name"`` available.
"""

from typing import Any

from . import common, rate, population, temporal  # noqa: F401  # isort: skip  (shared rules, then the schemes in order)
from .base import Scheme, SchemeOptions, registered, scheme_class
from .population import PopulationOptions, PopulationScheme
from .rate import RateOptions, RateScheme
from .temporal import TemporalOptions, TemporalScheme


def create(conversion_type: str, options: dict[str, Any] | None = None) -> Scheme:
    """The scheme for ``conversion_type`` with validated ``options`` (misspelt names get a suggestion)."""
    return scheme_class(conversion_type).create(options)


def available() -> list[str]:
    """The registered ``conversion_type`` names."""
    return registered()


__all__ = [
    "Scheme",
    "SchemeOptions",
    "create",
    "available",
    "scheme_class",
    "RateScheme",
    "RateOptions",
    "PopulationScheme",
    "PopulationOptions",
    "TemporalScheme",
    "TemporalOptions",
]
