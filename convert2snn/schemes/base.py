"""The coding-scheme interface: options, declared per-op rules, and the fixed steps of a conversion.

A scheme is a `Scheme` subclass registered with `@register("name")`. Like a SpikingJelly ann2snn
recipe it owns its options (a `SchemeOptions` dataclass) and runs fixed steps, each called by
one stage of `convert2snn.stages`:

1. `Scheme.check` (before any slow work): every node needs a rule of this scheme and passes the
   rule's own check; `check_model` adds what the options say about the model (e.g. per-layer
   population sizes). All unsupported layers are listed in one `UnsupportedLayerError`.
2. `Scheme.scales` / `Scheme.data_free_scales`: λ per activation, from calibration statistics of
   `calibrated_nodes` or from interval bounds (stage `calibrate`).
3. `Scheme.build`: the SNN graph, node by node, by the rules (stage `build`).
4. `Scheme.finish`: weight normalisation, the exactness check of the T → ∞ limit against the
   λ-clipped ANN, then `finalize` for what differs between schemes.

Rules are declared once per scheme class (`@SomeScheme.rule(key, ...)`, keys: module classes of
the clean-graph vocabulary `bridges.ops`, or functions) and inherited along the class hierarchy:
the rules every coding shares (linear maps, add/sub/concat, max pooling, the final softmax) are
declared on `Scheme` itself in `schemes/common.py`, so a new shared rule reaches every scheme.
A scheme supports exactly the ops it has rules for; ops without one are refused by name in
`check`, with the reason and the way out declared in `Scheme.refusals`. A key declared twice on
the same class is an error; a subclass overrides a rule by declaring the key again.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import fx, nn

from bridges import ops

from ..errors import ApproximationError, ConversionError, InvalidInputError, UnsupportedLayerError
from ..graph.builder import SNNBuilder, build_snn
from ..graph.limits import LIMIT_TOLERANCE, limit_difference, limit_network
from ..graph.normalize import normalize
from ..neurons import MembraneReadout
from ..report import ConversionReport, scale_summary
from ..statistics import LayerStatistics, input_key, interval_maxima

# (what is wrong, what to do, the op) for one node
Problem = tuple[str, str, str]


# -- options ----------------------------------------------------------------------------------------
def option(
    default: Any = MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A `SchemeOptions` field with its help text (shown by ``convert2snn convert --help``) and,
    for a string option, its allowed values (checked by `SchemeOptions.validate`)."""
    metadata = {"help": help, "choices": choices}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class SchemeOptions:
    """Options every coding scheme takes; a scheme's own options dataclass extends this one."""

    percentile: float = option(
        99.9,
        "activation percentile that sets each layer's scale λ (100 = max "
        "normalisation); 99.9 beat 99.99 and 100 at every T ≤ 8 on MNIST",
    )
    per_channel: bool = option(
        True, "one λ per output channel (False: one per layer); folded into the weights, free at run time"
    )
    encoding: str = option(
        "analog",
        "input coding: 'analog' (the input is a constant current) or 'poisson' (Bernoulli spikes, inputs in [0, 1])",
        choices=("analog", "poisson"),
    )
    input_range: tuple[float, float] = option(
        (0.0, 1.0), "range of every input value, used only without calibration data (data-free, worst-case scales)"
    )
    batch_size: int = option(256, "batch size for calibration and simulation")
    seed: int = option(
        0,
        "seed of everything random (Poisson input, threshold mismatch): the same seed gives "
        "bit-identical models and results",
    )
    strict: bool = option(
        False,
        "raise instead of recording an approximation in the conversion report, and instead of warning "
        "about unscaled-looking calibration data or inputs far from the calibration range",
    )
    progress: bool = option(True, "tqdm progress bars (shown only on a terminal)")

    def validate(self) -> None:
        """Check every value (shared checks here; subclasses add theirs after calling this)."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
                hint = f". Did you mean {close[0]!r}?" if close else ""
                raise InvalidInputError(f"{f.name} must be one of {', '.join(map(repr, choices))}, got {value!r}{hint}")
            if f.type in ("bool", bool) and not isinstance(value, (bool, np.bool_)):
                raise InvalidInputError(f"{f.name} must be True or False, got {value!r}")
        if (
            isinstance(self.percentile, bool)
            or not isinstance(self.percentile, numbers.Real)
            or not 0.0 < self.percentile <= 100.0
        ):
            raise InvalidInputError(f"percentile must be in (0, 100], got {self.percentile}")
        if len(tuple(self.input_range)) != 2 or not float(self.input_range[0]) < float(self.input_range[1]):
            raise InvalidInputError(f"input_range must be (low, high) with low < high, got {self.input_range!r}")
        self.input_range = (float(self.input_range[0]), float(self.input_range[1]))
        if not _is_int(self.batch_size) or int(self.batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {self.batch_size}")
        self.batch_size = int(self.batch_size)
        if not _is_int(self.seed) or int(self.seed) < 0:
            raise InvalidInputError(f"seed must be a non-negative integer, got {self.seed!r}")
        self.seed = int(self.seed)

    def as_dict(self) -> dict[str, Any]:
        """Every option by name (``dataclasses.asdict``)."""
        return asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def make_options(options_class: type[SchemeOptions], options: dict[str, Any], scheme_name: str) -> SchemeOptions:
    """Build and validate options, naming any unknown option with a suggestion."""
    known = [f.name for f in fields(options_class)]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known options: {', '.join(known)}."
            raise InvalidInputError(f"unknown option {name!r} for conversion_type={scheme_name!r}.{hint}")
    opts = options_class(**options)
    opts.validate()
    return opts


# -- rules ------------------------------------------------------------------------------------------
Build = Callable[[SNNBuilder, fx.Node, tuple], fx.Node]


@dataclass(frozen=True)
class Rule:
    """How a scheme converts one op: ``build`` makes the SNN node; ``check`` (optional) says before
    any slow work why a particular node cannot be built (a `Problem`), or None."""

    build: Build
    check: Callable[[CheckContext, fx.Node], Problem | None] | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a scheme has no rule for an op, and what to do instead. ``what`` and ``hint`` may use
    ``{coded}`` (e.g. "rate-coded") and ``{by}`` (e.g. "spike rates of IF neurons"); ``label`` names
    the op in the message (default: its class or function name), ``op`` in the error."""

    what: str
    hint: str
    label: str | None = None
    op: str | None = None


