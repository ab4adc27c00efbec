"""Stateful nodes every coding scheme uses: the spiking max-pool and the membrane readout."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base
from torch import nn

from .protocol import Readout, SpikeRouter


class SpikingMaxPool(SpikeRouter, base.MemoryModule):
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

    def routing_module(self) -> nn.Module:
        """The wrapped pooling module (where each input element's spikes go)."""
        return self.pool

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: input [B, ...] → pooled spikes [B, ...] (a one-step `multi_step_forward`)."""
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input [T, B, ...] → output [T, B, ...]: the step-to-step increase of the pooled running input sum
        (state carries over between calls)."""
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


class MembraneReadout(Readout, base.MemoryModule):
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
        """One step: input current [B, ...] → running mean [B, ...] (a one-step `multi_step_forward`)."""
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input currents [T, B, ...] → [T, B, ...]: at each step the mean of every input since the last reset."""
        steps = x_seq.shape[0]
        running = torch.cumsum(x_seq, dim=0) + self.v
        counts = torch.arange(self.t + 1, self.t + steps + 1, device=x_seq.device, dtype=x_seq.dtype)
        self.v = running[-1]
        self.t = self.t + steps
        return running / counts.reshape((steps,) + (1,) * (x_seq.dim() - 1))
