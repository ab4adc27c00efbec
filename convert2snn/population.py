"""Population conversion: every unit becomes a population of ``n`` heterogeneous spiking neurons.

- ReLU / ReLU6 / clipped ReLU → ``Affine(1/λ) → PopulationIFNode → Affine(λ)`` (λ, weight
  normalisation, max pooling, Add/Concat, the readout: exactly as in the rate conversion, whose
  rules are reused). With dithered initial potentials a population's count after T steps is
  round(n·T·x): n·T levels instead of T, so the same accuracy needs about n× fewer steps.
- Sigmoid / Tanh → `PopulationActivationNode` (stateless threshold populations, see
  `convert2snn.population_nodes`), so networks with sigmoid/tanh layers convert.
- LSTM (a Keras LSTM after `bridges`) → `PopulationLSTM`: the gates are populations (each
  configurable, n = 0 keeps it analog), products and the cell state are analog.

Options: `PopulationOptions`. Per-layer population sizes: ``layer_n={"dense_1": 64,
"lstm": 32, "lstm/forget_gate": 0}`` (keys: the user's layer names, e.g. Keras layer names;
``"<lstm>/<gate>"`` for one LSTM gate; 0 = analog, allowed for sigmoid/tanh/LSTM gates only).
"""
from __future__ import annotations

import copy
import difflib
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import fx, nn

from bridges.converters.lstm import LSTM
from bridges.modules import Affine, OutputSoftmax

from .build import SNNBuilder, conversion_rule, drop_output_softmax
from .conversion import ConversionType, conversion_type, refuse_unsupported
from .errors import ApproximationError, ConversionError, InvalidInputError
from .population_nodes import (MISMATCH_MODELS, SIGMA_SIGMOID, SIGMA_TANH, PopulationActivationNode,
                               PopulationIFNode, PopulationLSTM, layer_seed)
from .rate import (ACTIVATION_TYPES, RateConversion, limit_network, LIMIT_TOLERANCE, LINEAR_TYPES, MAX_POOL_TYPES, _problem, _set_module,
                   activation_nodes, add, cat, layer_scales, limit_difference, linear_map, normalize, spiking_max_pool,
                   sub)
from .sequence import SeqModule, propagate_shapes

MAX_N = 4096
SQUASHING_TYPES = (nn.Sigmoid, nn.Tanh)
GATES = PopulationLSTM.GATES


