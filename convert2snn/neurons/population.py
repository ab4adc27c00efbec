"""Population-coded neurons: each ANN unit is a population of ``n`` heterogeneous spiking neurons.

All nodes are SpikingJelly `BaseNode` subclasses (``functional.reset_net``, step modes,
monitors and surrogate-gradient training work). A node's output is the population's mean
spike train per unit: at every step, (number of the unit's neurons that fired) / n, i.e. the
values k/n (±k/n for the signed tanh population). Declared through `SpikingNode`:
``neurons_per_unit = n`` and ``spike_count`` (spikes = |output|·n) tell the spike counters and
``neuron_counts`` that every unit is n neurons.

**ReLU units** — `PopulationIFNode`: n integrate-and-fire neurons per unit with reset by
subtraction, all driven by the unit's input current x (in units of the threshold θ = 1).

- ``mismatch="dither"``: equal thresholds, initial potentials spread evenly,
  v0_j = (j + ½)/n · θ. A neuron with v0 = u and constant x ∈ [0, 1] fires
  ⌊T·x + u⌋ times in T steps, so by Hermite's identity
  Σ_j ⌊T·x + (j + ½)/n⌋ = ⌊n·T·x + ½⌋: the population count after T steps is
  round(n·T·x) — n·T levels, error ≤ 1/(2nT) instead of 1/(2T) for one neuron
  (n = 1 is the rate conversion's error-centred IF neuron exactly).
- ``mismatch="threshold"``: seeded lognormal gain mismatch per neuron (as in
  subthreshold-transistor inhomogeneity), θ_j = θ / g_j with g_j = e^{σε_j} / mean_k e^{σε_k},
  ε ~ N(0, 1), v0_j = θ_j / 2. The gains average to exactly 1 in every unit, so the
  population rate → mean_j min(g_j·x, 1) = x for x ≤ 1/max g (soft saturation above).

**Sigmoid / tanh units** — `PopulationActivationNode`: stateless populations. At step t
neuron j of a unit fires if the unit's input exceeds its threshold θ_j; the mean over the
population is a CDF of the thresholds evaluated at the input:

- sigmoid: ``mismatch="threshold"``: θ_j ~ N(0, σ_s²) → mean ≈ Φ(z/σ_s) ≈ sigmoid(z);
  σ_s = 1.7017 minimises max_z |Φ(z/σ) − sigmoid(z)| (= 0.0095; the original PopLSTM's
  1.75 gives 0.0151);
- tanh: signed neurons (an ON/OFF pair counted as one neuron, at most one spike per step):
  neuron j emits +1 if z > θ_j, −1 if z < −θ_j, with θ_j = |N(0, σ_t²)| → mean
  ≈ 2Φ(z/σ_t) − 1 ≈ tanh(z); σ_t = 0.8509 (max error 0.0189; the original's 0.88: 0.0325);
- ``mismatch="dither"``: deterministic thresholds at evenly spread quantiles of the exact
  activation, θ_j,t = F⁻¹((j + u_t)/n) with F = sigmoid (resp. tanh on z ≥ 0), shifted every
  step by a van der Corput offset u_t ∈ (0, 1): the population mean after T steps is the
  activation quantised to ≈ n·T levels (error ≲ 1/(nT)) — the same n·T effect as for ReLU.

A stateless population standing alone in the graph sees the running mean of its input
current (a perfect integrator normalised by time, like the readout): for constant input
this is the input itself; after spiking layers it is the rate-decoded input, so the
population computes f(mean input) rather than mean f(input). Inside an LSTM the gates see
the current input (``integrate=False``) and the LSTM supplies the step index.
"""

from __future__ import annotations

import copy
import zlib

import torch
from spikingjelly.activation_based import base, surrogate
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from ..sequence import SeqModule, sequence_buffer
from . import kernels
from .protocol import SpikingNode, StatefulNode

# max_z |Φ(z/σ) − f(z)| is minimal at these σ (measured on z ∈ [−12, 12], 2·10⁵ points; see tests)
SIGMA_SIGMOID = 1.7017
SIGMA_TANH = 0.8509
MISMATCH_MODELS = ("dither", "threshold")


