"""NIR (Neuromorphic Intermediate Representation) export and import of rate-converted SNNs.

NIR's consumers read the same node types differently (measured on snnTorch 1.0, Norse 1.1 and
Sinabs 3.1 with nir 1.0.4–1.0.8), so `to_nir` writes the graph for one ``consumer``, a `Consumer`
profile that declares what that importer runs:

============  ==========================  ==================  ============  ===================================
consumer      IF neurons written as       average pooling     residual Add  neurons it runs (``nir_target``)
============  ==========================  ==================  ============  ===================================
``nir``       ``nir.IF`` (v_reset = 0)    ``nir.AvgPool2d``   summed edges  hard reset to 0, fire above θ, v₀ = 0
``norse``     ``nir.IF``                  SumPool2d + scale   summed edges  the same (``IAFCell``)
``snntorch``  ``nir.LIF`` with τ → ∞      ``nir.AvgPool2d``   refused       the same (``Leaky(β = 1, "zero")``)
``sinabs``    ``nir.IF``                  SumPool2d + scale   summed edges  reset by subtraction, floor(v/θ)
                                                                            spikes, v ≥ −θ, v₀ = 0 (``IAF``)
============  ==========================  ==================  ============  ===================================

No consumer reads ``nir.Scale`` (Norse and Sinabs drop it silently, snnTorch refuses it), so every
elementwise scale or bias (a residual branch's rescaling, 1/k² after a sum pool) is written as the
layer all of them read: a 1×1 ``Conv2d`` (or ``Affine``) with a diagonal weight, which computes the
same products (``x·s + Σ 0``) bit for bit. The readout is the graph's output: the last layer's
current at every step (convert2snn's `MembraneReadout` is its running mean).

Exactness: convert with ``nir_target=<consumer>`` (`convert2snn.schemes.rate.RateOptions`) and the
neurons are those the consumer runs; the consumer's spikes then equal ours at every layer and step
(`convert2snn.tools.nir_consumers` runs each and compares), up to float rounding where a residual block was
rescaled for a depth-first importer (metadata ``convert2snn.exact``: "up to float rounding"). A network
with other neurons (the default: reset by subtraction from θ/2, which NIR cannot state) exports too, with
a warning naming the
differences, recorded in the graph's metadata (``convert2snn.exact``, ``convert2snn.differences``);
each IF node's metadata keeps our neuron's reset, v₀, spikes per step and floor, which `from_nir`
honours, so a round trip through this module runs our neurons for every profile (exactly, or up to float
rounding as above). Refused with the layer's
name: max pooling of spikes, concatenation (NIR 1.0 has no such nodes), population and temporal
nodes, bursts of at most Γ > 1 spikes, per-channel initial potentials, and what a consumer's importer
cannot read (grouped convolutions, a leak other than snnTorch's, padded sum pooling).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import fx, nn

from bridges.modules import Affine

from ..errors import InvalidInputError, UnsupportedLayerError
from ..neurons import IFNeuron, MembraneReadout
from ..schemes.rate import NIR_TARGETS
from ..sequence import SeqAdd, SeqModule

# NIR is continuous-time; the consumers discretise with their own step (snnTorch: 1e-4 s, fixed). A leak
# τ (in steps) is written as τ·DT seconds with r = τ, so forward Euler at DT gives v ← v·(1 − 1/τ) + I.
DT = 1e-4
# A time constant so long that 1 − DT/τ and exp(−1/τ) round to 1.0 in float32: an IF neuron, for the
# importers that read nir.LIF but not nir.IF (snnTorch maps nir.IF to a β = 0.9 neuron with a tuple output).
NO_LEAK_TAU = 1e12


@dataclasses.dataclass(frozen=True)
class Consumer:
    """How one NIR importer reads a graph: what to write, and which neurons it then runs."""

    name: str
    if_node: str  # "IF", or "LIF" (τ → ∞) for an importer that cannot run nir.IF
    sum_pool: bool  # average pooling as SumPool2d + a 1/k² scale (the importer has no AvgPool2d)
    summing_edges: bool  # the importer sums several edges into one node (a residual Add)
    scale_nodes: bool  # the importer reads nir.Scale (else a diagonal Conv2d / Affine)
    leak: bool  # the importer runs our LIF (nir.LIF with tau = τ·DT, r = τ) exactly
    grouped_conv: bool  # the importer builds grouped Conv2d layers correctly
    # the importer orders nodes depth-first (nirtorch's GraphExecutor), which runs a residual block correctly only
    # when its skip is a bare edge: a skip's rescaling moves into the other branch and the neuron's threshold
    depth_first: bool
    why_no_add: str = ""

    @property
    def neurons(self) -> dict[str, Any]:
        """The `IFNeuron` it runs (reset_mode, v_init, max_spikes, v_min): what ``nir_target=<name>`` converts to
        (`convert2snn.schemes.rate.NIR_TARGETS`, the one declaration of it)."""
        options = NIR_TARGETS[self.name]
        return {
            "reset_mode": options["reset"],
            "v_init": options["v_init"],
            "max_spikes": options["max_spikes_per_step"] or None,
            "v_min": options["v_min"],
        }


_CONSUMER_LIST = [
    Consumer(
        name="nir",  # the specification as written (nir.IF with v_reset = 0, nir.AvgPool2d, nir.Scale)
        if_node="IF",
        sum_pool=False,
        summing_edges=True,
        scale_nodes=True,
        leak=True,
        grouped_conv=True,
        depth_first=False,
    ),
    Consumer(
        name="norse",
        if_node="IF",
        sum_pool=True,  # Norse maps SumPool2d to LPPool2d(1) and drops AvgPool2d
        summing_edges=True,
        scale_nodes=False,  # dropped silently
        leak=False,  # its LIFBoxCell ignores r
        grouped_conv=False,
        depth_first=True,  # runs IAFCell: v ← v + I, fire v > θ, v ← 0
    ),
    Consumer(
        name="snntorch",
        if_node="LIF",  # nir.IF becomes Leaky(β = 0.9) returning (spikes, mem), which breaks the next layer
        sum_pool=False,
        summing_edges=False,
        scale_nodes=False,  # no mapping: refused
        leak=True,  # Leaky(β = 1 − dt/τ) with dt = 1e-4 and the gain r·dt/τ = 1
        grouped_conv=False,
        depth_first=False,
        # runs Leaky(reset_mechanism="zero"): fire v > θ, v ← 0
        why_no_add="snnTorch's importer (nirtorch.nir_to_torch) passes the two inputs of a node as two arguments "
        "instead of summing them",
    ),
    Consumer(
        name="sinabs",
        if_node="IF",
        sum_pool=True,  # sinabs.layers.SumPool2d (no padding); AvgPool2d dropped
        summing_edges=True,
        scale_nodes=False,  # dropped silently
        leak=False,  # reads tau in steps and fails on conv-shaped v_leak
        grouped_conv=False,
        depth_first=True,  # runs IAFSqueeze: MultiSpike, MembraneSubtract, min_v_mem = −θ
    ),
]
CONSUMERS: dict[str, Consumer] = {c.name: c for c in _CONSUMER_LIST}


def require_nir() -> Any:
    """The ``nir`` package, or a clear error naming the extra that installs it."""
    try:
        import nir  # noqa: PLC0415  (optional: the nir extra)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidInputError("NIR export needs the 'nir' package: pip install 'convert2snn[nir]'") from exc
    return nir


def _consumer(name: str) -> Consumer:
    if name not in CONSUMERS:
        raise InvalidInputError(f"unknown NIR consumer {name!r}; known: {', '.join(CONSUMERS)}")
    return CONSUMERS[name]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _pair(v: Any) -> tuple[int, int]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _has_field(node_type: type, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(node_type)}


class _Writer:
    """Collects the nodes and edges of one export (a small stateful helper of `to_nir`)."""

    def __init__(self, nir: Any, consumer: Consumer):
        self.nir, self.consumer = nir, consumer
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.differences: dict[str, list[str]] = {}
        self.rounding: list[str] = []  # layers exact only up to float rounding
        self.skips: dict[str, tuple[torch.Tensor, list[str]]] = {}  # diagonal scale nodes: (scale, their sources)
        self.folded: dict[str, tuple[str, str]] = {}  # node rescaled or removed for a bare skip → (its neuron, layer)
        self.dropped: set[str] = set()  # scale nodes removed for a bare skip: their edges go in `finish_edges`
        self.position: dict[str, int] = {}  # node → the order it was written in (kept when a node is removed)

    def add(self, key: str, node: Any, sources: list[str]) -> list[str]:
        self.nodes[key] = node
        self.position[key] = len(self.position)
        self.edges.extend((s, key) for s in sources)
        return [key]

    def finish_edges(self) -> str | None:
        """Remove the edges of the dropped skip nodes in one pass over the edges (not one per residual block), and
        name the layer of a rescaled branch that also feeds other layers (None when there is none): the bare skip
        would change those layers' inputs."""
        feeds: dict[str, set[str]] = {}
        for src, dst in self.edges:
            if dst not in self.dropped:  # an edge into a dropped skip went with it
                feeds.setdefault(src, set()).add(dst)
        folded = self.folded.items()
        misfolded = next((layer for key, (neuron, layer) in folded if feeds.get(key, set()) - {neuron}), None)
        self.edges = [(src, dst) for src, dst in self.edges if src not in self.dropped and dst not in self.dropped]
        return misfolded

    def diagonal(self, key: str, scale: torch.Tensor | None, bias: torch.Tensor | None, shape, sources, layer):
        """``x·scale + bias`` (per channel) as a node every consumer reads."""
        nir, shape = self.nir, tuple(shape)
        s = torch.ones(shape) if scale is None else torch.broadcast_to(scale.detach().float().cpu(), shape)
        b = torch.zeros(shape) if bias is None else torch.broadcast_to(bias.detach().float().cpu(), shape)
        if self.consumer.scale_nodes and bias is None:
            return self.add(key, nir.Scale(scale=_numpy(s)), sources)
        if bias is None and len(shape) == 3 and _per_channel(s):
            self.skips[key] = (s[:, 0, 0].clone(), list(sources))
        if len(shape) == 1:
            return self.add(key, nir.Affine(weight=_numpy(torch.diag(s)), bias=_numpy(b)), sources)
        if len(shape) != 3 or not (_per_channel(s) and _per_channel(b)):
            raise UnsupportedLayerError(
                f"layer '{layer}': an elementwise scale/bias of shape {shape} that is not per channel has no NIR node "
                f"{self.consumer.name} reads",
                layer=layer,
            )
        channels = shape[0]
        weight = torch.diag(s[:, 0, 0]).reshape(channels, channels, 1, 1)
        node = nir.Conv2d(
            input_shape=np.array(shape[1:]),
            weight=_numpy(weight),
            stride=np.array([1, 1]),
            padding=np.array([0, 0]),
            dilation=np.array([1, 1]),
            groups=1,
            bias=_numpy(b[:, 0, 0]),
        )
        return self.add(key, node, sources)


