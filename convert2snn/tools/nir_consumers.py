"""Run a NIR graph (from `convert2snn.tools.nir.to_nir`) in snnTorch, Norse or Sinabs, as their users do.

`simulate` imports the graph with the consumer's own NIR importer (no patches), runs it for the T
steps of an input sequence and returns the output current at each step and each spiking layer's
spikes, keyed by the convert2snn layer the node was written from (its ``convert2snn.layer``
metadata), so they can be compared with convert2snn's own simulation (`compare`). Each consumer is an
optional install (``pip install 'convert2snn[interop]'``); a missing one raises `InvalidInputError`
naming the package.

How each is driven (their documented use of an imported graph):

- snnTorch 1.0: ``snntorch.import_nir.import_from_nir(graph)`` (a ``nirtorch.nir_to_torch`` module),
  one call per step, hidden states in the neurons (``init_hidden``), reset by ``snntorch.utils.reset``;
- Norse 1.1: ``norse.torch.from_nir(graph)`` (a ``nirtorch`` ``GraphExecutor``), one call per step
  passing the returned state back;
- Sinabs 3.1: ``sinabs.from_nir(graph, batch_size=B)`` (``GraphExecutor`` of ``*Squeeze`` layers), one call
  on the whole sequence flattened to [B·T, ...] (batch-major), states reset with ``reset_states``.

``own_neurons=True`` then sets the consumer's own public neuron options so that it runs the neurons
written in each node's ``convert2snn.*`` metadata, where it has such options: snnTorch (``Leaky``'s
``reset_mechanism="subtract"`` and its membrane ``mem`` started at v₀) and Sinabs (``spike_fn=SingleSpike``,
``min_v_mem=None``, ``v_mem`` started at v₀) then run convert2snn's default neurons (reset by subtraction
from θ/2): Sinabs exactly, snnTorch up to float rounding (its ``Leaky`` adds the input to the membrane before
it subtracts the last step's reset, convert2snn after, so a membrane within rounding of θ can fire a step
apart; `compare` counts the spikes that differ); Norse's ``IAFCell`` resets to a value and starts at 0, with
no such option.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from packaging.version import Version
from torch import nn

from ..errors import InvalidInputError
from ..neurons import IFNeuron
from .nir import require_nir

PACKAGES = {"snntorch": "snntorch", "norse": "norse", "sinabs": "sinabs"}
# Norse 1.1 and Sinabs 3.1 load graphs through nirtorch's GraphExecutor, which rebuilds a nir.NIRGraph of torch
# modules: nir from 1.0.5 on type-checks those nodes and fails (Sinabs pins nir<=1.0.4; Norse does not).
NEWEST_NIR = {"norse": "1.0.4", "sinabs": "1.0.4"}


@dataclasses.dataclass
class ConsumerRun:
    """What a consumer computed: ``outputs`` [T, B, ...] (the graph's output at each step) and ``spikes``
    {layer: [T, B, ...]} for every spiking layer (convert2snn's layer name, from the node's metadata)."""

    consumer: str
    outputs: torch.Tensor
    spikes: dict[str, torch.Tensor]


@contextlib.contextmanager
def _without_tensorflow():
    """Import with TensorFlow hidden: Norse imports ``torch.utils.tensorboard``, which imports TensorFlow when it is
    installed, and TensorFlow must not share a process with torch's compiler (it crashes it; convert2snn runs
    TensorFlow only in child processes). TensorBoard then uses its own stub, all Norse needs."""
    hidden = "tensorflow" not in sys.modules
    if hidden:
        sys.modules["tensorflow"] = None  # an import of it raises ImportError
    try:
        yield
    finally:
        if hidden and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


def _import(module: str) -> Any:
    with _without_tensorflow(), _quiet():
        return importlib.import_module(module)


def available(consumer: str) -> bool:
    """True when the consumer's package imports."""
    try:
        _import(PACKAGES[consumer])
    except ImportError:
        return False
    return True


def unusable(consumer: str) -> str | None:
    """Why ``consumer`` cannot run NIR graphs here (not installed, or a nir version its importer fails with), or
    None when it can."""
    if consumer not in PACKAGES:
        return f"unknown NIR consumer {consumer!r}; known: {', '.join(PACKAGES)}"
    if not available(consumer):
        package = PACKAGES[consumer]
        return f"running NIR graphs in {consumer} needs the '{package}' package: pip install 'convert2snn[interop]'"
    try:
        nir = require_nir()
    except InvalidInputError as missing:
        return str(missing)
    newest = NEWEST_NIR.get(consumer)
    # by release numbers: a pre-release of 1.0.5 already breaks the importers, a post-release of 1.0.4 does not
    if newest is not None and Version(nir.__version__).release > Version(newest).release:
        return (
            f"{consumer}'s NIR importer fails with nir {nir.__version__} (it works with nir ≤ {newest}): "
            "pip install 'convert2snn[interop]' (it pins nir)"
        )
    return None


def _require(consumer: str) -> None:
    reason = unusable(consumer)
    if reason is not None:
        raise InvalidInputError(reason)


