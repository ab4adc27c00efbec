"""Population conversion: every unit becomes a population of ``n`` heterogeneous spiking neurons.

- ReLU / ReLU6 / clipped ReLU → ``Affine(1/λ) → PopulationIFNode → Affine(λ)``; λ, weight
  normalisation and the readout as every scheme does them (`schemes/base.py`,
  `graph/normalize.py`), max pooling, Add/Concat and the other shared rules from
  `schemes/common.py`. With dithered initial potentials a population's count after T steps is
  round(n·T·x): n·T levels instead of T, so the same accuracy needs about n× fewer steps.
- Sigmoid / Tanh → `PopulationActivationNode` (stateless threshold populations, see
  `convert2snn.neurons.population`), so networks with sigmoid/tanh layers convert.
- Any other scalar activation (`bridges.ops.SCALAR_ACTIVATIONS`: SiLU, GELU, ELU, LeakyReLU,
  hard-swish, Mish, Softplus, …) on its calibrated input range [low, high] → one
  `PiecePopulationNode` per monotone piece, summed with signed weights: f(low) + Σ_k
  (f(b_k) − f(a_k))·F_k(z), which telescopes to f(clamp(z, low, high)) in the T → ∞ limit.
- LSTM (a Keras LSTM after `bridges`) → `PopulationLSTM`: the gates are populations (each
  configurable, n = 0 keeps it analog), products and the cell state are analog.

Options: `PopulationOptions`. Per-layer population sizes: ``layer_n={"dense_1": 64,
"lstm": 32, "lstm/forget_gate": 0}`` (keys: the user's layer names, e.g. Keras layer names;
``"<lstm>/<gate>"`` for one LSTM gate; 0 = analog, allowed for every activation but ReLU; a
piecewise activation with n smaller than its number of pieces gets one neuron per piece).
"""

from __future__ import annotations

import copy
import difflib
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn

from bridges import ops
from bridges.converters.lstm import LSTM
from bridges.modules import Affine

from ..errors import InvalidInputError
from ..graph.builder import SNNBuilder
from ..neurons.population import (
    MISMATCH_MODELS,
    SIGMA_SIGMOID,
    SIGMA_TANH,
    PiecePopulationNode,
    PopulationActivationNode,
    PopulationIFNode,
    PopulationLSTM,
    layer_seed,
    monotone_pieces,
    split_population,
)
from ..sequence import SeqAdd, SeqModule, propagate_shapes
from .base import CheckContext, Problem, Scheme, SchemeOptions, option, register
from .common import check_relu_like

MAX_N = 4096
GATES = PopulationLSTM.GATES


@dataclass
class PopulationOptions(SchemeOptions):
    """Options of ``conversion_type="population"``."""

    n: int = option(
        16,
        "neurons per unit (population size); 16 by measurement: a ReLU CNN needs ~16x fewer "
        "timesteps than rate coding, sigmoid/tanh/LSTM nets are within 1 pp of the ANN",
    )
    mismatch: str = option(
        "dither",
        "'dither': deterministic, evenly spread initial potentials (ReLU) / threshold "
        "quantiles (other activations); 'threshold': seeded random threshold mismatch",
        choices=MISMATCH_MODELS,
    )
    sigma_mismatch: float = option(
        0.1, "relative (log-)spread of the ReLU neurons' thresholds for mismatch='threshold'"
    )
    layer_n: dict[str, int] = option(
        help="per-layer population sizes overriding n ({'layer': n, "
        "'lstm/forget_gate': n}; 0 = analog, only for non-ReLU activations and LSTM "
        "gates)",
        default_factory=dict,
    )

    def validate(self) -> None:
        """The shared checks, then n ∈ [1, MAX_N], sigma_mismatch ∈ [0, 1] and ``layer_n`` a dict {layer name: n ∈
        [0, MAX_N]}."""
        super().validate()
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= MAX_N:
            raise InvalidInputError(f"n (neurons per unit) must be an integer in [1, {MAX_N}], got {self.n!r}")
        if (
            isinstance(self.sigma_mismatch, bool)
            or not isinstance(self.sigma_mismatch, (int, float))
            or not 0.0 <= float(self.sigma_mismatch) <= 1.0
        ):
            raise InvalidInputError(
                f"sigma_mismatch (relative threshold spread) must be in [0, 1], got {self.sigma_mismatch!r}"
            )
        if not isinstance(self.layer_n, dict):
            raise InvalidInputError(f"layer_n must be a dict {{layer name: n}}, got {type(self.layer_n).__name__}")
        for key, value in self.layer_n.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"layer_n keys must be layer names (str), got {key!r}")
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_N:
                raise InvalidInputError(
                    f"layer_n[{key!r}] must be an integer in [0, {MAX_N}] (0 = analog), got {value!r}"
                )