def _per_channel(t: torch.Tensor) -> bool:
    return bool((t == t[:, :1, :1]).all())


# -- one small exporter per layer type (registered once) --------------------------------------------------
Exporter = Callable[[_Writer, str, str, nn.Module, tuple, tuple, list[str]], list[str]]
EXPORTERS: dict[type, Exporter] = {}


def exports(*types: type) -> Callable[[Exporter], Exporter]:
    """Register the NIR exporter of a layer type: ``fn(writer, key, layer, module, in_shape, out_shape, sources)``
    adds the layer's node(s) and returns the keys its consumers connect from."""

    def register(fn: Exporter) -> Exporter:
        for t in types:
            EXPORTERS[t] = fn
        return fn

    return register


@exports(nn.Conv2d)
def _conv2d(w: _Writer, key, layer, conv: nn.Conv2d, in_shape, out_shape, sources):
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise UnsupportedLayerError(
            f"layer '{layer}': Conv2d padding {conv.padding!r} ({conv.padding_mode}) has no NIR equivalent", layer=layer
        )
    if conv.groups > 1 and not w.consumer.grouped_conv:
        raise UnsupportedLayerError(
            f"layer '{layer}': a grouped Conv2d (groups={conv.groups}) is built wrongly by {w.consumer.name}'s NIR "
            "importer (in_channels from the weight's second dimension); export for consumer='nir'",
            layer=layer,
        )
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    node = w.nir.Conv2d(
        input_shape=np.array(in_shape[1:]),
        weight=_numpy(conv.weight),
        stride=np.array(conv.stride),
        padding=np.array(conv.padding),
        dilation=np.array(conv.dilation),
        groups=conv.groups,
        bias=_numpy(bias),
    )
    return w.add(key, node, sources)