class CheckContext:
    """What a rule's check sees: the ANN, the layer names, the options, and a cache for analyses
    of the whole graph that several nodes need (computed once per check)."""

    def __init__(self, scheme: Scheme, ann: fx.GraphModule, layer_names: dict[str, str]):
        self.scheme = scheme
        self.options = scheme.options
        self.ann = ann
        self.layer_names = layer_names
        self._cache: dict[str, Any] = {}

    def module(self, node: fx.Node) -> nn.Module | None:
        """The module a ``call_module`` node calls; None for any other node."""
        return self.ann.get_submodule(node.target) if node.op == "call_module" else None

    def cached(self, key: str, compute: Callable[[fx.GraphModule], Any]) -> Any:
        """``compute(ann)``, computed on the first request for ``key`` in this check and cached."""
        if key not in self._cache:
            self._cache[key] = compute(self.ann)
        return self._cache[key]


# -- the scheme ---------------------------------------------------------------------------------------
_SCHEMES: dict[str, type[Scheme]] = {}


def register(name: str) -> Callable[[type[Scheme]], type[Scheme]]:
    """Register a scheme class under its ``conversion_type`` name (once)."""

    def deco(cls: type[Scheme]) -> type[Scheme]:
        if name in _SCHEMES:
            raise ValueError(f"conversion_type {name!r} is registered twice")
        cls.name = name
        _SCHEMES[name] = cls
        return cls

    return deco


