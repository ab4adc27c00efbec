"""The rate code's neuron: integrate-and-fire (optionally leaky) with reset by subtraction or to zero.

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

RESETS = ("subtract", "zero")


def _number(value: float | torch.Tensor) -> float:
    """θ or τ as a Python number, also while it is a parameter being learned."""
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class IFNeuron(SpikingNode, BaseNode):
    """Integrate-and-fire neuron with reset by subtraction and a configurable initial potential.

    The membrane starts at ``v_init * v_threshold`` (0.5: "error centering", the spike-count
    error becomes zero-mean instead of always negative); ``v_init`` is a number or a tensor that
    broadcasts to one sample (per channel: tuned by ``recipes="potential"``). With ``tau`` set,
    the membrane leaks: ``v ← v·(1 − 1/tau) + x`` (a LIF neuron with the same reset).
    With ``max_spikes`` Γ > 1 it fires bursts (Li & Zeng, IJCAI 2022): up to Γ spikes in one step,
    ``floor(v/θ)`` clamped to [0, Γ], each subtracting θ, so no charge above the threshold is lost;
    its output is the spike count (counted as that many spikes by every metric); ``max_spikes=None``
    fires as many spikes as thresholds crossed (Sinabs's ``MultiSpike``).

    Other simulators' neurons, stated exactly (`convert2snn.tools.nir` exports them):
    ``reset="zero"`` fires where v > θ (strictly) and sets v to 0 (NIR's IF: what Norse and snnTorch
    run); ``v_min`` floors the membrane at ``v_min``·θ after the reset, computed as Sinabs's IAF does
    (``relu(v − m) + m``), so the spikes are bit-identical.
    In eval / no-grad mode a tight tensor loop runs; in training the surrogate-gradient path.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_init: float | torch.Tensor = 0.5,
        tau: float | None = None,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
        max_spikes: int | None = 1,
        reset: str = "subtract",
        v_min: float | None = None,
    ):
        super().__init__(
            v_threshold=float(v_threshold),
            v_reset=None,
            surrogate_function=surrogate_function or surrogate.ATan(),
            detach_reset=detach_reset,
            step_mode=step_mode,
        )
        if isinstance(v_init, torch.Tensor) and v_init.numel() > 1:
            self.register_buffer("v_init", v_init.detach().float().clone())  # per channel: saved, moved with .to
        else:
            self.v_init = float(v_init)
        self.tau = None if tau is None else float(tau)
        if max_spikes is not None and int(max_spikes) < 1:
            raise ValueError(f"max_spikes must be ≥ 1 or None (unbounded), got {max_spikes}")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if reset == "zero" and max_spikes != 1:
            raise ValueError("a neuron reset to zero fires one spike a step: max_spikes must be 1")
        self.max_spikes = None if max_spikes is None else int(max_spikes)
        self.reset_mode = reset
        self.v_min = None if v_min is None else float(v_min)
        start = self.v_init * self.v_threshold
        self.set_reset_value("v", start if isinstance(start, float) else None)
        self.v = start if isinstance(start, float) else None

    @property
    def uniform_start(self) -> bool:
        """True when every neuron starts at the same potential (a number ``v_init``)."""
        return isinstance(self.v_init, float)

    def extra_repr(self) -> str:
        """Threshold, initial potential (fraction of θ), ``tau`` when leaky, and step mode."""
        leak = f", tau={self.tau}" if self.tau else ""
        start = (
            self.v_init
            if self.uniform_start
            else f"per channel in [{float(self.v_init.min()):.3g}, {float(self.v_init.max()):.3g}]"
        )
        burst = f", max_spikes={self.max_spikes}" if self.max_spikes != 1 else ""
        reset = ", reset=zero" if self.reset_mode == "zero" else ""
        floor = f", v_min={self.v_min}" if self.v_min is not None else ""
        return f"v_threshold={self.v_threshold}, v_init={start}{leak}{burst}{reset}{floor}, step_mode={self.step_mode}"

    @property
    def bursts(self) -> bool:
        """True when the neuron may fire more than one spike in a step (``max_spikes`` > 1 or unbounded)."""
        return self.max_spikes != 1

    @property
    def burst_scale(self) -> int:
        """Γ, the spikes a unit at the clip level λ fires per step (1 for unbounded ``max_spikes``: the threshold
        stays at λ and only currents above it fire more)."""
        return self.max_spikes or 1

    def materialize_states(self, inputs, states, step_mode):
        """The membrane for this input: ``v_init``·θ (broadcast; θ as it is now, a parameter while it is learned)
        when missing or of another shape, else ``v`` moved to the input's dtype and device."""
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        v = states[0]
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:
            start = self.v_init * self.v_threshold
            if isinstance(start, float):
                v = torch.full_like(x, start)
            else:  # per channel, or θ being learned: a fresh tensor (the no-grad scan updates it in place)
                v = torch.zeros_like(x) + start.to(x)
        elif v.dtype != x.dtype or v.device != x.device:
            v = v.to(dtype=x.dtype, device=x.device)
        return (v, *states[1:])

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.tau is not None:
            v = v * (1.0 - 1.0 / self.tau)
        return v + x

    def _floor(self, v: torch.Tensor) -> torch.Tensor:
        if self.v_min is None:
            return v
        low = self.v_min * self.v_threshold
        return torch.relu(v - low) + low  # Sinabs's arithmetic (not clamp): bit-identical membranes

    def single_step_functional_forward(self, inputs, states, **kwargs):
        """One step on input [B, ...]: (leak,) integrate, fire where v ≥ θ (v > θ for ``reset="zero"``; a
        surrogate spike), reset by subtraction or to zero, floor at ``v_min``; output spikes [B, ...]."""
        v = self._charge(states[0], inputs[0])
        if self.reset_mode == "zero":
            spike = 1.0 - self.surrogate_function(self.v_threshold - v)  # [v > θ], its gradient positive in v
            reset = spike.detach() if self.detach_reset else spike
            return (spike,), (self._floor(v * (1.0 - reset)), *states[1:])
        spike = self.surrogate_function(v - self.v_threshold)
        if self.max_spikes is None:  # as many spikes as thresholds crossed: the surrogate's gradient on the first
            extra = torch.clamp(torch.floor(v.detach() / self.v_threshold) - 1.0, min=0.0)
            spike = spike + extra
        else:
            for k in range(2, self.max_spikes + 1):  # a burst: one more spike for every threshold v reaches
                spike = spike + self.surrogate_function(v - k * self.v_threshold)
        reset = spike.detach() if self.detach_reset else spike
        return (spike,), (self._floor(v - reset * self.v_threshold), *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        """Input currents [T, B, ...] → 0/1 spikes [T, B, ...], by a kernel or the torch loop (the membrane is
        updated in place); SpikingJelly's per-step autograd path when gradients are needed."""
        x_seq = inputs[0]
        if torch.is_grad_enabled() and (x_seq.requires_grad or self.training):
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        v = states[0]
        decay = None if self.tau is None else 1.0 - 1.0 / _number(self.tau)
        thr = _number(self.v_threshold)  # a number also while θ is a parameter being learned
        if self.bursts or self.reset_mode == "zero" or self.v_min is not None:
            return (self._general_scan(x_seq, v, decay),), (v, *states[1:])
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

    def _general_scan(self, x_seq: torch.Tensor, v: torch.Tensor, decay: float | None) -> torch.Tensor:
        """Spikes (counts for bursts) [T, ...] of a bursting, reset-to-zero or floored neuron (the membrane ``v``
        is updated in place)."""
        thr = _number(self.v_threshold)
        low = None if self.v_min is None else self.v_min * thr
        cap = float("inf") if self.max_spikes is None else float(self.max_spikes)
        counts = sequence_buffer(x_seq)
        for t in range(x_seq.shape[0]):
            if decay is not None:
                v.mul_(decay)
            v.add_(x_seq[t])
            if self.reset_mode == "zero":
                torch.gt(v, thr, out=counts[t])
                v.masked_fill_(counts[t].bool(), 0.0)
            else:
                torch.floor(v / thr, out=counts[t]).clamp_(0.0, cap)
                v.sub_(counts[t], alpha=thr)
            if low is not None:
                v.sub_(low).clamp_(min=0.0).add_(low)  # relu(v − m) + m, as Sinabs computes it
        return counts

    # -- learning: the threshold and the leak as parameters (`convert2snn.finetune`) -------------
    def learn(self, threshold: bool = False, leak: bool = False) -> list[nn.Parameter]:
        """Make θ (``threshold``) and, for a leaky neuron, τ (``leak``) trainable: each becomes an `nn.Parameter`
        of the module (so ``network.parameters()`` yields it) until `freeze`. Returns the new parameters."""
        if leak and self.tau is None:
            raise ValueError("a non-leaky IF neuron has no leak to learn (convert with tau=... for LIF neurons)")
        made = []
        for name, wanted in (("v_threshold", threshold), ("tau", leak)):
            value = getattr(self, name)
            if wanted and not isinstance(value, nn.Parameter):
                param = nn.Parameter(torch.tensor(float(value)))
                setattr(self, name, param)  # nn.Module moves the name from the instance dict to its parameters
                made.append(param)
        return made

    def freeze(self) -> None:
        """θ and τ back to plain numbers (their learned values): the no-grad scans and every export read numbers."""
        for name in ("v_threshold", "tau"):
            value = getattr(self, name)
            if isinstance(value, nn.Parameter):
                delattr(self, name)
                setattr(self, name, _number(value))

    def get_extra_state(self) -> torch.Tensor:
        """[θ, τ] (τ = 0 for a non-leaky neuron: a leak needs τ > 1) in the state dict, so that a learned threshold
        or leak survives ``state_dict`` → ``load_state_dict`` (a tensor, as every other state-dict value)."""
        tau = 0.0 if self.tau is None else _number(self.tau)
        return torch.tensor([_number(self.v_threshold), tau], dtype=torch.float64)

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Restore θ and τ from `get_extra_state` (into the parameters while they are being learned)."""
        threshold, tau = (float(v) for v in state.reshape(-1)[:2])
        for name, value in (("v_threshold", threshold), ("tau", tau if tau > 0 else None)):
            current = getattr(self, name)
            if isinstance(current, nn.Parameter):
                with torch.no_grad():
                    current.fill_(value)
            else:
                setattr(self, name, value)

    def limit_module(self) -> nn.Module:
        """The T → ∞ rate of an IF neuron: clamp(current / θ, 0, Γ) (Γ = ``max_spikes``; unbounded: a ReLU; a
        leaky neuron, and one reset to zero (it loses the charge above θ), have no such limit)."""
        if self.tau is not None:
            raise NotImplementedError("a leaky (LIF) neuron does not converge to a clipped ReLU")
        if self.reset_mode == "zero":
            raise NotImplementedError("a neuron reset to zero loses the charge above θ: no clipped-ReLU limit")
        top = float("inf") if self.max_spikes is None else float(self.max_spikes)
        clip = nn.ReLU() if self.max_spikes is None else nn.Hardtanh(0.0, top)
        return SeqModule(nn.Sequential(Affine(torch.tensor(1.0 / self.v_threshold), None), clip))