@exports(nn.Linear)
def _linear(w: _Writer, key, layer, lin: nn.Linear, in_shape, out_shape, sources):
    bias = lin.bias if lin.bias is not None else torch.zeros(lin.out_features)
    return w.add(key, w.nir.Affine(weight=_numpy(lin.weight), bias=_numpy(bias)), sources)


@exports(nn.AvgPool2d)
def _avg_pool(w: _Writer, key, layer, pool: nn.AvgPool2d, in_shape, out_shape, sources):
    kernel, stride, padding = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
    if pool.ceil_mode:
        raise UnsupportedLayerError(f"layer '{layer}': AvgPool2d with ceil_mode has no NIR equivalent", layer=layer)
    if not w.consumer.sum_pool:
        node = w.nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        return w.add(key, node, sources)
    if padding != (0, 0):
        raise UnsupportedLayerError(
            f"layer '{layer}': a padded average pool; {w.consumer.name}'s SumPool2d has no padding", layer=layer
        )
    node = w.nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
    summed = w.add(key, node, sources)
    return w.diagonal(f"{key}_mean", torch.tensor(1.0 / (kernel[0] * kernel[1])), None, out_shape, summed, layer)


@exports(nn.Flatten)
def _flatten(w: _Writer, key, layer, flat: nn.Flatten, in_shape, out_shape, sources):
    dims = len(in_shape)  # per sample; negative dims mean the same to every importer (some add 1 to others)
    start = flat.start_dim - (dims + 1) if flat.start_dim >= 0 else flat.start_dim
    end = flat.end_dim - (dims + 1) if flat.end_dim >= 0 else flat.end_dim
    if start == -dims - 1:
        raise UnsupportedLayerError(f"layer '{layer}': a Flatten over the batch dimension", layer=layer)
    node = w.nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end)
    return w.add(key, node, sources)