def _record(graph: Any, module: nn.Module, spiking: tuple[type, ...], pick: Callable[[Any], torch.Tensor]):
    """Forward hooks that append each spiking module's output (``pick`` takes the spikes out of it), keyed by the
    layer the NIR node was written from."""
    trains: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, sub in module.named_modules():
        if isinstance(sub, spiking):
            node = name.rsplit(".", 1)[-1]
            key = (graph.nodes[node].metadata or {}).get("convert2snn.layer", node)
            trains[key] = []
            hooks.append(sub.register_forward_hook(lambda m, i, out, key=key: trains[key].append(pick(out).detach())))
    return trains, hooks


def _quiet():
    """The importers print, log and warn as they go (snnTorch prints, nirtorch deprecates its own loader, Norse
    re-registers pytrees): kept off the user's console."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    previous = logging.root.manager.disable  # the user's own logging.disable level, restored after
    logging.disable(max(previous, logging.WARNING))
    stack.callback(logging.disable, previous)
    return stack


def _ours(graph: Any, key: str) -> tuple[str, torch.Tensor, float, torch.Tensor | None]:
    """The neuron node ``key`` as convert2snn wrote it: reset, v₀ and the floor per neuron (absolute; None: no
    floor), spikes per step (0: unbounded)."""
    node = graph.nodes[key]
    meta = node.metadata or {}
    theta = torch.as_tensor(node.v_threshold, dtype=torch.float32)
    floor = float(meta.get("convert2snn.v_min", float("nan")))
    return (
        str(meta.get("convert2snn.reset", "zero")),
        float(meta.get("convert2snn.v_init", 0.0)) * theta,
        float(meta.get("convert2snn.max_spikes", 1.0)),
        None if floor != floor else floor * theta,
    )


def _snntorch(graph: Any, x_seq: torch.Tensor, own_neurons: bool) -> ConsumerRun:
    snntorch = _import("snntorch")  # optional: the interop extra
    import_from_nir = _import("snntorch.import_nir").import_from_nir

    with _quiet():
        net = import_from_nir(graph)
    leaky = {name: m for name, m in net.named_modules() if isinstance(m, snntorch.Leaky)}
    for name, m in leaky.items():
        m.reset_mem()
        if own_neurons:
            reset, v0, spikes, floor = _ours(graph, name)
            if spikes != 1 or floor is not None:
                raise InvalidInputError(
                    f"snnTorch's Leaky fires one spike a step and has no membrane floor: node '{name}' was written "
                    "with bursts or a floor (convert without max_spikes_per_step / v_min to run it in snnTorch)"
                )
            if reset == "subtract":
                m.reset_mechanism = reset  # snnTorch's own option (its setter keeps reset_mechanism_val in step)
                m.state_function = m._base_sub  # noqa: SLF001  (what Leaky.__init__ picks for "subtract")
                m.reset_delay = True  # the reset decided by the previous step's membrane, as convert2snn's
            m.mem = v0.expand(x_seq.shape[1], *v0.shape).clone()  # Leaky keeps a membrane of the input's shape
    trains, hooks = _record(graph, net, (snntorch.Leaky,), lambda out: out)
    outputs = []
    try:
        with torch.no_grad():
            for t in range(x_seq.shape[0]):
                result = net(x_seq[t])
                outputs.append(result[0])
    finally:
        for h in hooks:
            h.remove()
        for m in leaky.values():
            m.reset_mem()
    return ConsumerRun("snntorch", torch.stack(outputs), {k: torch.stack(v) for k, v in trains.items()})


def _norse(graph: Any, x_seq: torch.Tensor, own_neurons: bool) -> ConsumerRun:
    norse_torch = _import("norse.torch")  # optional: the interop extra
    iaf_cell = _import("norse.torch.module.iaf").IAFCell

    with _quiet():
        net = norse_torch.from_nir(graph)
    trains, hooks = _record(graph, net, (iaf_cell,), lambda out: out[0])
    outputs, state = [], None
    try:
        with torch.no_grad():
            for t in range(x_seq.shape[0]):
                out, state = net(x_seq[t], state)
                outputs.append(out)
    finally:
        for h in hooks:
            h.remove()
    return ConsumerRun("norse", torch.stack(outputs), {k: torch.stack(v) for k, v in trains.items()})


def _sinabs(graph: Any, x_seq: torch.Tensor, own_neurons: bool) -> ConsumerRun:
    sinabs = _import("sinabs")  # optional: the interop extra
    sa, sl = _import("sinabs.activation"), _import("sinabs.layers")

    steps, batch = x_seq.shape[:2]
    with _quiet():
        net = sinabs.from_nir(graph, batch_size=batch)
    layers = {name.rsplit(".", 1)[-1]: m for name, m in net.named_modules() if isinstance(m, sl.StatefulLayer)}
    for name, m in layers.items():
        m.reset_states()
        if own_neurons:
            reset, v0, spikes, floor = _ours(graph, name)
            if reset != "subtract":
                raise InvalidInputError(f"Sinabs has no reset to zero: node '{name}' was written with reset {reset!r}")
            m.spike_fn = sa.MultiSpike if spikes == 0 else sa.SingleSpike
            if floor is None:
                m.min_v_mem = None
            else:
                m.min_v_mem.data = floor.clone()
            m.init_state_with_shape((batch, *v0.shape))
            m.v_mem.copy_(v0.expand_as(m.v_mem))

    def unflatten(t: torch.Tensor) -> torch.Tensor:  # [B·T, ...] batch-major → [T, B, ...]
        return t.reshape(batch, steps, *t.shape[1:]).transpose(0, 1)

    trains, hooks = _record(graph, net, (sl.StatefulLayer,), lambda out: out)
    try:
        with torch.no_grad():
            out = net(x_seq.transpose(0, 1).reshape(batch * steps, *x_seq.shape[2:]))
    finally:
        for h in hooks:
            h.remove()
        for m in layers.values():
            m.reset_states()
    out = out[0] if isinstance(out, tuple) else out
    return ConsumerRun("sinabs", unflatten(out), {k: unflatten(v[0]) for k, v in trains.items()})


RUNNERS: dict[str, Callable[[Any, torch.Tensor, bool], ConsumerRun]] = {
    "snntorch": _snntorch,
    "norse": _norse,
    "sinabs": _sinabs,
}


def simulate(consumer: str, graph: Any, x_seq: torch.Tensor, own_neurons: bool = False) -> ConsumerRun:
    """Import ``graph`` (a ``nir.NIRGraph`` or a path) in ``consumer`` and run it on ``x_seq`` [T, B, ...]
    (NCHW, the input current at each step). ``own_neurons``: set the consumer's neuron options to convert2snn's
    neurons written in the graph (see the module doc; Norse has none and refuses)."""
    _require(consumer)
    if own_neurons and consumer == "norse":
        raise InvalidInputError(
            "Norse's IAFCell has no option for reset by subtraction or an initial potential: run the graph as "
            "written (own_neurons=False), or convert with nir_target='norse' for an exact export"
        )
    if isinstance(graph, (str, os.PathLike)):
        graph = require_nir().read(str(graph))
    return RUNNERS[consumer](graph, x_seq.detach().float().cpu(), own_neurons)


OUTPUT_TOLERANCE = 1e-5  # relative error of the readout that float rounding of its last sum explains (seen: ≤ 7e-8)


@dataclasses.dataclass
class Agreement:
    """A consumer's run against convert2snn's on the same input: the readout's argmax agreement and relative
    error (‖mean output − ours‖ / ‖ours‖), and per spiking layer whether the spike trains are equal and the
    fraction of (step, neuron) entries that differ."""

    argmax_agreement: float
    relative_error: float
    spikes_equal: dict[str, bool]
    spike_mismatch: dict[str, float]

    @property
    def exact(self) -> bool:
        """Every spiking layer recorded on both sides with equal spikes at every step, and the readouts equal up to
        float rounding (relative error ≤ `OUTPUT_TOLERANCE`): equal spikes with another output would mean the
        graph's last layer or output edges differ."""
        return bool(self.spikes_equal) and all(self.spikes_equal.values()) and self.relative_error <= OUTPUT_TOLERANCE