@dataclass
class PopulationOptions:
    """Options of ``conversion_type="population"``."""

    n: int = 16
    """Neurons per unit (population size). 16 by measurement: a ReLU CNN needs ~16× fewer
    timesteps than rate coding, sigmoid/tanh/LSTM nets are within 1 pp of the ANN (see benchmarks/RESULTS.md)."""
    mismatch: str = "dither"
    """"dither": deterministic, evenly spread initial potentials (ReLU) / threshold quantiles (sigmoid, tanh);
    "threshold": seeded random threshold mismatch (lognormal gains for ReLU with spread ``sigma_mismatch``,
    N(0, 1.70²) / |N(0, 0.85²)| thresholds for sigmoid / tanh)."""
    sigma_mismatch: float = 0.1
    """Relative (log-)spread of the ReLU neurons' thresholds for ``mismatch="threshold"``."""
    seed: int = 0
    """Seed of the threshold mismatch and of Poisson input (same seed → bit-identical model and results)."""
    layer_n: dict[str, int] = field(default_factory=dict)
    """Per-layer population sizes overriding ``n`` ({"layer": n, "lstm/forget_gate": n}; 0 = analog, only
    for sigmoid / tanh layers and LSTM gates)."""
    percentile: float = 99.9
    """Activation percentile that sets each ReLU layer's scale λ (100 = max normalisation); as for rate."""
    per_channel: bool = True
    """One λ per output channel (False: one per layer); as for rate."""
    encoding: str = "analog"
    """Input coding: "analog" (constant current) or "poisson" (inputs in [0, 1])."""
    input_range: tuple[float, float] = (0.0, 1.0)
    """Without calibration data: the range of every input value, for the data-free (worst-case) scales."""
    batch_size: int = 256
    """Batch size for calibration and simulation."""
    strict: bool = False
    """Raise instead of recording an approximation (random threshold mismatch, population LSTM gates)."""
    progress: bool = True
    """tqdm progress bars (shown only on a terminal)."""

    def validate(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= MAX_N:
            raise InvalidInputError(f"n (neurons per unit) must be an integer in [1, {MAX_N}], got {self.n!r}")
        if self.mismatch not in MISMATCH_MODELS:
            close = difflib.get_close_matches(str(self.mismatch), MISMATCH_MODELS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidInputError(f"mismatch must be one of {', '.join(map(repr, MISMATCH_MODELS))}, got {self.mismatch!r}.{hint}")
        if isinstance(self.sigma_mismatch, bool) or not isinstance(self.sigma_mismatch, (int, float)) \
                or not 0.0 <= float(self.sigma_mismatch) <= 1.0:
            raise InvalidInputError(f"sigma_mismatch (relative threshold spread) must be in [0, 1], got {self.sigma_mismatch!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.layer_n, dict):
            raise InvalidInputError(f"layer_n must be a dict {{layer name: n}}, got {type(self.layer_n).__name__}")
        for key, value in self.layer_n.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"layer_n keys must be layer names (str), got {key!r}")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_N:
                raise InvalidInputError(f"layer_n[{key!r}] must be an integer in [0, {MAX_N}] (0 = analog), got {value!r}")
        if not 0.0 < self.percentile <= 100.0:
            raise InvalidInputError(f"percentile must be in (0, 100], got {self.percentile}")
        if len(tuple(self.input_range)) != 2 or not float(self.input_range[0]) < float(self.input_range[1]):
            raise InvalidInputError(f"input_range must be (low, high) with low < high, got {self.input_range!r}")
        self.input_range = (float(self.input_range[0]), float(self.input_range[1]))
        if self.encoding not in ("analog", "poisson"):
            raise InvalidInputError(f"encoding must be 'analog' or 'poisson', got {self.encoding!r}")
        if isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {self.batch_size}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- which layers, which n ---------------------------------------------------------------------
def _lstm_problem(lstm: LSTM, node: fx.Node) -> str | None:
    if lstm.layout != 1:
        return "a time-major (layout=0) LSTM; only batch-first LSTMs (what bridges makes of a Keras LSTM) convert"
    if len(node.args) != 1 or node.kwargs:
        return "an LSTM with initial states or sequence lengths as inputs"
    for gate in GATES:
        if not isinstance(getattr(lstm, gate), SQUASHING_TYPES):
            return f"an LSTM whose {gate} is {type(getattr(lstm, gate)).__name__} (only sigmoid/tanh gates)"
    return None


def population_problem(ann: fx.GraphModule, node: fx.Node) -> tuple[str, str, str] | None:
    """What keeps ``node`` from a population-coded SNN, or None."""
    if node.op == "call_module":
        mod = ann.get_submodule(node.target)
        if isinstance(mod, SQUASHING_TYPES):
            return None
        if isinstance(mod, LSTM):
            problem = _lstm_problem(mod, node)
            return None if problem is None else (problem, "Use a Keras LSTM (batch-first, zero initial state).", "LSTM")
    if node.op == "call_function" and node.target is operator.getitem:
        source = node.args[0]
        if isinstance(source, fx.Node) and source.op == "call_module" and isinstance(ann.get_submodule(source.target), LSTM):
            return None
        return ("indexing a value other than an LSTM's outputs", "Remove it.", "getitem")
    return _problem(ann, node)


def _keys(layer: str, node_name: str, gate: str | None) -> list[str]:
    names = [layer] if layer == node_name else [layer, node_name]
    return ([f"{name}/{gate}" for name in names] if gate else []) + names


def population_size(options: PopulationOptions, layer: str, node_name: str, gate: str | None = None) -> int:
    for key in _keys(layer, node_name, gate):
        if key in options.layer_n:
            return int(options.layer_n[key])
    return int(options.n)


def check_layer_n(ann: fx.GraphModule, layer_names: dict[str, str], options: PopulationOptions) -> None:
    """Every ``layer_n`` key must name a neuron layer (or an LSTM gate); ReLU layers need n ≥ 1."""
    known: dict[str, str] = {}
    for node in ann.graph.nodes:
        if node.op != "call_module":
            continue
        mod = ann.get_submodule(node.target)
        layer = layer_names.get(node.name, node.name)
        if isinstance(mod, ACTIVATION_TYPES):
            for key in _keys(layer, node.name, None):
                known[key] = "relu"
        elif isinstance(mod, SQUASHING_TYPES):
            for key in _keys(layer, node.name, None):
                known.setdefault(key, "squash")
        elif isinstance(mod, LSTM):
            for gate in GATES:
                for key in _keys(layer, node.name, gate):
                    known[key] = "squash"
            for key in _keys(layer, node.name, None):
                known.setdefault(key, "squash")
    for key, value in options.layer_n.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Layers with neurons: {', '.join(sorted(known)) or 'none'}."
            raise InvalidInputError(f"layer_n names {key!r}, which is not a layer with neurons in this model.{hint}")
        if value == 0 and known[key] == "relu":
            raise InvalidInputError(f"layer_n[{key!r}] = 0 (analog) is only possible for sigmoid/tanh layers and LSTM "
                                    "gates; a ReLU layer needs n ≥ 1 spiking neurons per unit")


def _unit_shape(b: SNNBuilder, node: fx.Node) -> tuple[int, ...]:
    """The per-sample shape of an ANN node's output (shapes are recomputed for a loaded ANN)."""
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        propagate_shapes(b.ann, torch.zeros((1,) + tuple(b.ann.bridge_info.input_shape)))
        meta = node.meta["tensor_meta"]
    return tuple(meta.shape[1:])


def _approximation(b: SNNBuilder, what: str) -> None:
    if b.context.options.strict:
        raise ApproximationError(f"{what}, an approximation, but strict=True")
    b.report.approximations.append(what)


# -- rules ----------------------------------------------------------------------------------------
@conversion_rule("population", *ACTIVATION_TYPES)
def relu_to_population(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    opts = b.context.options
    scale = b.context.scales[node.name]
    layer = b.layer(node)
    n = population_size(opts, layer, node.name)
    if n < 1:
        raise InvalidInputError(f"layer '{layer}' is a ReLU layer: it needs n ≥ 1 spiking neurons per unit")
    if opts.mismatch == "dither":
        neuron = PopulationIFNode.dithered(n)
    else:
        neuron = PopulationIFNode.mismatched(n, _unit_shape(b, node), float(opts.sigma_mismatch),
                                             layer_seed(opts.seed, node.name))
        if opts.sigma_mismatch > 0 and n > 1:
            _approximation(b, f"layer '{layer}': {n} IF neurons per unit with random threshold mismatch "
                              f"(σ = {opts.sigma_mismatch}); rates saturate softly near λ")
    pre = b.call(SeqModule(Affine(1.0 / scale, None)), args, f"{node.name}_in", node)
    spikes = b.call(neuron, (pre,), node.name, node)
    return b.call(SeqModule(Affine(scale, None)), (spikes,), f"{node.name}_out", node)


@conversion_rule("population", *SQUASHING_TYPES)
def squashing_to_population(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    opts = b.context.options
    layer = b.layer(node)
    kind = "sigmoid" if isinstance(b.ann.get_submodule(node.target), nn.Sigmoid) else "tanh"
    n = population_size(opts, layer, node.name)
    if n == 0:
        b.report.notes.append(f"layer '{layer}': {kind} kept analog (layer_n = 0)")
        return b.stateless(node, args)
    if opts.mismatch == "dither":
        neuron = PopulationActivationNode(kind, n, integrate=True)
    else:
        neuron = PopulationActivationNode.mismatched(kind, n, _unit_shape(b, node), layer_seed(opts.seed, node.name),
                                                     integrate=True)
        sigma = SIGMA_SIGMOID if kind == "sigmoid" else SIGMA_TANH
        _approximation(b, f"layer '{layer}': {kind} by {n} neurons per unit with random normal thresholds "
                          f"(σ = {sigma}; Φ(z/σ) differs from {kind} by up to {0.0095 if kind == 'sigmoid' else 0.0189})")
    return b.call(neuron, args, node.name, node)


@conversion_rule("population", LSTM)
def lstm_to_population(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    opts = b.context.options
    lstm = b.ann_module(node)
    layer = b.layer(node)
    problem = _lstm_problem(lstm, node)
    if problem:
        raise b.refuse(node, problem, "Use a Keras LSTM (batch-first, zero initial state).")
    gates, sizes = {}, []
    for gate in GATES:
        analog = getattr(lstm, gate)
        kind = "sigmoid" if isinstance(analog, nn.Sigmoid) else "tanh"
        n = population_size(opts, layer, node.name, gate)
        sizes.append(f"{gate}={n or 'analog'}")
        if n == 0:
            gates[gate] = copy.deepcopy(analog)
        elif opts.mismatch == "dither":
            gates[gate] = PopulationActivationNode(kind, n, integrate=False)
        else:
            gates[gate] = PopulationActivationNode.mismatched(kind, n, (lstm.hidden_size,),
                                                              layer_seed(opts.seed, f"{node.name}/{gate}"), integrate=False)
    if any(isinstance(g, PopulationActivationNode) for g in gates.values()):
        _approximation(b, f"layer '{layer}': LSTM gates as populations ({', '.join(sizes)}); every step runs the "
                          "recurrence with quantised gates and the readout averages the steps")
    return b.call(PopulationLSTM(lstm, gates), args, node.name, node)


@conversion_rule("population", operator.getitem)
def lstm_output(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    return b.graph.call_function(operator.getitem, (args[0], node.args[1]))


# the rate conversion's rules where the behaviour is the same
conversion_rule("population", *MAX_POOL_TYPES)(spiking_max_pool)
conversion_rule("population", *LINEAR_TYPES)(linear_map)
conversion_rule("population", operator.add)(add)
conversion_rule("population", operator.sub)(sub)
conversion_rule("population", torch.cat)(cat)
conversion_rule("population", OutputSoftmax)(drop_output_softmax)


# -- the T → ∞ limit of the wiring ------------------------------------------------------------------
def nominal_limit(snn: fx.GraphModule) -> fx.GraphModule:
    """The SNN with every population replaced by the function it represents (nominal thresholds):
    ReLU populations → clamp(x, 0, 1), sigmoid/tanh populations and LSTM gates → the analog function."""
    def neuron_limit(mod: nn.Module) -> nn.Module | None:
        if isinstance(mod, PopulationIFNode):
            return SeqModule(nn.Hardtanh(0.0, 1.0))
        if isinstance(mod, PopulationLSTM):
            return mod.analog()
        return None

    gm = limit_network(snn, neuron_limit)
    # stand-alone sigmoid/tanh populations (not the gates inside a PopulationLSTM, already analog)
    for name, mod in list(gm.named_modules()):
        if isinstance(mod, PopulationActivationNode) and name and "." not in name:
            _set_module(gm, name, SeqModule(mod.analog()))
    gm.recompile()
    return gm


@torch.no_grad()
def check_limit(snn: fx.GraphModule, ann: fx.GraphModule, scales: dict[str, torch.Tensor], x: torch.Tensor) -> float:
    """Relative difference between the nominal limit of the SNN and the λ-clipped ANN on ``x``."""
    return limit_difference(nominal_limit(snn), ann, scales, x)


@conversion_type("population")
class PopulationConversion(ConversionType):
    """Populations of n heterogeneous neurons per unit: ReLU (n·T levels), sigmoid, tanh, LSTM gates."""

    options = PopulationOptions

    def preflight(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        refuse_unsupported(ann, layer_names, population_problem, "population")
        self._checked = (ann, layer_names)

    def calibrated_nodes(self, ann: fx.GraphModule) -> list[fx.Node]:
        return activation_nodes(ann)

    def min_percentile(self, options: PopulationOptions) -> float:
        # called before calibration: the last moment to check layer_n against the model cheaply
        if getattr(self, "_checked", None) is not None:
            check_layer_n(*self._checked, options)
        return options.percentile

    def scales(self, ann, stats, options, shapes, layer_names, report):
        maxima = {name: s.scale(options.percentile) for name, s in stats.items()}
        return layer_scales(ann, maxima, shapes, layer_names, report)

    def data_free_scales(self, ann, options, shapes, layer_names, report):
        """The rate conversion's interval-arithmetic bounds: the ReLU populations need the same λ."""
        if getattr(self, "_checked", None) is not None:
            check_layer_n(*self._checked, options)
        return RateConversion.data_free_scales(self, ann, options, shapes, layer_names, report)

    def finish(self, snn: fx.GraphModule, model, example: torch.Tensor) -> None:
        check_layer_n(model.ann, model.bridge_info.layers, model.options)
        folded = normalize(snn, example)
        model.report.notes.append(f"{folded} scale(s) folded into weights (threshold 1 where a Conv/Linear feeds the neuron)")
        diff = check_limit(snn, model.ann, model.scales, example)
        if diff > LIMIT_TOLERANCE:
            raise ConversionError(f"internal error: the population SNN's nominal limit differs from the clipped ANN by "
                                  f"{diff:.2e}; please report this model")