@exports(Affine)
def _affine(w: _Writer, key, layer, affine: Affine, in_shape, out_shape, sources):
    return w.diagonal(key, affine.scale, affine.bias, out_shape, sources, layer)


@exports(nn.Identity, nn.Dropout)
def _identity(w: _Writer, key, layer, module, in_shape, out_shape, sources):
    return sources


@exports(IFNeuron)
def _if_neuron(w: _Writer, key, layer, neuron: IFNeuron, in_shape, out_shape, sources):
    nir, consumer = w.nir, w.consumer
    if not neuron.uniform_start:
        raise UnsupportedLayerError(
            f"layer '{layer}': the IF neuron starts per channel (recipes='potential'), which NIR cannot state; "
            "convert without the potential recipe",
            layer=layer,
        )
    if neuron.max_spikes not in (1, None):
        raise UnsupportedLayerError(
            f"layer '{layer}': the IF neuron fires bursts of up to {neuron.max_spikes} spikes, which no NIR node "
            "states; convert with binary spikes (or nir_target='sinabs': as many as thresholds crossed)",
            layer=layer,
        )
    ours = {
        "reset_mode": neuron.reset_mode,
        "v_init": neuron.v_init,
        "max_spikes": neuron.max_spikes,
        "v_min": neuron.v_min,
    }
    differ = [f"{name} {ours[name]} (runs {want})" for name, want in consumer.neurons.items() if ours[name] != want]
    if differ:
        w.differences[layer] = differ
    shape = tuple(out_shape)
    theta = np.full(shape, float(neuron.v_threshold), np.float32)
    if len(sources) > 1 and consumer.depth_first:
        sources, theta = _bare_skip(w, key, layer, sources, theta)
    meta = {
        "convert2snn.layer": layer,
        "convert2snn.reset": neuron.reset_mode,
        "convert2snn.v_init": float(neuron.v_init),
        "convert2snn.max_spikes": 0.0 if neuron.max_spikes is None else float(neuron.max_spikes),
        "convert2snn.v_min": float("nan") if neuron.v_min is None else float(neuron.v_min),
    }
    if neuron.tau is not None and not consumer.leak:
        raise UnsupportedLayerError(
            f"layer '{layer}': {consumer.name}'s NIR importer does not run a LIF neuron's leak as convert2snn does; "
            "export for consumer='snntorch' or 'nir', or convert with neuron='if'",
            layer=layer,
        )
    extra = {"v_reset": np.zeros(shape, np.float32)} if _has_field(nir.LIF, "v_reset") else {}
    if neuron.tau is not None or consumer.if_node == "LIF":
        tau = NO_LEAK_TAU if neuron.tau is None else float(neuron.tau) * DT
        gain = NO_LEAK_TAU / DT if neuron.tau is None else float(neuron.tau)
        node = nir.LIF(
            # float32, as the network runs: snnTorch forms β = 1 − dt/τ from these arrays, and a float64 β would
            # carry its membrane in float64 (a few spikes in 10⁵ off at θ)
            tau=np.full(shape, tau, np.float32),
            r=np.full(shape, gain, np.float32),
            v_leak=np.zeros(shape, np.float32),
            v_threshold=theta,
            metadata={**meta, "convert2snn.tau_steps": float(neuron.tau or 0.0)},
            **extra,
        )
    else:
        extra = {"v_reset": np.zeros(shape, np.float32)} if _has_field(nir.IF, "v_reset") else {}
        node = nir.IF(r=np.ones(shape, np.float32), v_threshold=theta, metadata=meta, **extra)
    return w.add(key, node, sources)