def reference(network: nn.Module, x_seq: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """convert2snn's own run of ``network`` (``snn.network``) on ``x_seq`` [T, B, ...]: the readout after T
    steps [B, ...] and every IF layer's spikes {layer name: [T, B, ...]}, for `compare`."""
    from spikingjelly.activation_based import functional  # noqa: PLC0415  (only here)

    trains: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, out, key=name: trains.__setitem__(key, out.detach()))
        for name, m in network.named_modules()
        if isinstance(m, IFNeuron)
    ]
    try:
        with torch.no_grad():
            functional.reset_net(network)
            out = network(x_seq)
            functional.reset_net(network)
    finally:
        for h in hooks:
            h.remove()
    return out[-1], trains


def compare(run: ConsumerRun, readout: torch.Tensor, spikes: dict[str, torch.Tensor]) -> Agreement:
    """Compare a consumer's run with convert2snn's: ``readout`` [B, ...] (the mean output current after T steps,
    what ``predict`` returns before the ANN's scale) and ``spikes`` {layer: [T, B, ...]} (both from `reference`)."""
    mean = run.outputs.mean(0)
    ref = readout.reshape(mean.shape)
    agree = float((mean.argmax(-1) == ref.argmax(-1)).float().mean())
    error = float((mean - ref).norm() / ref.norm().clamp_min(1e-12))
    equal, mismatch = {}, {}
    for key in set(run.spikes) - set(spikes):  # a layer only the consumer has: not the network we ran
        equal[key], mismatch[key] = False, 1.0
    for key, ours in spikes.items():
        theirs = run.spikes.get(key)
        if theirs is None or theirs.shape != ours.shape:
            equal[key], mismatch[key] = False, 1.0
            continue
        differ = theirs != ours
        equal[key], mismatch[key] = not bool(differ.any()), float(differ.float().mean())
    return Agreement(agree, error, equal, mismatch)


__all__ = ["Agreement", "ConsumerRun", "PACKAGES", "available", "compare", "reference", "simulate", "unusable"]
