"""The layer-by-layer pass that runs the recipes: one simulation of the network, tuned as it goes.

The SNN runs node by node on the calibration samples for T steps (all T at once). At each neuron
layer, in the network's order, the recipes tune that layer on its actual input current (so every
upstream layer is already tuned and its remaining error is part of what this layer sees); then
the tuned layer's output feeds the rest. The ANN runs beside it, node by node, for the targets.
Each layer is simulated a fixed number of times (once per threshold candidate and correction
round), so the cost is linear in the network; the samples are capped so that the largest
[T, N, ...] tensor fits in ``MEMORY_BYTES``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional
from torch import fx, nn
from tqdm.auto import tqdm

from ..errors import ConversionError
from ..neurons import IFNeuron
from ..progress import shown
from ..sequence import constant_sequence
from ..statistics import measured_key, offset_key, potential_key
from .base import RECIPES, LayerProblem, LayerTuning

# The largest [T, N, ...] activation the pass may hold (a few such tensors are alive at once).
MEMORY_BYTES = 1 << 29


@dataclass
class TuningResult:
    """What the pass tuned: the new per-node tensors (λ' and the corrections), and its cost and effect."""

    scales: dict[str, torch.Tensor]
    samples: int
    seconds: dict[str, float]  # recipe → seconds spent in it (the shared simulation under "simulation")
    # layer → (error before, error after): the mean squared difference between the layer's T-step
    # output and the ANN's activation, relative to the activation's mean square
    errors: dict[str, tuple[float, float]] = field(default_factory=dict)
    # [N, ...] the tuned network's readout after T steps on the samples (what a simulation of the rebuilt
    # network gives, up to float rounding at exact threshold crossings)
    outputs: torch.Tensor | None = None


def sample_budget(timesteps: int, largest_activation: int, wanted: int) -> int:
    """How many calibration samples the pass uses: ``wanted``, capped by ``MEMORY_BYTES``."""
    per_sample = max(1, timesteps * largest_activation * 4)
    return max(1, min(wanted, MEMORY_BYTES // per_sample))


def _ann_values(ann: fx.GraphModule, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """(node name, value) of ``ann`` on ``x``, node by node, each value freed after its last use."""
    interpreter = fx.Interpreter(ann)
    interpreter.args_iter = iter([x])
    env = interpreter.env = {}
    for node in ann.graph.nodes:
        if node.op == "output":
            return
        env[node] = interpreter.run_node(node)
        yield node.name, env[node]
        for dead in interpreter.user_to_last_uses.get(node, []):
            del env[dead]


@torch.no_grad()
def tune_layers(
    model,
    x: torch.Tensor,
    timesteps: int,
    recipes: tuple[str, ...],
    *,
    samples: int,
    progress: bool = True,
) -> TuningResult:
    """Tune every rate neuron layer of ``model`` (a `SpikingModel`) for ``timesteps`` on ``x`` (the
    ANN's layout) with ``recipes`` (registered names, run per layer in registration order)."""
    opts = model.options
    largest = max(
        (
            int(torch.Size(meta.shape[2:]).numel())
            for n in model.network.graph.nodes
            if (meta := n.meta.get("tensor_meta"))
        ),
        default=1,
    )
    n = sample_budget(timesteps, largest, min(samples, x.shape[0]))
    x = x[:n].float()
    if opts.encoding == "poisson":
        gen = torch.Generator().manual_seed(opts.seed)
        x_seq = (torch.rand((timesteps,) + tuple(x.shape), generator=gen) < x.unsqueeze(0)).float()
    else:
        x_seq = constant_sequence(x, timesteps)
    network = copy.deepcopy(model.network)  # the model's own modules keep their state
    functional.reset_net(network)
    order = [name for name in RECIPES if name in recipes]
    runners = [RECIPES[name]() for name in order]
    seconds = dict.fromkeys(["simulation", *order], 0.0)
    tuned = dict(model.scales)
    errors: dict[str, tuple[float, float]] = {}
    neurons = [n for n in network.graph.nodes if n.op == "call_module" and _is_tunable(network, n)]
    ann_nodes = {n.name: n for n in model.ann.graph.nodes}
    ann_values = _ann_values(model.ann, x)
    interpreter = fx.Interpreter(network)
    interpreter.args_iter = iter([x_seq])
    env = interpreter.env = {}
    outputs = None
    bar = tqdm(total=len(neurons), desc=f"tuning for T={timesteps}", disable=not shown(progress), leave=False)
    clock = time.perf_counter()
    try:
        for node in network.graph.nodes:
            if node.op == "output":
                outputs = env[node.args[0]][-1]
                break
            if node in neurons:
                source = model.sources[node.target]
                target = _advance(ann_values, source)
                seconds["simulation"] += time.perf_counter() - clock
                current = env[node.args[0]]
                neuron: IFNeuron = network.get_submodule(node.target)
                lam = tuned[source]
                problem = LayerProblem(
                    model.bridge_info.layers.get(source, source),
                    current / neuron.v_threshold,
                    target / (lam / neuron.burst_scale),  # in spikes (of λ/Γ each) per step
                    _cap(model.ann.get_submodule(ann_nodes[source].target), lam),
                    lambda v_init, tau=neuron.tau, burst=neuron.max_spikes, n=neuron: IFNeuron(
                        1.0, v_init=v_init, tau=tau, max_spikes=burst, reset=n.reset_mode, v_min=n.v_min
                    ),
                )
                tuning = LayerTuning(
                    multiplier=torch.ones_like(lam),
                    offset=torch.zeros_like(lam),
                    v_init=torch.full_like(lam, neuron.v_init) if neuron.uniform_start else neuron.v_init,
                )
                before = problem.error(tuning)
                for name, runner in zip(order, runners, strict=True):
                    start = time.perf_counter()
                    tuning = runner.tune(problem, tuning)
                    seconds[name] += time.perf_counter() - start
                clock = time.perf_counter()
                spikes = problem.spikes(tuning)
                after = problem.error(tuning, spikes)
                env[node] = spikes * tuning.multiplier
                scale = max(float(problem.channel_mean(problem.target**2).mean()), 1e-12)
                errors[problem.layer] = (float(before.mean()) / scale, float(after.mean()) / scale)
                _store(tuned, source, lam, tuning, neuron)
                bar.update(1)
            else:
                env[node] = interpreter.run_node(node)
            for dead in interpreter.user_to_last_uses.get(node, []):
                del env[dead]
    finally:
        bar.close()
        functional.reset_net(network)
    seconds["simulation"] += time.perf_counter() - clock
    return TuningResult(tuned, n, seconds, errors, outputs)


def _is_tunable(network: fx.GraphModule, node: fx.Node) -> bool:
    return type(network.get_submodule(node.target)) is IFNeuron


def _advance(values: Iterator[tuple[str, torch.Tensor]], wanted: str) -> torch.Tensor:
    """Run the ANN up to node ``wanted`` and return its value (the SNN meets its neurons in ANN order)."""
    for name, value in values:
        if name == wanted:
            return value
    raise ConversionError(
        f"internal error: the ANN has no node {wanted!r} after the previous neuron layer; please report this model"
    )


def _cap(module: nn.Module, lam: torch.Tensor) -> torch.Tensor:
    """The largest multiplier of λ: a ReLU6 / clipped ReLU's λ' may not pass its clip value."""
    if isinstance(module, nn.Hardtanh):
        return (float(module.max_val) / lam).clamp(min=1.0)
    return torch.full_like(lam, float("inf"))


def _store(tuned: dict[str, torch.Tensor], source: str, lam: torch.Tensor, tuning: LayerTuning, neuron: IFNeuron):
    """λ' and the corrections of one layer, in the calibration's keys (offset in the ANN's units), and the
    measured λ where it changed."""
    new_lam = lam * tuning.multiplier
    tuned[source] = new_lam
    if not torch.equal(new_lam, lam):
        tuned[measured_key(source)] = lam
    if bool((tuning.offset != 0).any()):  # thresholds of the tuned neuron → the ANN's units (θ stands for λ'/Γ)
        tuned[offset_key(source)] = tuning.offset * new_lam / neuron.burst_scale
    start = neuron.v_init if neuron.uniform_start else None
    if start is None or bool((tuning.v_init != start).any()):
        tuned[potential_key(source)] = tuning.v_init