def _bare_skip(w: _Writer, key: str, layer: str, sources: list[str], theta: np.ndarray) -> tuple[list[str], np.ndarray]:
    """A residual Add into neuron ``layer`` for a depth-first importer: ``conv(r) + s·h`` with threshold θ becomes
    ``(conv/s)(r) + h`` with threshold θ/s (per channel), the skip a bare edge listed after the other branch. The
    skip is the rescaled branch that leaves the graph earliest (the fork); `_check_depth_first` then confirms the
    order the importer will run.

    The same spikes up to float rounding (the sums are formed in another order of operations)."""

    def written(k: str) -> int:  # a removed node (or the input) counts as earliest
        return w.position.get(k, -1) if k in w.nodes else -1

    candidates = [k for k in sources if k in w.skips]
    weighted = (w.nir.Conv2d, w.nir.Affine)
    skip = min(candidates, key=lambda k: min(written(s) for s in w.skips[k][1]), default=None)
    others = [k for k in sources if k != skip]
    if skip is None or not all(isinstance(w.nodes[k], weighted) for k in others):
        raise UnsupportedLayerError(
            f"layer '{layer}': a residual Add whose branches both hold layers; {w.consumer.name}'s importer "
            "(nirtorch's GraphExecutor) orders nodes depth-first and would run one branch a step late. Export "
            "for consumer='nir', or use identity skips",
            layer=layer,
        )
    scale, skip_sources = w.skips.pop(skip)
    scale_np = scale.numpy().astype(np.float32)
    for k in others:
        node = w.nodes[k]
        node.weight = (node.weight / scale_np.reshape((-1,) + (1,) * (node.weight.ndim - 1))).astype(np.float32)
        node.bias = (node.bias / scale_np).astype(np.float32)
        w.skips.pop(k, None)  # rescaled: no longer the scale it was
    del w.nodes[skip]
    w.dropped.add(skip)
    w.rounding.append(layer)
    for k in [*others, skip]:
        w.folded[k] = (key, layer)
    return others + skip_sources, (theta / scale_np.reshape(-1, 1, 1)).astype(np.float32)


def _check_depth_first(w: _Writer, layer_of: dict[str, str]) -> None:
    """Refuse a graph that nirtorch's GraphExecutor (Norse's and Sinabs's importers) would run out of order: it
    orders nodes by a depth-first walk from the input along the edges as listed, and a node reached before one of
    its inputs reads that input from the previous step."""
    children: dict[str, list[str]] = {}
    for src, dst in w.edges:
        children.setdefault(src, []).append(dst)
    order: list[str] = []
    seen: set[str] = set()
    stack = ["input"]
    while stack:  # pre-order depth-first walk, children in edge order (as nirtorch's trace_execution)
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        stack.extend(reversed([c for c in children.get(node, []) if c not in seen]))
    position = {k: i for i, k in enumerate(order)}
    for src, dst in w.edges:
        if position[src] > position[dst]:
            name = layer_of.get(dst, dst)
            raise UnsupportedLayerError(
                f"layer '{name}': {w.consumer.name}'s importer (nirtorch's GraphExecutor) orders nodes depth-first "
                f"and would run it before its input '{layer_of.get(src, src)}' (which then arrives a step late): "
                "branches that join other than by an identity skip cannot run there. Export for consumer='nir'",
                layer=name,
            )


