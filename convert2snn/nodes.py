"""Stateful SNN nodes, SpikingJelly-compatible (`BaseNode`/`MemoryModule` subclasses).

`functional.reset_net`, step modes and SpikingJelly monitors work on all of them. Each
neuron is charge → fire → reset; subclasses override only what differs.
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import base, surrogate
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from . import kernels
from .sequence import sequence_buffer


class IFNeuron(BaseNode):
    """Integrate-and-fire neuron with reset by subtraction and a configurable initial potential.

    The membrane starts at ``v_init * v_threshold`` (0.5: "error centering", the spike-count
    error becomes zero-mean instead of always negative). With ``tau`` set, the membrane
    leaks: ``v ← v·(1 − 1/tau) + x`` (a LIF neuron with the same reset).
    In eval / no-grad mode a tight tensor loop runs; in training the surrogate-gradient path.
    """

    def __init__(self, v_threshold: float = 1.0, v_init: float = 0.5, tau: float | None = None,
                 surrogate_function: surrogate.SurrogateFunctionBase | None = None, detach_reset: bool = True,
                 step_mode: str = "m"):
        super().__init__(v_threshold=float(v_threshold), v_reset=None,
                         surrogate_function=surrogate_function or surrogate.ATan(), detach_reset=detach_reset,
                         step_mode=step_mode)
        self.v_init = float(v_init)
        self.tau = None if tau is None else float(tau)
        start = self.v_init * self.v_threshold
        self.set_reset_value("v", start)
        self.v = start

    def extra_repr(self) -> str:
        leak = f", tau={self.tau}" if self.tau else ""
        return f"v_threshold={self.v_threshold}, v_init={self.v_init}{leak}, step_mode={self.step_mode}"

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        v = states[0]
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:
            start = v if isinstance(v, float) else self.v_init * self.v_threshold
            v = torch.full_like(x, start)
        elif v.dtype != x.dtype or v.device != x.device:
            v = v.to(dtype=x.dtype, device=x.device)
        return (v, *states[1:])

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.tau is not None:
            v = v * (1.0 - 1.0 / self.tau)
        return v + x

    def single_step_functional_forward(self, inputs, states, **kwargs):
        v = self._charge(states[0], inputs[0])
        spike = self.surrogate_function(v - self.v_threshold)
        reset = spike.detach() if self.detach_reset else spike
        return (spike,), (v - reset * self.v_threshold, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        x_seq = inputs[0]
        if torch.is_grad_enabled() and (x_seq.requires_grad or self.training):
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        v = states[0]
        decay = None if self.tau is None else 1.0 - 1.0 / self.tau
        if kernels.use_kernel(x_seq):
            v = v.contiguous()
            spikes = kernels.scan(x_seq, v.unsqueeze(-1), torch.tensor([self.v_threshold]), decay=decay)
            return (spikes,), (v, *states[1:])
        spikes = sequence_buffer(x_seq)
        thr = self.v_threshold
        if kernels.cpu_if_scan(x_seq, v, thr, spikes, decay=decay):
            return (spikes,), (v, *states[1:])
        for t in range(x_seq.shape[0]):
            if decay is not None:
                v.mul_(decay)
            v.add_(x_seq[t])
            torch.ge(v, thr, out=spikes[t])  # straight into the float buffer: no bool tensor and copy
            v.sub_(spikes[t], alpha=thr)
        return (spikes,), (v, *states[1:])


class SpikingMaxPool(base.MemoryModule):
    """Max pooling of spike trains that is exact for time averages.

    It emits ``pool(S_t) − pool(S_{t−1})`` where ``S_t`` is the running sum of the input: the
    cumulative output therefore equals the maximum of the cumulative inputs at every step
    (for binary spikes the output is binary too). The input with the highest count so far
    gates the output; no averaging approximation is involved.
    """

    def __init__(self, pool: nn.Module, step_mode: str = "m"):
        super().__init__()
        self.pool = pool
        self.step_mode = step_mode
        self.register_memory("input_sum", 0.0)
        self.register_memory("pooled_sum", 0.0)

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        steps, batch = x_seq.shape[:2]
        if isinstance(self.input_sum, float):
            self.input_sum = torch.zeros_like(x_seq[0])
            self.pooled_sum = torch.zeros_like(self.pool(x_seq[0]))
        if x_seq.is_cuda:  # one kernel
            running = torch.cumsum(x_seq, dim=0) + self.input_sum.unsqueeze(0)
        else:  # T contiguous adds: torch.cumsum along the outer axis is ~4x slower on CPU
            running = x_seq.clone()
            running[0] += self.input_sum
            for t in range(1, steps):
                running[t] += running[t - 1]
        pooled = self.pool(running.flatten(0, 1))
        pooled = pooled.reshape((steps, batch) + pooled.shape[1:])
        previous = torch.cat([self.pooled_sum.unsqueeze(0), pooled[:-1]], dim=0)
        self.input_sum = running[-1]
        self.pooled_sum = pooled[-1]
        return pooled - previous


class MembraneReadout(base.MemoryModule):
    """Non-spiking output layer: integrates its input current and reports the running mean.

    Its output at step t is (1/t)·Σ_{τ≤t} I_τ, the SNN's estimate of the ANN's output
    (the pre-softmax logits) after t steps; argmax of it is the prediction at T = t.
    """

    def __init__(self, step_mode: str = "m"):
        super().__init__()
        self.step_mode = step_mode
        self.register_memory("v", 0.0)
        self.register_memory("t", 0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        steps = x_seq.shape[0]
        running = torch.cumsum(x_seq, dim=0) + self.v
        counts = torch.arange(self.t + 1, self.t + steps + 1, device=x_seq.device, dtype=x_seq.dtype)
        self.v = running[-1]
        self.t = self.t + steps
        return running / counts.reshape((steps,) + (1,) * (x_seq.dim() - 1))


def is_neuron(module: nn.Module) -> bool:
    """True for modules that emit spikes (what spike counters count)."""
    return isinstance(module, BaseNode)


def neurons_per_unit(module: nn.Module) -> int:
    """Neurons behind each output element: 1, or n for a population node (see `convert2snn.population_nodes`)."""
    return int(getattr(module, "neurons_per_unit", 1))


def unit_spikes(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """Spikes per output element of a neuron module: the output itself (0/1), or, for a population
    whose output is its mean spike train ±k/n, the count k = |output|·n."""
    count = getattr(module, "spike_count", None)
    if count is not None:  # nodes whose output is not the spike itself (e.g. weighted spikes)
        return count(output)
    n = neurons_per_unit(module)
    return output if n == 1 else torch.round(output.abs() * n)
