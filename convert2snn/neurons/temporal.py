"""Oscillatory neurons: values coded in spike timing relative to a global oscillation of period K.

A global clock divides time into cycles of K steps; the step index within a cycle is the
phase k = t mod K. Every node keeps the global step count ``t`` as state (reset by
``functional.reset_net``), so time-chunked simulation sees the same oscillation as one long
run. All nodes are SpikingJelly ``BaseNode`` / ``MemoryModule`` subclasses; they are
inference nodes (no surrogate-gradient path: the codes are exact by construction, not trained).

**Phase code** — `PhaseNode` (Kim et al. 2018, "weighted spikes"): an integrate-and-fire neuron
with reset by subtraction whose threshold oscillates, θ(t) = θ0·2^−(1 + t mod K), with
θ0 = K/(1 − 2^−K) in units of the layer's scale λ, so that the K weights of a cycle add up to
K, the most charge one cycle can bring. A spike at phase k carries the weight θ(t)/λ, so the
spikes of one cycle are the binary expansion of the charge received (K bits, most significant
first) and the time average of the output equals that of the input, as for rate coding, with
fewer spikes for large values: 0.5 is one spike per cycle instead of K/2. Charge that arrives
after the large-threshold phases of a cycle have passed is carried over to the next cycle, so
a deep network settles within a few cycles.

**Single-spike code** — `TTFSNode` (time to first spike within a cycle): the node at depth d
integrates its input during cycle d (``integrate_cycle``) and fires during cycle d + 1 at the
first phase k where its potential reaches a falling threshold ramp,
θ_k = (K − k − ½)/K · θ. The spike time codes round(K·v)/K: k = K − round(K·v) (clipped to
[0, K − 1]; v ≤ ½/K never fires, so zero and negative values are silent). Each neuron fires
at most once per inference. The spike reaches the next layer through a `StepSynapse`: a
current that steps up at the spike and is cleared by the oscillation at the start of the
next cycle, so the next node, integrating (1/K)·(W·c(t) + b) over the cycle, receives
W·round(K·v)/K + b exactly. Max pooling of step currents is the OR of the inputs' codes —
the code of the maximum — so max pooling is exact (of a general current, a sum of such steps:
`CycleMaxPool`, one cycle later); residual Add/Concat of branches of
different depth go through `CycleDelay` (whole cycles of delay) so that both arrive in the
same cycle. `CycleReadout` integrates the output layer's current during its cycle.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from ..sequence import SeqModule, is_silent, is_time_constant, sequence_buffer, silent
from . import kernels
from .common import MembraneReadout
from .protocol import SpikeRouter, SpikingNode


def _times(t0: int, steps: int, device: torch.device) -> torch.Tensor:
    return torch.arange(t0, t0 + steps, device=device)


class OscillatoryNode(SpikingNode, BaseNode):
    """Common part of the oscillatory neurons: the period K and the global step count ``t``."""

    differentiable = False  # exact by construction: spike times and cycle counters have no surrogate path

    def __init__(self, period: int, v_threshold: float = 1.0, step_mode: str = "m"):
        super().__init__(v_threshold=float(v_threshold), v_reset=None, step_mode=step_mode)
        self.period = int(period)
        self.register_memory("t", 0)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: input [B, ...] → output [B, ...] (a one-step `multi_step_forward`)."""
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input currents [T, B, ...] → output [T, B, ...] of the node's `_run`, continuing the global step count
        (a zero membrane when it is missing or shaped unlike one step)."""
        if not isinstance(self.v, torch.Tensor) or self.v.shape != x_seq.shape[1:]:
            self.v = torch.zeros_like(x_seq[0])
        out = self._run(x_seq, int(self.t))
        self.t = int(self.t) + x_seq.shape[0]
        return out

    def _run(self, x_seq: torch.Tensor, t0: int) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        """Period K and threshold."""
        return f"period={self.period}, v_threshold={self.v_threshold}"

    def limit_module(self) -> nn.Module:
        """K → ∞, T → ∞: the value clipped to [0, 1] in units of the threshold."""
        return SeqModule(nn.Hardtanh(0.0, 1.0))


class PhaseNode(OscillatoryNode):
    """IF neuron with an oscillating threshold θ(t) = θ0·2^−(1 + t mod K), θ0 = K·v_threshold/(1 − 2^−K);
    emits weighted spikes θ(t)/v_threshold (see the module docstring)."""

    def threshold(self, t0: int, steps: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The oscillating threshold θ0·2^−(1 + t mod K) at the global steps t0 … t0 + steps − 1, shape [steps]."""
        phase = _times(t0, steps, device) % self.period
        return self.theta0 * torch.pow(2.0, -(1.0 + phase.to(dtype)))

    @property
    def theta0(self) -> float:
        """K·θ/(1 − 2^−K): one cycle's K weights then sum to exactly K·θ, so values up to the scale
        λ (input 1 per step) are representable (with θ0 = K·θ they would saturate at 1 − 2^−K)."""
        return self.period * self.v_threshold / (1.0 - 2.0**-self.period)

    def _run(self, x_seq: torch.Tensor, t0: int) -> torch.Tensor:
        ran = kernels.phase_scan(
            x_seq, self.v, self.period, t0, self.theta0, 1.0 / self.v_threshold, backend=self.backend
        )
        if ran is not None:
            out, self.v = ran
            return out
        thresholds = self.threshold(t0, x_seq.shape[0], x_seq.device, x_seq.dtype).tolist()
        v = self.v
        out = sequence_buffer(x_seq)
        for t, thr in enumerate(thresholds):  # charge → fire → reset by subtraction
            v.add_(x_seq[t])
            spike = (v >= thr).to(v.dtype)
            v.sub_(spike, alpha=thr)
            torch.mul(spike, thr / self.v_threshold, out=out[t])
        return out

    def spike_count(self, output: torch.Tensor) -> torch.Tensor:
        """Spikes per output element (the output is the spike's weight, nonzero iff it fired)."""
        return (output != 0).to(output.dtype)