_REFUSED = {
    "SpikingMaxPool": "max pooling of spikes has no NIR node (NIR 1.0 pools by sum or average): use average "
    "pooling in the ANN",
    "SeqCat": "NIR 1.0 has no concatenation node",
}


def _shapes(network: fx.GraphModule, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every module call (one step on zeros)."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[2:])))
        for name, m in network.named_children()
    ]
    try:
        with torch.no_grad():
            functional.reset_net(network)
            network(torch.zeros((1, 1) + tuple(input_shape)))
            functional.reset_net(network)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def to_nir(network: fx.GraphModule, input_shape: tuple[int, ...], consumer: str = "nir") -> Any:
    """A ``nir.NIRGraph`` of a rate-converted network, written for ``consumer`` (see the module doc).

    Warns when the network's neurons are not those the consumer runs (the graph's metadata says so too);
    raises `UnsupportedLayerError` naming the first layer that cannot be written."""
    nir = require_nir()
    profile = _consumer(consumer)
    shapes = _shapes(network, input_shape)
    w = _Writer(nir, profile)
    w.nodes["input"] = nir.Input(input_type={"input": np.array(input_shape)})
    sources: dict[fx.Node, list[str]] = {}
    shape_of: dict[fx.Node, tuple[int, ...]] = {}
    output_sources: list[str] | None = None
    width = max(3, len(str(2 * len(network.graph.nodes))))
    layer_of: dict[str, str] = {}  # node key → the layer it was written from (for messages)
    numbered = 0
    for node in network.graph.nodes:
        if node.op == "placeholder":
            sources[node], shape_of[node] = ["input"], tuple(input_shape)
            continue
        if node.op == "output":
            break
        layer = str(node.target) if node.op == "call_module" else node.name
        if node.op != "call_module":
            raise UnsupportedLayerError(
                f"node '{node.name}' ({node.op} {node.target}) has no NIR equivalent", layer=layer
            )
        module = network.get_submodule(node.target)
        inner = module.module if isinstance(module, SeqModule) else module
        inputs = node.all_input_nodes
        if isinstance(module, SeqAdd):  # a residual Add: NIR sums the edges into a node
            sources[node] = [key for parent in inputs for key in sources[parent]]
            shape_of[node] = shapes[layer]
            continue
        if isinstance(module, MembraneReadout):
            output_sources = sources[inputs[0]]
            shape_of[node] = shape_of[inputs[0]]
            continue
        exporter = EXPORTERS.get(type(inner))
        if exporter is None:
            reason = _REFUSED.get(type(inner).__name__, "")
            covered = "Conv2d, Linear, AvgPool2d, Flatten, scales, residual Add and IF/LIF neurons"
            raise UnsupportedLayerError(
                f"layer '{layer}' ({type(inner).__name__}) has no NIR equivalent"
                + (f": {reason}" if reason else f"; NIR export covers {covered}"),
                layer=layer,
            )
        if len(inputs) != 1:
            raise UnsupportedLayerError(f"layer '{layer}' ({type(inner).__name__}) has several inputs", layer=layer)
        incoming = sources[inputs[0]]
        if len(incoming) > 1 and not profile.summing_edges:
            raise UnsupportedLayerError(
                f"layer '{layer}' adds two branches (a residual Add), which {profile.name} cannot run: "
                f"{profile.why_no_add}; export for consumer='norse' or 'sinabs'",
                layer=layer,
            )
        # numbered in graph order: nir.read returns nodes sorted by name, and snnTorch's importer (nirtorch's
        # nir_to_torch) gives up on a node it has to revisit more than three times
        key = f"n{numbered:0{width}d}_{layer.replace('.', '_')}"
        numbered += 1  # not len(w.nodes): a bare skip deletes a node, and a reused number breaks the order
        layer_of[key] = layer
        sources[node] = exporter(w, key, layer, inner, shape_of[inputs[0]], shapes[layer], incoming)
        shape_of[node] = shapes[layer]
    last = next(n for n in reversed(network.graph.nodes) if n.op == "output").all_input_nodes[0]
    if output_sources is None:
        output_sources = sources[last]
    if len(output_sources) > 1 and not profile.summing_edges:
        raise UnsupportedLayerError(
            f"the output adds two branches ('{last.name}'), which {profile.name} cannot run: {profile.why_no_add}; "
            "export for consumer='norse' or 'sinabs'",
            layer=last.name,
        )
    w.add("output", nir.Output(output_type={"output": np.array(shape_of[last])}), output_sources)
    misfolded = w.finish_edges()
    if profile.depth_first:
        _check_depth_first(w, layer_of)
    if misfolded is not None:  # a rescaled branch must feed nothing but its neuron
        raise UnsupportedLayerError(
            f"layer '{misfolded}': a residual branch that also feeds other layers; {profile.name}'s importer needs "
            "the skip as a bare edge, which would change those layers' inputs. Export for consumer='nir'",
            layer=misfolded,
        )
    exact = not w.differences
    metadata = {
        "convert2snn.consumer": profile.name,
        "convert2snn.exact": ("up to float rounding" if w.rounding else "yes") if exact else "no",
        "convert2snn.dt": DT,
        "convert2snn.readout": "the output is the last layer's current at each step; convert2snn reads its mean",
    }
    if not exact:
        text = "; ".join(f"'{layer}': {', '.join(d)}" for layer, d in w.differences.items())
        metadata["convert2snn.differences"] = text
        first, diffs = next(iter(w.differences.items()))
        warnings.warn(
            f"NIR export for {profile.name}: the network's neurons are not those {profile.name} runs "
            f"({len(w.differences)} layer(s), e.g. '{first}': {', '.join(diffs)}), so its spikes will differ from "
            f"convert2snn's; convert with nir_target={profile.name!r} for an exact export",
            stacklevel=3,
        )
    return nir.NIRGraph(nodes=w.nodes, edges=w.edges, metadata=metadata)


