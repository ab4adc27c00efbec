"""The conversion-type registry: what distinguishes rate, population and temporal conversion.

A conversion type is a class registered with `@conversion_type("name")`. `convert` and
`SpikingModel` only talk to this interface, so a new type is a new module, not an edit of
the pipeline:

- ``options``: its options dataclass (validated, with "did you mean" for typos);
- ``preflight(ann, layer_names)``: refuse unsupported layers before any slow work;
- ``calibrated_nodes(ann)``: the ANN nodes whose activation statistics it needs;
- ``scales(...)``: per-node parameters (e.g. λ) from those statistics;
- rules registered with `convert2snn.build.conversion_rule(name, ...)` build the SNN graph;
- ``finish(snn, model)``: post-build work (weight normalisation, exactness checks, …).
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

from torch import fx

from .errors import InvalidInputError

_TYPES: dict[str, type["ConversionType"]] = {}


class ConversionType:
    name: str = ""
    options: type = object

    def preflight(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        raise NotImplementedError

    def calibrated_nodes(self, ann: fx.GraphModule) -> list[fx.Node]:
        return []

    def min_percentile(self, options: Any) -> float:
        return 100.0

    def scales(self, ann: fx.GraphModule, stats: dict, options: Any, shapes: dict, layer_names: dict[str, str],
               report: Any) -> dict:
        return {}

    def data_free_scales(self, ann: fx.GraphModule, options: Any, shapes: dict, layer_names: dict[str, str],
                         report: Any) -> dict:
        """Per-node parameters without calibration data (model-based); refuse if the type cannot."""
        raise InvalidInputError(f"conversion_type={self.name!r} needs calibration_data")

    def finish(self, snn: fx.GraphModule, model: Any, example: Any) -> None:
        """Post-build work on the SNN graph (normalisation, checks)."""


def refuse_unsupported(ann: fx.GraphModule, layer_names: dict[str, str],
                       problem: Callable[[fx.GraphModule, fx.Node], tuple[str, str, str] | None], type_name: str) -> None:
    """Raise one `UnsupportedLayerError` listing every node for which ``problem`` returns
    (what is wrong, what to do, op) — the preflight of every conversion type."""
    from .errors import UnsupportedLayerError

    problems, first = [], None
    for node in ann.graph.nodes:
        found = problem(ann, node)
        if found:
            layer = layer_names.get(node.name, node.name)
            problems.append(f"  - layer '{layer}': {found[0]}. {found[1]}")
            first = first or (layer, found[2])
    if problems:
        raise UnsupportedLayerError(
            f"{len(problems)} layer(s) cannot be converted with conversion_type={type_name!r}:\n" + "\n".join(problems),
            layer=first[0], op=first[1])


def conversion_type(name: str) -> Callable[[type[ConversionType]], type[ConversionType]]:
    def deco(cls: type[ConversionType]) -> type[ConversionType]:
        cls.name = name
        _TYPES[name] = cls
        return cls
    return deco


def get_conversion(name: Any) -> ConversionType:
    from . import population, rate, temporal  # noqa: F401  (registers the built-in types)

    if name not in _TYPES:
        close = difflib.get_close_matches(str(name), list(_TYPES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidInputError(f"unknown conversion_type {name!r}; available: {', '.join(_TYPES)}.{hint}")
    return _TYPES[name]()


def available() -> list[str]:
    from . import population, rate, temporal  # noqa: F401

    return list(_TYPES)
