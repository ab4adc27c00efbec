"""The declared interfaces of the stateful modules an SNN is built from.

Every module of a converted network that keeps state over time is a `StatefulNode`: it declares
the function it computes as T → ∞ (`StatefulNode.limit_module`), against which every conversion
is checked for exactness. Most are one of three kinds, and say so by their base class (nothing is
recognised by attributes it happens to have):

- `SpikingNode`: emits spikes; the spike counters, neuron counts and synaptic-operation counts
  count it. It declares how many neurons stand behind each output element
  (``neurons_per_unit``) and how many spikes an output value is (`spike_count`).
- `SpikeRouter`: moves spikes or values without weights (a spiking max-pool, a synapse, a delay);
  `routing_module` is the stateless map that says where each input element goes (fan-out
  counting follows it) and, by default, also its T → ∞ function.
- `Readout`: the non-spiking output layer; `latency` is the step count after which its output is
  complete, for codes that have such a point.

A new neuron model is one class that subclasses SpikingJelly's `BaseNode` (charge → fire →
reset) and `SpikingNode` and implements `limit_module` (the exactness check of every conversion
needs it), plus the conversion rule that places it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..sequence import SeqModule
from .kernels import check_backend


class StatefulNode:
    """Mixin for every stateful module of a converted network."""

    differentiable: bool = True
    """Whether backpropagation through time can train through the node (a surrogate-gradient path, or plain
    differentiable arithmetic); `convert2snn.finetune` refuses networks with a node that declares False."""

    def limit_module(self) -> nn.Module:
        """The module's T → ∞ function on multi-step input [T, B, ...] (the exactness reference)."""
        raise NotImplementedError(f"{type(self).__name__} declares no T → ∞ limit")


class SpikingNode(StatefulNode):
    """Mixin for spike-emitting nodes (used with SpikingJelly's `BaseNode`)."""

    neurons_per_unit: int = 1
    """Neurons behind each output element (n for a population)."""
    backend: str = "auto"
    """Where the node's no-grad scan runs: "auto", "triton", "numba" or "torch" (see
    `convert2snn.neurons.kernels`; nodes without a kernel always run their torch code)."""

    def spike_count(self, output: torch.Tensor) -> torch.Tensor:
        """Spikes per output element of one step: the output itself for 0/1 spikes."""
        return output


class SpikeRouter(StatefulNode):
    """Mixin for stateful modules that only route values (no weights): pools, synapses, delays."""

    def routing_module(self) -> nn.Module:
        """The stateless map (one sample or batch, no time axis) from input elements to output elements."""
        raise NotImplementedError

    def limit_module(self) -> nn.Module:
        """The routing map applied at every step (`SeqModule` of `routing_module`)."""
        return SeqModule(self.routing_module())


class Readout(StatefulNode):
    """Mixin for the output layer: integrates its input current, emits no spikes."""

    @property
    def latency(self) -> int | None:
        """Steps until the output is complete; None for codes that refine it with every step."""
        return None

    def limit_module(self) -> nn.Module:
        """The identity: as T → ∞ the readout's running mean is its (constant) input current."""
        return nn.Identity()


def is_neuron(module: nn.Module) -> bool:
    """True for modules that emit spikes (what spike counters count)."""
    return isinstance(module, SpikingNode)


def neurons_per_unit(module: nn.Module) -> int:
    """Neurons behind each output element of a neuron module (1 for any other module)."""
    return module.neurons_per_unit if isinstance(module, SpikingNode) else 1


def unit_spikes(module: SpikingNode, output: torch.Tensor) -> torch.Tensor:
    """Spikes per output element of a neuron module's output (see `SpikingNode.spike_count`)."""
    return module.spike_count(output)


def has_limit(module: nn.Module) -> bool:
    """True for the stateful modules whose T → ∞ function replaces them in a limit network."""
    return isinstance(module, StatefulNode)


def set_backend(network: nn.Module, backend: str) -> None:
    """Run every neuron scan of ``network`` on ``backend`` ("auto", "triton", "numba" or "torch";
    see `convert2snn.neurons.kernels`)."""
    check_backend(backend)
    for module in network.modules():
        if isinstance(module, SpikingNode):
            module.backend = backend


def latency(network: nn.Module) -> int | None:
    """Steps until ``network``'s output is complete (its `Readout`'s latency; None when it refines with every step)."""
    for module in network.modules():
        if isinstance(module, Readout):
            return module.latency
    return None