def scheme_class(name: Any) -> type[Scheme]:
    """The registered scheme class of a ``conversion_type``, with a suggestion for a misspelt name."""
    if name not in _SCHEMES:
        close = difflib.get_close_matches(str(name), list(_SCHEMES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidInputError(f"unknown conversion_type {name!r}; available: {', '.join(_SCHEMES)}.{hint}")
    return _SCHEMES[name]


def registered() -> list[str]:
    """The registered ``conversion_type`` names, in registration order."""
    return list(_SCHEMES)


class Scheme:
    """A coding scheme: its options and its rules (see the module docstring)."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[SchemeOptions]] = SchemeOptions
    coded: ClassVar[str] = "spike-coded"  # the adjective messages use: "rate-coded", ...
    represented_by: ClassVar[str] = "spikes"  # what carries values: "spike rates of IF neurons", ...
    refusals: ClassVar[dict[Any, Refusal]] = {}  # op → why there is no rule; merged along the class hierarchy
    _rules: ClassVar[dict[Any, Rule]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # each class declares its own rules and refusals; lookups walk the hierarchy
        cls._rules = dict(cls.__dict__.get("_rules", {}))
        cls.refusals = dict(cls.__dict__.get("refusals", {}))

    def __init__(self, options: SchemeOptions):
        if not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} takes {self.Options.__name__}, got {type(options).__name__}")
        self.options = options

    @classmethod
    def create(cls, options: dict[str, Any] | None = None) -> Scheme:
        """The scheme with validated options (unknown names get a "did you mean")."""
        return cls(make_options(cls.Options, dict(options or {}), cls.name))

    # -- declarations ------------------------------------------------------------------------------
    @classmethod
    def rule(cls, *keys: Any, check: Callable[[CheckContext, fx.Node], Problem | None] | None = None):
        """Declare ``fn(builder, node, args) -> fx.Node`` as this scheme's rule for ``keys``."""

        def deco(fn: Build) -> Build:
            for key in keys:
                if key in cls._rules:
                    raise ValueError(f"{cls.__name__} declares a rule for {ops.op_name(key)} twice")
                cls._rules[key] = Rule(fn, check)
            return fn

        return deco

    @classmethod
    def _declared(cls, table: str, op: Any) -> Any:
        """What this scheme's class hierarchy declares for ``op`` in ``table`` ("_rules" or "refusals"):
        for a module, the entry of the most specific class in its hierarchy; for a function, its own."""
        keys = type(op).__mro__ if isinstance(op, nn.Module) else (op,)
        for key in keys:
            for scheme in cls.__mro__:
                declared = scheme.__dict__.get(table)
                if declared is not None and _hashable(key) and key in declared:
                    return declared[key]
        return None

    @classmethod
    def rule_for_op(cls, op: Any) -> Rule | None:
        """The rule for a module or a function (see `_declared`)."""
        return cls._declared("_rules", op)

    def rule_for(self, ann: fx.GraphModule, node: fx.Node) -> Rule | None:
        """The rule for ``node`` of ``ann`` (by its module or function); None for placeholders, outputs and methods."""
        if node.op == "call_module":
            return self.rule_for_op(ann.get_submodule(node.target))
        if node.op == "call_function":
            return self.rule_for_op(node.target)
        return None  # placeholders, outputs; methods are never converted

    def refusal(self, op: Any) -> Problem:
        """Why ``op`` has no rule here, and what to do."""
        name = ops.op_name(op)
        declared: Refusal | None = self._declared("refusals", op)
        if declared is not None:
            what = declared.what.format(coded=self.coded, by=self.represented_by)
            hint = declared.hint.format(coded=self.coded, by=self.represented_by)
            return f"{declared.label or name}: {what}", hint, declared.op or name
        if isinstance(op, nn.Module):
            return (
                f"{name} has no {self.coded} equivalent",
                "Replace it with a supported layer (see the README's table).",
                name,
            )
        return f"{name} has no {self.coded} equivalent", "Remove it.", "function"

    # -- 1. check ----------------------------------------------------------------------------------
    def check(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        """Refuse, before any calibration, everything this scheme cannot convert in ``ann``."""
        problems = self.problems(ann, layer_names)
        if problems:
            grouped: dict[tuple[str, str], list[str]] = {}  # (what, hint) → layers, in graph order
            for layer, problem in problems:
                grouped.setdefault(problem[:2], []).append(layer)
            lines = [f"  - {_layer_list(layers)}: {what}. {hint}" for (what, hint), layers in grouped.items()]
            raise UnsupportedLayerError(
                f"{len(dict.fromkeys(layer for layer, _ in problems))} layer(s) cannot be converted with "
                f"conversion_type={self.name!r}:\n" + "\n".join(lines),
                layer=problems[0][0],
                op=problems[0][1][2],
            )
        self.check_model(ann, layer_names)

    def problems(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> list[tuple[str, Problem]]:
        """(layer, problem) for every node of ``ann`` this scheme cannot convert, in graph order."""
        ctx = CheckContext(self, ann, layer_names)
        found = []
        for node in ann.graph.nodes:
            problem = self.node_problem(ctx, node)
            if problem:
                found.append((layer_names.get(node.name, node.name), problem))
        return found

    def node_problem(self, ctx: CheckContext, node: fx.Node) -> Problem | None:
        """What keeps ``node`` out of this scheme's SNN, or None."""
        if node.op in ("placeholder", "output"):
            return None
        if node.op == "get_attr":  # a problem where it is an output or feeds an op that is otherwise supported
            if not any(user.op == "output" or self.rule_for(ctx.ann, user) is not None for user in node.users):
                return None
            return "a free-standing constant tensor cannot be represented", "Fold it into a layer.", "constant"
        rule = self.rule_for(ctx.ann, node)
        if rule is None:
            return self.refusal(ctx.module(node) if node.op == "call_module" else node.target)
        return rule.check(ctx, node) if rule.check is not None else None

    def check_model(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        """Checks of the options against the model (after every layer is known to be supported)."""

    def check_calibration_data(self, x: torch.Tensor) -> None:
        """Checks of calibration data (in the ANN's layout) that depend on the options."""
        if self.options.encoding == "poisson" and (float(x.min()) < 0 or float(x.max()) > 1):
            raise InvalidInputError(
                "encoding='poisson' needs inputs in [0, 1] (spike probabilities); "
                f"calibration_data spans [{float(x.min()):.3g}, {float(x.max()):.3g}]"
            )

    # -- 2. scales -----------------------------------------------------------------------------------
    def calibrated_nodes(self, ann: fx.GraphModule) -> list[fx.Node]:
        """The ANN nodes whose activation statistics set a scale: the ReLU-like activations."""
        return [
            n
            for n in ann.graph.nodes
            if n.op == "call_module" and isinstance(ann.get_submodule(n.target), ops.RELU_LIKE)
        ]

    def ranged_nodes(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> list[fx.Node]:
        """The ANN nodes whose INPUT range [low, high] the scheme needs: none, unless the scheme represents
        activations on a bounded range (population coding's pieces of `ops.SCALAR_ACTIVATIONS`)."""
        return []

    def range_scales(
        self,
        ann: fx.GraphModule,
        ranges: dict[str, tuple[float, float]],
        layer_names: dict[str, str],
        report: ConversionReport,
    ) -> dict[str, torch.Tensor]:
        """The input range of each ranged node as its "scale": a tensor [low, high]."""
        scales = {}
        for node in self.ranged_nodes(ann, layer_names):
            low, high = (float(v) for v in ranges[node.name])
            scales[node.name] = torch.tensor([low, high])
            report.scales[layer_names.get(node.name, node.name)] = {"low": low, "high": high}
        return scales

    def scales(
        self,
        ann: fx.GraphModule,
        statistics: dict[str, LayerStatistics],
        shapes: dict[str, tuple[int, ...]],
        layer_names: dict[str, str],
        report: ConversionReport,
    ) -> dict[str, torch.Tensor]:
        """λ per calibrated node from its statistics at the ``percentile`` option."""
        p = self.options.percentile
        maxima = {n.name: statistics[n.name].scale(p) for n in self.calibrated_nodes(ann)}
        ranges = {n.name: statistics[input_key(n.name)].range(p) for n in self.ranged_nodes(ann, layer_names)}
        return {
            **self.layer_scales(ann, maxima, shapes, layer_names, report),
            **self.range_scales(ann, ranges, layer_names, report),
        }

    def data_free_scales(
        self,
        ann: fx.GraphModule,
        shapes: dict[str, tuple[int, ...]],
        layer_names: dict[str, str],
        report: ConversionReport,
    ) -> dict[str, torch.Tensor]:
        """λ per calibrated node from worst-case bounds for inputs in ``input_range`` (no data)."""
        opts = self.options
        if opts.strict:
            raise ApproximationError("no calibration_data: data-free normalisation is an approximation but strict=True")
        nodes = [n.name for n in self.calibrated_nodes(ann)]
        ranged = [n.name for n in self.ranged_nodes(ann, layer_names)]
        input_shape = tuple(shapes[next(iter(ann.graph.nodes)).name])
        bounds = interval_maxima(
            ann, input_shape, opts.input_range, nodes, per_channel=opts.per_channel, input_ranges=ranged
        )
        report.approximations.append(
            f"data-free normalisation: λ is the largest activation any input in {opts.input_range} can produce "
            "(no clipping, but coarser rates than data-based λ: pass calibration_data for fewer timesteps)"
        )
        ranges = {name: tuple(bounds[input_key(name)].tolist()) for name in ranged}
        return {
            **self.layer_scales(ann, {name: bounds[name] for name in nodes}, shapes, layer_names, report),
            **self.range_scales(ann, ranges, layer_names, report),
        }

    def layer_scales(
        self,
        ann: fx.GraphModule,
        maxima: dict[str, torch.Tensor],
        shapes: dict[str, tuple[int, ...]],
        layer_names: dict[str, str],
        report: ConversionReport,
    ) -> dict[str, torch.Tensor]:
        """λ for each calibrated node from its measured (or bounded) maximum: capped by a clip value
        (ReLU6), never zero (a channel never active gets λ = 1)."""
        scales = {}
        for node in self.calibrated_nodes(ann):
            lam = maxima[node.name].float()
            module = ann.get_submodule(node.target)
            if isinstance(module, nn.Hardtanh):
                lam = lam.clamp(max=float(module.max_val))
            dead = lam <= 0
            name = layer_names.get(node.name, node.name)
            if bool(dead.any()):
                report.notes.append(
                    f"layer '{name}': {int(dead.sum())} channel(s) never active on the calibration "
                    "data; their λ is set to 1"
                )
                lam = torch.where(dead, torch.ones_like(lam), lam)
            if lam.dim() == 1:  # per channel: broadcast over the sample's other axes
                rank = len(shapes[node.name])
                lam = lam.reshape((-1,) + (1,) * (rank - 1)) if rank > 1 else lam
            scales[node.name] = lam
            report.scales[name] = scale_summary(lam)
        return scales

    # -- 3. build ------------------------------------------------------------------------------------
    def build(
        self,
        ann: fx.GraphModule,
        scales: dict[str, torch.Tensor],
        report: ConversionReport,
        layer_names: dict[str, str],
    ) -> fx.GraphModule:
        """The SNN graph of ``ann`` by this scheme's rules."""
        return build_snn(ann, self, scales, report, layer_names)

    def readout(self, builder: SNNBuilder, output: fx.Node) -> nn.Module:
        """The output layer (a non-spiking accumulator)."""
        return MembraneReadout()

    def approximation(self, report: ConversionReport, what: str) -> None:
        """Record an approximation, or refuse it with ``strict=True``."""
        if self.options.strict:
            raise ApproximationError(f"{what}, an approximation, but strict=True")
        report.approximations.append(what)

    # -- 4. finish -----------------------------------------------------------------------------------
    def finish(
        self,
        snn: fx.GraphModule,
        ann: fx.GraphModule,
        scales: dict[str, torch.Tensor],
        report: ConversionReport,
        example: torch.Tensor,
    ) -> None:
        """Fold the scales into weights, check the T → ∞ limit against the λ-clipped ANN, finalize."""
        folded = normalize(snn, example)
        report.notes.append(f"{folded} scale(s) folded into weights (threshold 1 where a Conv/Linear feeds the neuron)")
        if self.has_exact_limit():
            diff = limit_difference(limit_network(snn), ann, scales, example)
            if diff > LIMIT_TOLERANCE:
                raise ConversionError(
                    f"internal error: the {self.name} SNN's T → ∞ limit differs from the clipped ANN by {diff:.2e}; "
                    "please report this model"
                )
        self.finalize(snn, report)

    def has_exact_limit(self) -> bool:
        """True when the SNN must converge to the λ-clipped ANN (checked at every conversion)."""
        return True

    def finalize(self, snn: fx.GraphModule, report: ConversionReport) -> None:
        """Scheme-specific work after the exactness check."""


def _layer_list(layers: list[str], shown: int = 4) -> str:
    """ "layer 'a'", or "layers 'a', 'b', 'c', 'd' and 12 more" (each layer once: several ops of one
    Keras layer, e.g. hard-swish's add, clip and multiply, are one layer to the user)."""
    layers = list(dict.fromkeys(layers))
    if len(layers) == 1:
        return f"layer '{layers[0]}'"
    names = ", ".join(f"'{name}'" for name in layers[:shown])
    return f"layers {names}" + (f" and {len(layers) - shown} more" if len(layers) > shown else "")


def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