class TTFSNode(OscillatoryNode):
    """Integrates during cycle ``integrate_cycle``, fires once during the next cycle at
    phase K − round(K·v/θ) (see the module docstring)."""

    def __init__(self, period: int, integrate_cycle: int, v_threshold: float = 1.0, step_mode: str = "m"):
        super().__init__(period, v_threshold, step_mode)
        self.integrate_cycle = int(integrate_cycle)

    def extra_repr(self) -> str:
        """Period K, threshold and the integrating cycle."""
        return super().extra_repr() + f", integrate_cycle={self.integrate_cycle}"

    def ramp(self, phase: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The falling threshold θ_k = (K − k − ½)/K·θ at phases ``k``; +∞ before phase 0."""
        thr = (self.period - phase.to(dtype) - 0.5) / self.period * self.v_threshold
        return torch.where(phase < 0, torch.full_like(thr, float("inf")), thr)

    def _run(self, x_seq: torch.Tensor, t0: int) -> torch.Tensor:
        steps, K = x_seq.shape[0], self.period
        times = _times(t0, steps, x_seq.device)
        cycle = torch.div(times, K, rounding_mode="floor")
        charging = (cycle == self.integrate_cycle).nonzero().flatten()
        if charging.numel():
            a, b = int(charging[0]), int(charging[-1]) + 1
            total = x_seq[a] * (b - a) if is_time_constant(x_seq) else x_seq[a:b].sum(0)
            self.v = self.v + total / K
        firing = (cycle == self.integrate_cycle + 1).nonzero().flatten()
        if not firing.numel():  # idle (or integrating): no spikes, and the layers after skip the chunk
            return silent(x_seq)
        out = sequence_buffer(x_seq).zero_()
        a, b = int(firing[0]), int(firing[-1]) + 1
        phase = times[a:b] - (self.integrate_cycle + 1) * K
        shape = (b - a,) + (1,) * self.v.dim()
        crossed = self.v.unsqueeze(0) >= self.ramp(phase, x_seq.dtype).reshape(shape)
        before = self.v.unsqueeze(0) >= self.ramp(phase - 1, x_seq.dtype).reshape(shape)
        out[a:b] = (crossed & ~before).to(x_seq.dtype)  # the first crossing only
        return out


class StepSynapse(SpikeRouter, base.MemoryModule):
    """Spikes → step currents: each spike adds 1 to the synaptic current until the oscillation
    clears it at the start of the next cycle (a current-based synapse without decay)."""

    differentiable = False  # exact by construction: spike times and cycle counters have no surrogate path

    def __init__(self, period: int, step_mode: str = "m"):
        super().__init__()
        self.period = int(period)
        self.step_mode = step_mode
        self.register_memory("t", 0)
        self.register_memory("held", 0.0)

    def routing_module(self) -> nn.Module:
        """The identity: one synapse per element, no weights."""
        return nn.Identity()  # element to element: one synapse per element, no weights

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: spikes [B, ...] → synaptic current [B, ...] (a one-step `multi_step_forward`)."""
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Spikes [T, B, ...] → step currents [T, B, ...]: the spikes summed since the start of the current cycle
        (carried over between chunks; a silent input with nothing held passes through)."""
        steps, K, t0 = x_seq.shape[0], self.period, int(self.t)
        nothing_held = t0 % K == 0 or not isinstance(self.held, torch.Tensor) or is_silent(self.held)
        if nothing_held and is_silent(x_seq):
            self.held = x_seq[-1]
            self.t = t0 + steps
            return x_seq
        out = sequence_buffer(x_seq)
        a = 0
        while a < steps:
            b = min(steps, a + K - (t0 + a) % K)  # to the end of this cycle
            out[a:b] = torch.cumsum(x_seq[a:b], dim=0)
            if a == 0 and t0 % K and isinstance(self.held, torch.Tensor):
                out[a:b] += self.held  # the chunk continues a cycle
            a = b
        self.held = out[-1]
        self.t = t0 + steps
        return out


class CycleDelay(SpikeRouter, base.MemoryModule):
    """Delays a single-spike signal by ``cycles``·K steps (aligns residual branches of different depth).

    A value of the single-spike code is read only in the cycle that carries it (``source_cycle`` for
    the input): the node keeps that one cycle, K steps, and replays it ``cycles`` cycles later. Its
    output outside the replayed cycle is zero (silent where a whole chunk is outside), so memory
    and work do not grow with the delay.
    """

    differentiable = False  # exact by construction: spike times and cycle counters have no surrogate path

    def __init__(self, cycles: int, period: int, source_cycle: int, step_mode: str = "m"):
        super().__init__()
        self.cycles, self.period, self.source_cycle = int(cycles), int(period), int(source_cycle)
        self.step_mode = step_mode
        self.register_memory("t", 0)
        self.register_memory("stored", None)

    def extra_repr(self) -> str:
        """Delay in cycles, period K and the cycle the input carries."""
        return f"cycles={self.cycles}, period={self.period}, source_cycle={self.source_cycle}"

    def routing_module(self) -> nn.Module:
        """The identity: element to element, no weights."""
        return nn.Identity()

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: input [B, ...] → delayed output [B, ...] (a one-step `multi_step_forward`)."""
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input [T, B, ...] → output [T, B, ...]: cycle ``source_cycle`` of the input, stored, replayed ``cycles``
        cycles later; zero elsewhere (silent for a chunk with nothing to replay)."""
        steps, K, t0 = x_seq.shape[0], self.period, int(self.t)
        self.t = t0 + steps
        phases = _times(t0, steps, x_seq.device) - self.source_cycle * K  # phase within the carried cycle
        kept = ((phases >= 0) & (phases < K)).nonzero().flatten()
        if kept.numel():
            if self.stored is None:
                self.stored = torch.zeros((K,) + tuple(x_seq.shape[1:]), dtype=x_seq.dtype, device=x_seq.device)
            a, b = int(kept[0]), int(kept[-1]) + 1
            self.stored[int(phases[a]) : int(phases[a]) + b - a] = x_seq[a:b]
        replay = phases - self.cycles * K
        shown = ((replay >= 0) & (replay < K)).nonzero().flatten()
        if not shown.numel() or self.stored is None:
            return silent(x_seq)
        out = sequence_buffer(x_seq).zero_()
        a, b = int(shown[0]), int(shown[-1]) + 1
        out[a:b] = self.stored[int(replay[a]) : int(replay[a]) + b - a]
        return out


class CycleMaxPool(SpikeRouter, base.MemoryModule):
    """Max pooling of a general current in the single-spike code (a sum of weighted step currents,
    not one neuron's: Conv → BN → MaxPool, or pooling a sum of branches), exact one cycle later.

    The value a current carries in cycle c is its mean over the cycle. The node sums its input over
    ``source_cycle``, pools the cycle means when the cycle ends, and replays the pooled values as a
    constant current through the next cycle, whose mean is then exactly the maximum. Outside that
    cycle its output is zero (silent where a whole chunk is outside).
    """

    differentiable = False  # exact by construction: spike times and cycle counters have no surrogate path

    def __init__(self, pool: nn.Module, period: int, source_cycle: int, step_mode: str = "m"):
        super().__init__()
        self.pool = pool
        self.period, self.source_cycle = int(period), int(source_cycle)
        self.step_mode = step_mode
        self.register_memory("t", 0)
        self.register_memory("total", None)
        self.register_memory("pooled", None)

    def extra_repr(self) -> str:
        """Period K and the cycle whose current is pooled."""
        return f"period={self.period}, source_cycle={self.source_cycle}"

    def routing_module(self) -> nn.Module:
        """The wrapped pooling module (where each input element goes)."""
        return self.pool

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: input [B, ...] → pooled output [B, ...] (a one-step `multi_step_forward`)."""
        return self.multi_step_forward(x.unsqueeze(0))[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input currents [T, B, ...] → [T, B, ...pooled]: the pool of the mean input over cycle ``source_cycle``,
        held constant through the next cycle; zero elsewhere (silent for a chunk outside that cycle)."""
        steps, K, t0 = x_seq.shape[0], self.period, int(self.t)
        self.t = t0 + steps
        phases = _times(t0, steps, x_seq.device) - self.source_cycle * K
        kept = ((phases >= 0) & (phases < K)).nonzero().flatten()
        if kept.numel() and not is_silent(x_seq):
            part = x_seq[int(kept[0]) : int(kept[-1]) + 1].sum(0)
            self.total = part if self.total is None else self.total + part
        shown = ((phases >= K) & (phases < 2 * K)).nonzero().flatten()
        if not shown.numel() or self.total is None:
            sample = self.pool(x_seq[0, :1])
            return silent(sample.expand((steps, x_seq.shape[1]) + tuple(sample.shape[1:])))
        if self.pooled is None:
            self.pooled = self.pool(self.total / K)
        out = torch.zeros((steps,) + tuple(self.pooled.shape), dtype=x_seq.dtype, device=x_seq.device)
        out[int(shown[0]) : int(shown[-1]) + 1] = self.pooled
        return out


class CycleReadout(MembraneReadout):
    """Output layer of the single-spike code: integrates (1/K)·current during cycle ``cycle``
    (0 before it, held after it); at the cycle's end its value is the ANN's output."""

    differentiable = False  # exact by construction: spike times and cycle counters have no surrogate path

    def __init__(self, period: int, cycle: int, step_mode: str = "m"):
        super().__init__(step_mode)
        self.period, self.cycle = int(period), int(cycle)

    def extra_repr(self) -> str:
        """Period K and the integrating cycle."""
        return f"period={self.period}, cycle={self.cycle}"

    @property
    def latency(self) -> int:
        """Steps until the output is complete."""
        return (self.cycle + 1) * self.period

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input currents [T, B, ...] → [T, B, ...]: the running sum of (1/K)·current over cycle ``cycle`` only
        (zero before it, held after it)."""
        steps, K = x_seq.shape[0], self.period
        times = _times(int(self.t), steps, x_seq.device)
        inside = (torch.div(times, K, rounding_mode="floor") == self.cycle).to(x_seq.dtype) / K
        running = torch.cumsum(x_seq * inside.reshape((steps,) + (1,) * (x_seq.dim() - 1)), dim=0) + self.v
        self.v = running[-1]
        self.t = int(self.t) + steps
        return running