def write_nir(graph: Any, path: str | os.PathLike) -> str:
    """Write a ``nir.NIRGraph`` (from `to_nir`) to ``path``."""
    require_nir().write(str(path), graph)
    return str(path)


# -- import: convert2snn modules from a graph `to_nir` wrote ---------------------------------------------
class NIRNetwork(nn.Module):
    """A multi-step network ([T, B, ...] → [T, B, ...]) built from a NIR graph: its nodes run in
    topological order, the edges into a node summed."""

    def __init__(self, layers: dict[str, nn.Module], edges: list[tuple[str, str]], readout: bool):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.inputs = {key: [s for s, d in edges if d == key] for key in [*layers, "output"]}
        self.order = _topological(list(layers), edges)
        self.readout = MembraneReadout() if readout else None

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Run every node on the whole sequence; the output node's summed inputs (their running mean with
        a convert2snn readout)."""
        values = {"input": x_seq}
        for key in self.order:
            parts = [values[s] for s in self.inputs[key]]
            values[key] = self.layers[key](parts[0] if len(parts) == 1 else torch.stack(parts).sum(0))
        parts = [values[s] for s in self.inputs["output"]]
        out = parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)
        return self.readout(out) if self.readout is not None else out


def _topological(keys: list[str], edges: list[tuple[str, str]]) -> list[str]:
    pending = {k: {s for s, d in edges if d == k and s != "input"} for k in keys}
    order: list[str] = []
    while pending:
        ready = [k for k, deps in pending.items() if not deps]
        if not ready:
            raise UnsupportedLayerError("the NIR graph has a cycle (recurrence is not supported)")
        for k in ready:
            order.append(k)
            del pending[k]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def _tensor(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _uniform(values: Any, key: str, what: str) -> float:
    unique = np.unique(np.asarray(values))
    if unique.size != 1:
        raise UnsupportedLayerError(f"NIR node '{key}': per-neuron {what} is not supported", layer=key)
    return float(unique[0])


def _import_neuron(nir: Any, key: str, node: Any) -> nn.Module:
    meta = node.metadata or {}
    thresholds = np.asarray(node.v_threshold, np.float32)
    per_neuron = np.unique(thresholds).size != 1
    reset = meta.get("convert2snn.reset", "zero")  # NIR's IF (since nir 1.0.5) resets to v_reset
    if "convert2snn.reset" not in meta and getattr(node, "v_reset", None) is not None:
        if np.any(np.asarray(node.v_reset) != 0):
            raise UnsupportedLayerError(f"NIR node '{key}': a reset to v_reset ≠ 0 is not supported", layer=key)
    burst = float(meta.get("convert2snn.max_spikes", 1.0))
    floor = float(meta.get("convert2snn.v_min", float("nan")))
    tau = None
    if isinstance(node, nir.LIF):
        tau_s = _uniform(node.tau, key, "time constants")
        tau = None if tau_s >= float(np.float32(NO_LEAK_TAU)) else tau_s / DT  # written as float32
    neuron = IFNeuron(
        v_threshold=1.0 if per_neuron else float(thresholds.flat[0]),
        v_init=float(meta.get("convert2snn.v_init", 0.0)),
        tau=tau,
        max_spikes=None if burst == 0 else int(burst),
        reset=str(reset),
        v_min=None if np.isnan(floor) else floor,
    )
    if not per_neuron:
        return neuron
    # per-neuron thresholds (a residual block written for a depth-first importer): currents in units of θ
    return nn.Sequential(SeqModule(Affine(torch.from_numpy(1.0 / thresholds), None)), neuron)


def from_nir(graph_or_path: Any) -> NIRNetwork:
    """A multi-step network of convert2snn modules from a NIR graph written by `to_nir` (any consumer)."""
    nir = require_nir()
    graph = nir.read(str(graph_or_path)) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    layers: dict[str, nn.Module] = {}
    readout = False
    for key, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            continue
        if isinstance(node, nir.Output):
            readout = "convert2snn.readout" in (graph.metadata or {}) or "convert2snn.readout" in (node.metadata or {})
            continue
        if isinstance(node, nir.Conv2d):
            weight = _tensor(node.weight)
            conv = nn.Conv2d(
                weight.shape[1] * int(node.groups),
                weight.shape[0],
                tuple(weight.shape[2:]),
                stride=tuple(int(s) for s in node.stride),
                padding=tuple(int(p) for p in node.padding),
                dilation=tuple(int(d) for d in node.dilation),
                groups=int(node.groups),
            )
            conv.weight.data, conv.bias.data = weight, _tensor(node.bias)
            layers[key] = SeqModule(conv)
        elif isinstance(node, nir.Affine):
            weight = _tensor(node.weight)
            lin = nn.Linear(weight.shape[1], weight.shape[0])
            lin.weight.data, lin.bias.data = weight, _tensor(node.bias)
            layers[key] = SeqModule(lin)
        elif isinstance(node, nir.AvgPool2d):
            layers[key] = SeqModule(nn.AvgPool2d(tuple(node.kernel_size), tuple(node.stride), tuple(node.padding)))
        elif isinstance(node, nir.SumPool2d):
            layers[key] = SeqModule(nn.LPPool2d(1, tuple(int(k) for k in node.kernel_size), tuple(node.stride)))
        elif isinstance(node, nir.Flatten):
            layers[key] = SeqModule(
                nn.Flatten(
                    node.start_dim + 1 if node.start_dim >= 0 else node.start_dim,
                    node.end_dim + 1 if node.end_dim >= 0 else node.end_dim,
                )
            )
        elif isinstance(node, nir.Scale):
            layers[key] = SeqModule(Affine(_tensor(node.scale), None))
        elif isinstance(node, (nir.IF, nir.LIF)):
            layers[key] = _import_neuron(nir, key, node)
        else:
            raise UnsupportedLayerError(f"NIR node '{key}' ({type(node).__name__}) is not supported", layer=key)
    return NIRNetwork(layers, [tuple(e) for e in graph.edges], readout)


__all__ = [
    "CONSUMERS",
    "Consumer",
    "DT",
    "EXPORTERS",
    "NIRNetwork",
    "exports",
    "from_nir",
    "require_nir",
    "to_nir",
    "write_nir",
]