def layer_seed(seed: int, key: str) -> int:
    """A per-layer seed that is stable across processes (str hash() is salted; crc32 is not)."""
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % (2**63)


def van_der_corput(index: torch.Tensor) -> torch.Tensor:
    """Base-2 radical inverse of ``index`` + 1 (float64 in (0, 1)): 1/2, 1/4, 3/4, 1/8, 5/8, …"""
    i = index.to(torch.int64) + 1
    out = torch.zeros(i.shape, dtype=torch.float64, device=i.device)
    scale = 0.5
    while bool((i > 0).any()):
        out += (i & 1).double() * scale
        i = i >> 1
        scale *= 0.5
    return out


class PopulationIFNode(SpikingNode, BaseNode):
    """A population of ``n`` IF neurons (reset by subtraction) per unit; output = mean spike train (k/n).

    ``thresholds`` and ``v_init`` (absolute initial potentials) broadcast to ``unit_shape + (n,)``;
    they are non-persistent buffers, rebuilt from the conversion's seed. The membrane ``v`` has
    shape [batch, *units, n].
    """

    def __init__(
        self,
        n: int,
        thresholds: torch.Tensor,
        v_init: torch.Tensor,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
    ):
        super().__init__(
            v_threshold=1.0,
            v_reset=None,
            surrogate_function=surrogate_function or surrogate.ATan(),
            detach_reset=detach_reset,
            step_mode=step_mode,
        )
        self.n = int(n)
        self.neurons_per_unit = self.n
        self.register_buffer("thresholds", thresholds.detach().float().clone(), persistent=False)
        self.register_buffer("v_init", v_init.detach().float().clone(), persistent=False)

    @classmethod
    def dithered(cls, n: int, threshold: float = 1.0, **kwargs) -> PopulationIFNode:
        """Equal thresholds, initial potentials (j + ½)/n·θ: the population count is round(n·T·x)."""
        j = torch.arange(n, dtype=torch.float64)
        return cls(n, torch.full((n,), float(threshold)), ((j + 0.5) / n * threshold).float(), **kwargs)

    @classmethod
    def mismatched(
        cls, n: int, unit_shape: tuple[int, ...], sigma: float, seed: int, threshold: float = 1.0, **kwargs
    ) -> PopulationIFNode:
        """Seeded lognormal gain mismatch (mean gain exactly 1 per unit), initial potential θ_j/2."""
        g = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(tuple(unit_shape) + (n,), generator=g, dtype=torch.float64)
        gain = torch.exp(sigma * eps)
        gain = gain / gain.mean(dim=-1, keepdim=True)
        thresholds = threshold / gain
        return cls(n, thresholds.float(), (thresholds / 2).float(), **kwargs)

    @property
    def mismatch(self) -> str:
        """``"threshold"`` when the neurons' thresholds differ (or are set per unit), else ``"dither"``."""
        return (
            "threshold"
            if self.thresholds.dim() > 1 or bool((self.thresholds != self.thresholds[0]).any())
            else "dither"
        )

    def extra_repr(self) -> str:
        """Population size, mismatch model and step mode."""
        return f"n={self.n}, mismatch={self.mismatch}, step_mode={self.step_mode}"

    def limit(self, x: torch.Tensor) -> torch.Tensor:
        """The T → ∞ rate for constant input ``x`` (per unit): mean_j clamp(x/θ_j, 0, 1)."""
        return (x.unsqueeze(-1) / self.thresholds).clamp(0.0, 1.0).mean(-1)

    def spike_count(self, output: torch.Tensor) -> torch.Tensor:
        """Spikes per output element: the fraction fired times n, round(|output|·n)."""
        return torch.round(output.abs() * self.n)

    def limit_module(self) -> nn.Module:
        """The nominal T → ∞ function, clamp(x, 0, 1) (the thresholds' mean gain is 1)."""
        return SeqModule(nn.Hardtanh(0.0, 1.0))

    def materialize_states(self, inputs, states, step_mode):
        """The membrane v [B, *units, n] for this input: a fresh one filled with ``v_init`` (in the input's memory
        order) when missing or of another shape, else ``v`` moved to the input's dtype and device."""
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        shape = tuple(x.shape) + (self.n,)
        v = states[0]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != shape:
            v = kernels.population_membranes(x, self.n)  # units in the input's memory order
            v.copy_(self.v_init.to(device=x.device, dtype=x.dtype).expand(shape))
        elif v.dtype != x.dtype or v.device != x.device:
            v = v.to(dtype=x.dtype, device=x.device)
        return (v, *states[1:])

    def single_step_functional_forward(self, inputs, states, **kwargs):
        """One step on input [B, *units]: every neuron integrates the input, fires where v ≥ θ_j (surrogate
        spike) and is reset by subtraction; output the fraction fired, [B, *units]."""
        v = states[0] + inputs[0].unsqueeze(-1)
        spike = self.surrogate_function(v - self.thresholds)
        reset = spike.detach() if self.detach_reset else spike
        return (spike.mean(-1),), (v - reset * self.thresholds, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        """Input [T, B, *units] → fractions fired [T, B, *units], by a kernel or the torch loop (the membrane
        is updated in place); SpikingJelly's per-step autograd path when gradients are needed."""
        x_seq = inputs[0]
        if torch.is_grad_enabled() and (x_seq.requires_grad or self.training):
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        v = states[0]
        ran = kernels.population_scan(x_seq, v, self.thresholds, backend=self.backend)
        if ran is not None:
            out, v = ran
            return (out,), (v, *states[1:])
        out = sequence_buffer(x_seq)
        thr = self.thresholds.to(v.dtype)
        spikes = torch.empty_like(v, dtype=torch.bool)
        for t in range(x_seq.shape[0]):
            v.add_(x_seq[t].unsqueeze(-1))
            torch.ge(v, thr, out=spikes)
            v.sub_(spikes * thr)
            out[t] = spikes.sum(-1, dtype=x_seq.dtype) / self.n
        return (out,), (v, *states[1:])


class PopulationActivationNode(SpikingNode, BaseNode):
    """A stateless population of ``n`` threshold neurons per unit representing sigmoid or tanh.

    Subclasses represent other activations by overriding what differs: `cdf` (the fraction of the
    population above threshold at input z), `quantile` (its inverse, for the dithered thresholds),
    `signed` and `analog` (see `PiecePopulationNode`).

    ``kind``: "sigmoid" (output k/n ∈ [0, 1]) or "tanh" (signed neurons, output ±k/n ∈ [−1, 1]).
    ``thresholds``: [*units, n] or [n] static thresholds (``mismatch="threshold"``), or None for
    the dithered quantile thresholds of the exact activation (``mismatch="dither"``), which move
    every step. ``integrate``: evaluate on the running mean of the input (see the module doc).
    The memory ``v`` is the integrated input, ``t`` the step index.
    """

    KINDS: tuple[str, ...] = ("sigmoid", "tanh")

    def __init__(
        self,
        kind: str,
        n: int,
        thresholds: torch.Tensor | None = None,
        integrate: bool = True,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        step_mode: str = "m",
    ):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        super().__init__(
            v_threshold=0.0,
            v_reset=None,
            surrogate_function=surrogate_function or surrogate.ATan(),
            detach_reset=True,
            step_mode=step_mode,
        )
        self.kind = kind
        self.n = int(n)
        self.neurons_per_unit = self.n
        self.integrate = bool(integrate)
        self.register_memory("t", 0)
        if thresholds is None:
            self.register_buffer("thresholds", None, persistent=False)
            self.register_buffer("sorted_thresholds", None, persistent=False)
            self.register_buffer("quantile_index", torch.arange(self.n, dtype=torch.float64), persistent=False)
        else:
            self.register_buffer("thresholds", thresholds.detach().float().clone(), persistent=False)
            self.register_buffer("sorted_thresholds", torch.sort(self.thresholds, dim=-1).values, persistent=False)
            self.register_buffer("quantile_index", None, persistent=False)

    @classmethod
    def mismatched(
        cls, kind: str, n: int, unit_shape: tuple[int, ...], seed: int, **kwargs
    ) -> PopulationActivationNode:
        """Seeded normal thresholds: N(0, 1.7017²) (sigmoid) or |N(0, 0.8509²)| (tanh)."""
        g = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(tuple(unit_shape) + (n,), generator=g, dtype=torch.float64)
        thresholds = eps * SIGMA_SIGMOID if kind == "sigmoid" else eps.abs() * SIGMA_TANH
        return cls(kind, n, thresholds.float(), **kwargs)

    @property
    def mismatch(self) -> str:
        """``"dither"`` (moving quantile thresholds) when no static thresholds are stored, else ``"threshold"``."""
        return "dither" if self.thresholds is None else "threshold"

    def extra_repr(self) -> str:
        """Activation kind, population size, mismatch model, ``integrate`` and step mode."""
        return (
            f"kind={self.kind}, n={self.n}, mismatch={self.mismatch}, integrate={self.integrate}, "
            f"step_mode={self.step_mode}"
        )

    @property
    def signed(self) -> bool:
        """Signed neurons (ON/OFF pairs): the output is ±k/n."""
        return self.kind == "tanh"

    def cdf(self, z: torch.Tensor) -> torch.Tensor:
        """The fraction of the population whose exact (quantile) thresholds lie below z (of |z| when signed)."""
        return torch.sigmoid(z) if self.kind == "sigmoid" else torch.tanh(z.abs())

    def quantile(self, q: torch.Tensor) -> torch.Tensor:
        """The inverse of `cdf` on q ∈ (0, 1) (float64)."""
        return torch.log(q) - torch.log1p(-q) if self.kind == "sigmoid" else torch.atanh(q)

    def analog(self) -> nn.Module:
        """The exact activation the population represents: nn.Sigmoid or nn.Tanh."""
        return nn.Sigmoid() if self.kind == "sigmoid" else nn.Tanh()

    def spike_count(self, output: torch.Tensor) -> torch.Tensor:
        """Spikes per output element: the fraction fired times n, round(|output|·n) (signed neurons count once)."""
        return torch.round(output.abs() * self.n)

    def limit_module(self) -> nn.Module:
        """The activation the population represents (a stand-alone node; an LSTM's gates are replaced with it)."""
        return SeqModule(self.analog())

    def step_thresholds(self, steps: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Thresholds at the given global step indices: [steps, 1…, n] (dither) or the static ones."""
        if self.thresholds is not None:
            return self.thresholds.to(dtype=dtype, device=device).unsqueeze(0)
        q = (
            self.quantile_index.to(device).unsqueeze(0) + van_der_corput(steps.to(device)).unsqueeze(1)
        ) / self.n  # (0, 1)
        return self.quantile(q).to(dtype)

    def materialize_states(self, inputs, states, step_mode):
        """Zeros for the integrated input ``v`` (with ``integrate``) when missing or not shaped like one input
        step; the other states unchanged."""
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        v = states[0]
        if self.integrate and (not isinstance(v, torch.Tensor) or v.shape != x.shape):
            v = torch.zeros_like(x)
        return (v, *states[1:])

    def _fire(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Mean firing (surrogate-differentiable) for inputs ``z`` [..., units], thresholds broadcasting
        to [..., units, n]."""
        zz = z.unsqueeze(-1)
        up = self.surrogate_function(zz - theta)
        if not self.signed:
            return up.mean(-1)
        return (up - self.surrogate_function(-zz - theta)).mean(-1)

    def _count(self, z: torch.Tensor, start: int) -> torch.Tensor:
        """The same population response without materialising [..., units, n] (no-grad path).

        Static thresholds (sorted per unit): the count of thresholds below z, by binary search.
        Dithered thresholds θ_j,t = F⁻¹((j + u_t)/n): z > θ_j,t ⟺ j < n·F(z) − u_t, so the count is
        clamp(⌈n·F(z) − u_t⌉, 0, n) — exact, O(1) per unit and step.
        """
        n = self.n
        if self.thresholds is None:
            steps = z.shape[0]
            u = van_der_corput(torch.arange(start, start + steps, device=z.device)).to(z.dtype)
            u = u.reshape((steps,) + (1,) * (z.dim() - 1))
            k = torch.ceil(n * self.cdf(z) - u).clamp_(0, n)
            return torch.sign(z) * k / n if self.signed else k / n
        theta = self.sorted_thresholds.to(z.dtype)
        units = int(theta[..., 0].numel())
        rows = z.reshape(-1, units).t().contiguous()  # [units, T·B]
        table = theta.reshape(units, n) if theta.dim() > 1 else theta.unsqueeze(0).expand(units, n).contiguous()
        up = torch.searchsorted(table, rows).to(z.dtype)
        if self.signed:
            up = up - torch.searchsorted(table, -rows).to(z.dtype)
        return (up / n).t().reshape(z.shape)

    def _respond(self, x_seq: torch.Tensor, v, start: int):
        steps = x_seq.shape[0]
        if self.integrate:
            running = torch.cumsum(x_seq, dim=0) + v
            counts = torch.arange(start + 1, start + steps + 1, device=x_seq.device, dtype=x_seq.dtype)
            z = running / counts.reshape((steps,) + (1,) * (x_seq.dim() - 1))
            v = running[-1]
        else:
            z = x_seq
        if not (torch.is_grad_enabled() and (z.requires_grad or self.training)):
            return self._count(z, start), v
        if self.thresholds is not None:
            theta = self.thresholds.to(z.dtype)
        else:
            theta = self.step_thresholds(torch.arange(start, start + steps, device=z.device), z.dtype, z.device)
            theta = theta.reshape((steps,) + (1,) * (z.dim() - 1) + (self.n,))
        return self._fire(z, theta), v

    def single_step_functional_forward(self, inputs, states, start: int | None = None, **kwargs):
        """One step, input [B, *units] → fraction fired [B, *units], at step index ``start`` (default: the
        stored ``t``), which then advances by one."""
        v, t = states[0], states[1]
        t = int(t if start is None else start)
        out, v = self._respond(inputs[0].unsqueeze(0), v, t)
        return (out[0],), (v, t + 1)

    def multi_step_functional_forward(self, inputs, states, start: int | None = None, **kwargs):
        """Input [T, B, *units] → fractions fired [T, B, *units] (±k/n when signed) for the steps from ``start``
        (default: the stored ``t``) on; with ``integrate`` each step sees the running mean of the input."""
        v, t = states[0], states[1]
        t = int(t if start is None else start)
        out, v = self._respond(inputs[0], v, t)
        return (out,), (v, t + inputs[0].shape[0])


class PieceCDF(nn.Module):
    """One monotone piece of a scalar activation f on [low, high], rescaled to [0, 1]:
    F(z) = (f(clamp(z, low, high)) − f(low)) / (f(high) − f(low)) — rising in z whether f rises or
    falls on the piece."""

    def __init__(self, activation: nn.Module, low: float, high: float, f_low: float, f_high: float):
        super().__init__()
        self.activation = activation
        self.low, self.high, self.f_low, self.f_high = float(low), float(high), float(f_low), float(f_high)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """F(z) elementwise: f(clamp(z, low, high)) rescaled so that f(low) → 0 and f(high) → 1."""
        return (self.activation(z.clamp(self.low, self.high)) - self.f_low) / (self.f_high - self.f_low)

    def extra_repr(self) -> str:
        """The piece's input interval → the activation's values at its ends."""
        return f"[{self.low:.4g}, {self.high:.4g}] → [{self.f_low:.4g}, {self.f_high:.4g}]"


class PiecePopulationNode(PopulationActivationNode):
    """One monotone piece of any scalar activation f (SiLU, GELU, ELU, LeakyReLU, hard-swish, …):
    ``n`` threshold neurons per unit whose firing fraction is `PieceCDF` F(z).

    Neuron j fires at step t if the unit's (integrated) input exceeds θ_j,t = F⁻¹((j + u_t)/n) with
    the van der Corput offset u_t of the sigmoid population, so the count is clamp(⌈n·F(z) − u_t⌉,
    0, n) and its mean over T steps is n·F(z) within 1/T (the offsets' discrepancy), exactly in the
    limit. The scheme sums the pieces of f with signed weights f(high) − f(low) (negative on a
    falling piece) plus the constant f(low of the first piece): in the T → ∞ limit,
    f(clamp(z, low, high)) — every scalar function as a staircase whose steps are dithered away,
    the sigmoid population being the one-piece case with F = sigmoid.
    ``mismatch="threshold"`` (`mismatched`): static thresholds drawn once from F (seeded), so the
    limit is the thresholds' empirical CDF (an approximation).
    """

    KINDS = ("piece",)
    GRID = 1025  # points of the F⁻¹ table (dithered thresholds for surrogate-gradient training only)

    def __init__(
        self,
        activation: nn.Module,
        low: float,
        high: float,
        n: int,
        thresholds: torch.Tensor | None = None,
        integrate: bool = True,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        step_mode: str = "m",
    ):
        if not float(high) > float(low):
            raise ValueError(f"a piece needs low < high, got [{low}, {high}]")
        super().__init__("piece", n, thresholds, integrate, surrogate_function, step_mode)
        activation = copy.deepcopy(activation)
        with torch.no_grad():
            f_low, f_high = activation(torch.tensor([float(low), float(high)], dtype=torch.float64)).tolist()
        if f_high == f_low:
            raise ValueError(f"{activation} is constant on [{low}, {high}]: no piece to represent")
        self.piece = PieceCDF(activation, low, high, f_low, f_high)
        z = torch.linspace(float(low), float(high), self.GRID, dtype=torch.float64)
        with torch.no_grad():
            cdf = torch.cummax(self.piece(z).clamp(0.0, 1.0), dim=0).values
        self.register_buffer("z_grid", z, persistent=False)
        self.register_buffer("cdf_grid", cdf, persistent=False)

    @classmethod
    def mismatched(  # type: ignore[override]
        cls, activation: nn.Module, low: float, high: float, n: int, unit_shape: tuple[int, ...], seed: int, **kwargs
    ) -> PiecePopulationNode:
        """Static thresholds drawn from F (inverse-CDF sampling, seeded): the piece's counterpart of
        the sigmoid population's normal thresholds."""
        node = cls(activation, low, high, n, **kwargs)
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(tuple(unit_shape) + (int(n),), generator=g, dtype=torch.float64)
        thresholds = node.quantile(u).float()
        node.thresholds = thresholds
        node.sorted_thresholds = torch.sort(thresholds, dim=-1).values
        node.quantile_index = None
        return node

    @property
    def signed(self) -> bool:
        """False: the piece's neurons are unsigned (output k/n ∈ [0, 1])."""
        return False

    def cdf(self, z: torch.Tensor) -> torch.Tensor:
        """F(z), the piece's `PieceCDF`."""
        return self.piece(z)

    def quantile(self, q: torch.Tensor) -> torch.Tensor:
        """F⁻¹(q) by linear interpolation in the monotone table of F on ``GRID`` points of [low, high]."""
        cdf, z = self.cdf_grid.to(q.device), self.z_grid.to(q.device)
        i = torch.searchsorted(cdf, q.contiguous()).clamp_(1, cdf.numel() - 1)
        c0, c1, z0, z1 = cdf[i - 1], cdf[i], z[i - 1], z[i]
        w = ((q - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0.0, 1.0)
        return z0 + w * (z1 - z0)

    def analog(self) -> nn.Module:
        """A copy of the piece's `PieceCDF`: the function F the population represents."""
        return copy.deepcopy(self.piece)

    def extra_repr(self) -> str:
        """The activation and its piece, population size, mismatch model, ``integrate`` and step mode."""
        return (
            f"{self.piece.activation} on {self.piece.extra_repr()}, n={self.n}, mismatch={self.mismatch}, "
            f"integrate={self.integrate}, step_mode={self.step_mode}"
        )


def monotone_pieces(activation: nn.Module, low: float, high: float, grid: int = 4097) -> list[tuple[float, float]]:
    """[low, high] cut at the extrema of the scalar function ``activation`` into pieces on which it is
    monotone (flat stretches join a neighbour; pieces on which it is constant are dropped).

    The extrema are found on a grid and refined by ternary search (float64); the pieces' sum
    telescopes to f(clamp(z, low, high)) − f(low) wherever the cuts are, so their accuracy only
    decides that each piece is monotone.
    """
    low, high = float(low), float(high)
    if not high > low:
        return []
    f = copy.deepcopy(activation)

    def value(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return f(z.to(torch.float64))

    z = torch.linspace(low, high, grid, dtype=torch.float64)
    steps = torch.sign(value(z).diff()).tolist()
    cuts = [low]
    direction, last = 0.0, 0  # the current piece's direction; the last cell that moved
    for i, s in enumerate(steps):
        if s == 0:
            continue
        if direction and s != direction:  # an extremum between cells `last` and i: refine it
            a, b = float(z[last]), float(z[i + 1])
            for _ in range(100):
                m1, m2 = a + (b - a) / 3, b - (b - a) / 3
                v1, v2 = value(torch.tensor([m1, m2])).tolist()
                if (v1 < v2) == (direction > 0):  # keep the side of the maximum (rising) / minimum (falling)
                    a = m1
                else:
                    b = m2
            cuts.append((a + b) / 2)
        direction, last = s, i
    cuts.append(high)
    ends = value(torch.tensor(cuts)).tolist()
    scale = max(abs(v) for v in ends) or 1.0
    return [(a, b) for a, b, fa, fb in zip(cuts, cuts[1:], ends, ends[1:]) if abs(fb - fa) > 1e-9 * scale and b > a]


def split_population(n: int, variations: list[float]) -> list[int]:
    """Neurons per piece: at least one each, the rest in proportion to each piece's variation
    |f(high) − f(low)| (largest remainders), so every piece has about the same step height."""
    m = len(variations)
    rest = max(int(n), m) - m
    total = sum(variations)
    shares = [rest * v / total for v in variations]
    extra = [int(s) for s in shares]
    order = sorted(range(m), key=lambda k: shares[k] - extra[k], reverse=True)
    for k in order[: rest - sum(extra)]:
        extra[k] += 1
    return [1 + e for e in extra]


class PopulationLSTM(StatefulNode, base.MemoryModule):
    """An ONNX-semantics LSTM (batch-first, ``layout=1``) whose gate nonlinearities are population nodes.

    Each gate (``input_gate``, ``forget_gate``, ``output_gate``, ``cell_gate``,
    ``cell_activation``) is a `PopulationActivationNode` (``integrate=False``) or, where the
    user asked for it (n = 0), the analog nn.Sigmoid / nn.Tanh — as in the original PopLSTM.
    Products and the cell state stay analog. Every SNN step runs the whole recurrence over the
    sequence on the running mean of the input sequence (the input itself for analog input),
    so with population gates each step is one sample of the quantised LSTM and the readout
    averages them. Input [T, B, L, F]; output per step as the ANN module: (Y [T, B, L, dirs, H],
    Y_h [T, B, dirs, H], Y_c [T, B, dirs, H]).
    """

    GATES = ("input_gate", "forget_gate", "cell_gate", "output_gate", "cell_activation")

    def __init__(self, lstm: nn.Module, gates: dict[str, nn.Module], step_mode: str = "m"):
        super().__init__()
        if getattr(lstm, "layout", 1) != 1:
            raise ValueError("PopulationLSTM needs a batch-first (layout=1) LSTM")
        self.step_mode = step_mode
        self.hidden_size = int(lstm.hidden_size)
        self.direction = lstm.direction
        self.weight_ih = nn.Parameter(lstm.weight_ih.detach().clone())
        self.weight_hh = nn.Parameter(lstm.weight_hh.detach().clone())
        self.bias = nn.Parameter(lstm.bias.detach().clone())
        self.peephole = None if lstm.peephole is None else nn.Parameter(lstm.peephole.detach().clone())
        for name in self.GATES:
            self.add_module(name, gates[name])
        self.register_memory("x_sum", 0.0)
        self.register_memory("t", 0)

    def _gate(self, name: str, z: torch.Tensor, start: int) -> torch.Tensor:
        module = getattr(self, name)
        if isinstance(module, PopulationActivationNode):
            return module(z, start=start)
        return module(z)

    def _analog(self) -> bool:
        """True when no gate is a population (then every step is the same for the same input)."""
        return not any(isinstance(getattr(self, g), PopulationActivationNode) for g in self.GATES)

    def _run(self, x: torch.Tensor, d: int, reverse: bool, start: int):
        steps, batch, length = x.shape[:3]
        H = self.hidden_size
        gates_x = torch.matmul(x, self.weight_ih[d].t()) + self.bias[d]  # [T, B, L, 4H]
        h = x.new_zeros(steps, batch, H)
        c = x.new_zeros(steps, batch, H)
        ys = [None] * length
        for pos in range(length - 1, -1, -1) if reverse else range(length):
            z = gates_x[:, :, pos] + torch.matmul(h, self.weight_hh[d].t())
            zi, zo, zf, zc = z[..., :H], z[..., H : 2 * H], z[..., 2 * H : 3 * H], z[..., 3 * H :]
            if self.peephole is not None:
                zi = zi + self.peephole[d, :H] * c
                zf = zf + self.peephole[d, 2 * H :] * c
            i = self._gate("input_gate", zi, start)
            f = self._gate("forget_gate", zf, start)
            c = f * c + i * self._gate("cell_gate", zc, start)
            if self.peephole is not None:
                zo = zo + self.peephole[d, H : 2 * H] * c
            o = self._gate("output_gate", zo, start)
            h = o * self._gate("cell_activation", c, start)
            ys[pos] = h
        return torch.stack(ys, dim=2), h, c

    def multi_step_forward(self, x_seq: torch.Tensor):
        """Input [T, B, L, F] → (Y [T, B, L, dirs, H], Y_h [T, B, dirs, H], Y_c [T, B, dirs, H]).

        At every step the whole recurrence runs on the running mean of the input so far (for constant input
        with all gates analog, one step is computed and expanded over T).
        """
        steps = x_seq.shape[0]
        start = int(self.t)
        constant = x_seq.shape[0] == 1 or x_seq.stride(0) == 0
        if constant and isinstance(self.x_sum, float):
            mean = x_seq  # analog input: the running mean is the input
        else:
            running = torch.cumsum(x_seq, dim=0) + (self.x_sum if isinstance(self.x_sum, torch.Tensor) else 0.0)
            counts = torch.arange(start + 1, start + steps + 1, device=x_seq.device, dtype=x_seq.dtype)
            mean = running / counts.reshape((steps,) + (1,) * (x_seq.dim() - 1))
            self.x_sum = running[-1]
        if constant and isinstance(self.x_sum, float) and self._analog():
            mean = mean[:1]  # every step is the same: compute one (no neurons whose spikes are counted per step)
        dirs = self.weight_ih.shape[0]
        ys, hs, cs = [], [], []
        for d in range(dirs):
            reverse = self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)
            y, h, c = self._run(mean, d, reverse, start)
            ys.append(y)
            hs.append(h)
            cs.append(c)
        self.t = start + steps
        y, h, c = torch.stack(ys, dim=3), torch.stack(hs, dim=2), torch.stack(cs, dim=2)
        if y.shape[0] != steps:
            y, h, c = (v.expand((steps,) + tuple(v.shape[1:])) for v in (y, h, c))
        return y, h, c

    def single_step_forward(self, x: torch.Tensor):
        """One step: input [B, L, F] → (Y [B, L, dirs, H], Y_h [B, dirs, H], Y_c [B, dirs, H])."""
        return tuple(v[0] for v in self.multi_step_forward(x.unsqueeze(0)))

    def analog(self) -> PopulationLSTM:
        """A copy with every gate analog (the T → ∞ reference of the wiring)."""
        twin = copy.deepcopy(self)
        for name in self.GATES:
            module = getattr(twin, name)
            if isinstance(module, PopulationActivationNode):
                setattr(twin, name, module.analog())
        return twin

    def limit_module(self) -> nn.Module:
        """The all-analog copy (`analog`): the T → ∞ function."""
        return self.analog()

    def extra_repr(self) -> str:
        """Hidden size, direction and step mode."""
        return f"hidden_size={self.hidden_size}, direction={self.direction}, step_mode={self.step_mode}"
