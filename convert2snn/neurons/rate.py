"""The rate code's neuron: integrate-and-fire (optionally leaky) with reset by subtraction.

A SpikingJelly `BaseNode` subclass (charge → fire → reset; `functional.reset_net`, step modes,
monitors and surrogate-gradient training work) that declares the `SpikingNode` interface.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from bridges.modules import Affine

from ..sequence import SeqModule, sequence_buffer
from . import kernels
from .protocol import SpikingNode


class IFNeuron(SpikingNode, BaseNode):
    """Integrate-and-fire neuron with reset by subtraction and a configurable initial potential.

    The membrane starts at ``v_init * v_threshold`` (0.5: "error centering", the spike-count
    error becomes zero-mean instead of always negative). With ``tau`` set, the membrane
    leaks: ``v ← v·(1 − 1/tau) + x`` (a LIF neuron with the same reset).
    In eval / no-grad mode a tight tensor loop runs; in training the surrogate-gradient path.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_init: float = 0.5,
        tau: float | None = None,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
    ):
        super().__init__(
            v_threshold=float(v_threshold),
            v_reset=None,
            surrogate_function=surrogate_function or surrogate.ATan(),
            detach_reset=detach_reset,
            step_mode=step_mode,
        )
        self.v_init = float(v_init)
        self.tau = None if tau is None else float(tau)
        start = self.v_init * self.v_threshold
        self.set_reset_value("v", start)
        self.v = start

    def extra_repr(self) -> str:
        """Threshold, initial potential (fraction of θ), ``tau`` when leaky, and step mode."""
        leak = f", tau={self.tau}" if self.tau else ""
        return f"v_threshold={self.v_threshold}, v_init={self.v_init}{leak}, step_mode={self.step_mode}"

    def materialize_states(self, inputs, states, step_mode):
        """The membrane for this input: filled with its scalar value (or ``v_init``·θ) when missing or of another
        shape, else ``v`` moved to the input's dtype and device."""
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
        """One step on input [B, ...]: (leak,) integrate, fire where v ≥ θ (surrogate spike), reset by subtraction;
        output 0/1 spikes [B, ...]."""
        v = self._charge(states[0], inputs[0])
        spike = self.surrogate_function(v - self.v_threshold)
        reset = spike.detach() if self.detach_reset else spike
        return (spike,), (v - reset * self.v_threshold, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        """Input currents [T, B, ...] → 0/1 spikes [T, B, ...], by a kernel or the torch loop (the membrane is
        updated in place); SpikingJelly's per-step autograd path when gradients are needed."""
        x_seq = inputs[0]
        if torch.is_grad_enabled() and (x_seq.requires_grad or self.training):
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        v = states[0]
        decay = None if self.tau is None else 1.0 - 1.0 / self.tau
        thr = self.v_threshold
        ran = kernels.if_scan(x_seq, v, thr, decay=decay, backend=self.backend)
        if ran is not None:
            spikes, v = ran
            return (spikes,), (v, *states[1:])
        spikes = sequence_buffer(x_seq)
        for t in range(x_seq.shape[0]):
            if decay is not None:
                v.mul_(decay)
            v.add_(x_seq[t])
            torch.ge(v, thr, out=spikes[t])  # straight into the float buffer: no bool tensor and copy
            v.sub_(spikes[t], alpha=thr)
        return (spikes,), (v, *states[1:])

    def limit_module(self) -> nn.Module:
        """The T → ∞ rate of an IF neuron: clamp(current / θ, 0, 1) (a leaky neuron has no such limit)."""
        if self.tau is not None:
            raise NotImplementedError("a leaky (LIF) neuron does not converge to a clipped ReLU")
        return SeqModule(nn.Sequential(Affine(torch.tensor(1.0 / self.v_threshold), None), nn.Hardtanh(0.0, 1.0)))