@register("population")
class PopulationScheme(Scheme):
    """Populations of n heterogeneous neurons per unit: ReLU (n·T levels), sigmoid, tanh, any other
    scalar activation (piece by piece), LSTM gates."""

    Options = PopulationOptions
    coded = "population-coded"
    represented_by = "populations of spiking neurons"

    def check_model(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> None:
        """Check the ``layer_n`` keys against the model's layers (`check_layer_n`)."""
        check_layer_n(ann, layer_names, self.options)

    def ranged_nodes(self, ann: fx.GraphModule, layer_names: dict[str, str]) -> list[fx.Node]:
        """The scalar activations with populations: each is represented on the range of its input
        (one kept analog, ``layer_n`` = 0, computes f exactly on any input and needs no range)."""
        return [
            n
            for n in ann.graph.nodes
            if n.op == "call_module"
            and isinstance(ann.get_submodule(n.target), ops.SCALAR_ACTIVATIONS)
            and population_size(self.options, layer_names.get(n.name, n.name), n.name) > 0
        ]


# -- which layers, which n ---------------------------------------------------------------------
def _lstm_problem(lstm: LSTM, node: fx.Node) -> str | None:
    if lstm.layout != 1:
        return "a time-major (layout=0) LSTM; only batch-first LSTMs (what bridges makes of a Keras LSTM) convert"
    if len(node.args) != 1 or node.kwargs:
        return "an LSTM with initial states or sequence lengths as inputs"
    for gate in GATES:
        if not isinstance(getattr(lstm, gate), ops.SQUASHING):
            return f"an LSTM whose {gate} is {type(getattr(lstm, gate)).__name__} (only sigmoid/tanh gates)"
    return None


def check_lstm(ctx: CheckContext, node: fx.Node) -> Problem | None:
    """Why an LSTM node cannot become a `PopulationLSTM` (a `Problem`), or None."""
    problem = _lstm_problem(ctx.module(node), node)
    return None if problem is None else (problem, "Use a Keras LSTM (batch-first, zero initial state).", "LSTM")


def check_lstm_output(ctx: CheckContext, node: fx.Node) -> Problem | None:
    """None for indexing an LSTM's outputs; a `Problem` for indexing anything else."""
    source = node.args[0]
    if isinstance(source, fx.Node) and isinstance(ctx.module(source), LSTM):
        return None
    return "indexing a value other than an LSTM's outputs", "Remove it.", "getitem"


def _keys(layer: str, node_name: str, gate: str | None) -> list[str]:
    names = [layer] if layer == node_name else [layer, node_name]
    return ([f"{name}/{gate}" for name in names] if gate else []) + names


def population_size(options: PopulationOptions, layer: str, node_name: str, gate: str | None = None) -> int:
    """Neurons per unit for a layer or one of its LSTM gates: its ``layer_n`` entry (gate keys first, the
    user's layer name before the node name), else ``n``."""
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
        if isinstance(mod, ops.RELU_LIKE):
            for key in _keys(layer, node.name, None):
                known[key] = "relu"
        elif isinstance(mod, ops.SQUASHING + ops.SCALAR_ACTIVATIONS):
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
            hint = (
                f" Did you mean {close[0]!r}?"
                if close
                else f" Layers with neurons: {', '.join(sorted(known)) or 'none'}."
            )
            raise InvalidInputError(f"layer_n names {key!r}, which is not a layer with neurons in this model.{hint}")
        if value == 0 and known[key] == "relu":
            raise InvalidInputError(
                f"layer_n[{key!r}] = 0 (analog) is only possible for sigmoid/tanh/other non-ReLU activation "
                "layers and LSTM gates; a ReLU layer needs n ≥ 1 spiking neurons per unit"
            )


def _unit_shape(b: SNNBuilder, node: fx.Node) -> tuple[int, ...]:
    """The per-sample shape of an ANN node's output (shapes are recomputed for a loaded ANN)."""
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        propagate_shapes(b.ann, torch.zeros((1,) + tuple(b.ann.bridge_info.input_shape)))
        meta = node.meta["tensor_meta"]
    return tuple(meta.shape[1:])


# -- rules ----------------------------------------------------------------------------------------
@PopulationScheme.rule(*ops.RELU_LIKE, check=check_relu_like)
def relu_to_population(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """ReLU-like → ``Affine(1/λ) → PopulationIFNode → Affine(λ)`` (dithered, or seeded threshold mismatch)."""
    opts = b.options
    scale = b.scales[node.name]
    layer = b.layer(node)
    n = population_size(opts, layer, node.name)  # ≥ 1: `check_layer_n` refused 0 for a ReLU layer
    if opts.mismatch == "dither":
        neuron = PopulationIFNode.dithered(n)
    else:
        neuron = PopulationIFNode.mismatched(
            n, _unit_shape(b, node), float(opts.sigma_mismatch), layer_seed(opts.seed, node.name)
        )
        if opts.sigma_mismatch > 0 and n > 1:
            b.scheme.approximation(
                b.report,
                f"layer '{layer}': {n} IF neurons per unit with random threshold mismatch "
                f"(σ = {opts.sigma_mismatch}); rates saturate softly near λ",
            )
    pre = b.call(SeqModule(Affine(1.0 / scale, None)), args, f"{node.name}_in", node)
    spikes = b.call(neuron, (pre,), node.name, node)
    return b.call(SeqModule(Affine(scale, None)), (spikes,), f"{node.name}_out", node)


@PopulationScheme.rule(*ops.SQUASHING)
def squashing_to_population(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """Sigmoid / Tanh → `PopulationActivationNode` on the integrated input (the analog module for ``layer_n`` 0)."""
    opts = b.options
    layer = b.layer(node)
    kind = "sigmoid" if isinstance(b.ann.get_submodule(node.target), nn.Sigmoid) else "tanh"
    n = population_size(opts, layer, node.name)
    if n == 0:
        b.report.notes.append(f"layer '{layer}': {kind} kept analog (layer_n = 0)")
        return b.stateless(node, args)
    if opts.mismatch == "dither":
        neuron = PopulationActivationNode(kind, n, integrate=True)
    else:
        neuron = PopulationActivationNode.mismatched(
            kind, n, _unit_shape(b, node), layer_seed(opts.seed, node.name), integrate=True
        )
        sigma = SIGMA_SIGMOID if kind == "sigmoid" else SIGMA_TANH
        b.scheme.approximation(
            b.report,
            f"layer '{layer}': {kind} by {n} neurons per unit with random normal thresholds "
            f"(σ = {sigma}; Φ(z/σ) differs from {kind} by up to {0.0095 if kind == 'sigmoid' else 0.0189})",
        )
    return b.call(neuron, args, node.name, node)


@PopulationScheme.rule(*ops.SCALAR_ACTIVATIONS)
def activation_to_pieces(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """f on its input range [low, high]: f(low) + Σ_k (f(b_k) − f(a_k))·(piece population k)."""
    opts = b.options
    layer = b.layer(node)
    activation = b.ann_module(node)
    name = type(activation).__name__
    n = population_size(opts, layer, node.name)
    if n == 0:
        b.report.notes.append(f"layer '{layer}': {name} kept analog (layer_n = 0)")
        return b.stateless(node, args)
    low, high = (float(v) for v in b.scales[node.name])
    pieces = monotone_pieces(activation, low, high)
    with torch.no_grad():
        ends = [activation(torch.tensor([a, c], dtype=torch.float64)).tolist() for a, c in pieces]
        f_low = float(activation(torch.tensor([low], dtype=torch.float64))[0])
    if not pieces:  # constant on the range: no neurons, the constant
        b.report.notes.append(f"layer '{layer}': {name} is constant ({f_low:.4g}) on its input range; no neurons")
        return b.call(SeqModule(Affine(torch.tensor(0.0), torch.tensor(f_low))), args, node.name, node)
    sizes = split_population(n, [abs(fc - fa) for fa, fc in ends])
    out = None
    for k, ((a, c), (fa, fc), size) in enumerate(zip(pieces, ends, sizes)):
        if opts.mismatch == "dither":
            neuron = PiecePopulationNode(activation, a, c, size)
        else:
            neuron = PiecePopulationNode.mismatched(
                activation, a, c, size, _unit_shape(b, node), layer_seed(opts.seed, f"{node.name}/{k}")
            )
        suffix = "" if len(pieces) == 1 else f"_piece{k}"
        spikes = b.call(neuron, args, node.name + suffix, node)
        weighted = b.call(
            SeqModule(Affine(torch.tensor(fc - fa), torch.tensor(f_low) if k == 0 else None)),
            (spikes,),
            f"{node.name}{suffix}_out",
            node,
        )
        out = weighted if out is None else b.call(SeqAdd(1.0), (out, weighted), f"{node.name}_sum", node)
    shape = " + ".join(f"{size} on [{a:.3g}, {c:.3g}]" for (a, c), size in zip(pieces, sizes))
    b.report.notes.append(
        f"layer '{layer}': {name} on its input range [{low:.4g}, {high:.4g}] by {sum(sizes)} threshold neurons per "
        f"unit in {len(pieces)} monotone piece(s) ({shape})"
    )
    if opts.mismatch != "dither":
        b.scheme.approximation(
            b.report,
            f"layer '{layer}': {name} by {sum(sizes)} neurons per unit with random thresholds drawn from it "
            "(mismatch='threshold': each unit's response is a random staircase around it)",
        )
    return out


@PopulationScheme.rule(LSTM, check=check_lstm)
def lstm_to_population(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """`LSTM` → `PopulationLSTM` whose gates are populations of their ``layer_n`` sizes (analog for 0)."""
    opts = b.options
    lstm = b.ann_module(node)
    layer = b.layer(node)
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
            gates[gate] = PopulationActivationNode.mismatched(
                kind, n, (lstm.hidden_size,), layer_seed(opts.seed, f"{node.name}/{gate}"), integrate=False
            )
    if any(isinstance(g, PopulationActivationNode) for g in gates.values()):
        b.scheme.approximation(
            b.report,
            f"layer '{layer}': LSTM gates as populations ({', '.join(sizes)}); every step runs the "
            "recurrence with quantised gates and the readout averages the steps",
        )
    return b.call(PopulationLSTM(lstm, gates), args, node.name, node)


@PopulationScheme.rule(operator.getitem, check=check_lstm_output)
def lstm_output(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """``operator.getitem`` of an LSTM's outputs → the same item of the `PopulationLSTM`'s output tuple."""
    return b.graph.call_function(operator.getitem, (args[0], node.args[1]))
