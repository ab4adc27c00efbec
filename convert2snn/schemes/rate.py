"""Rate conversion: ReLU units → integrate-and-fire neurons whose spike rate times λ is the activation.

Construction (exact in the T → ∞ limit, checked against the λ-clipped ANN at conversion):

- every ReLU / ReLU6 / clipped ReLU becomes ``Affine(1/λ) → IFNeuron(θ = 1) → Affine(λ)``:
  the neuron sees its input current in units of λ and each edge carries values in the
  units of the ANN; `convert2snn.graph.normalize` then folds those scales into the weights
  where a Conv/Linear is adjacent;
- everything else as every scheme does it (`schemes/common.py`): max pooling becomes
  `SpikingMaxPool`, average pooling and other affine maps run per time step, the final
  softmax is dropped, the output is a `MembraneReadout`.

Options: `RateOptions` (LIF neurons, Poisson input, SpKeras's current normalisation and
signed-bit weight quantisation, the reset and bursts, and ``nir_target``: the neurons another
simulator runs from a NIR file, so that `convert2snn.tools.nir` exports reproduce every spike there).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx

from bridges import ops
from bridges.modules import Affine

from ..errors import ApproximationError, InvalidInputError
from ..graph.builder import SNNBuilder
from ..neurons import IFNeuron
from ..recipes import RECIPES
from ..report import ConversionReport
from ..sequence import SeqModule
from ..statistics import offset_key, potential_key
from .base import Scheme, SchemeOptions, option, register
from .common import check_relu_like


@dataclass
class RateOptions(SchemeOptions):
    """Options of ``conversion_type="rate"`` (see the README's option table)."""

    v_init: float = option(0.5, "initial membrane potential as a fraction of the threshold (0.5: error centering)")
    neuron: str = option("if", "'if' (integrate-and-fire) or 'lif' (leaky, with tau)", choices=("if", "lif"))
    tau: float = option(100.0, "membrane time constant in steps for neuron='lif'")
    amp_factor: float = option(
        1.0,
        "SpKeras current normalisation: currents into each neuron and its threshold "
        "both multiplied by it (spikes unchanged up to float rounding)",
    )
    thresholding: float | None = option(
        None, "SpKeras's name for v_init (its 0.5 default is error centering); overrides v_init when set"
    )
    signed_bit: int = option(
        0,
        "quantise each layer's weights to signed_bit-bit signed integers times one scale "
        "per layer (0: off); the scale goes into the next threshold",
    )
    max_spikes_per_step: int = option(
        1,
        "burst spikes: a neuron may fire up to this many spikes in one step (1: binary spikes; 0: as many as "
        "thresholds crossed, the threshold staying at the clip level, as Sinabs's MultiSpike); each counts as "
        "a spike in every metric",
    )
    reset: str = option(
        "subtract",
        "after a spike: 'subtract' the threshold (exact in the limit) or 'zero' (hard reset, firing above the "
        "threshold: NIR's IF, as Norse and snnTorch run it)",
        choices=("subtract", "zero"),
    )
    v_min: float | None = option(
        None, "floor of the membrane as a fraction of the threshold (Sinabs's IAF: -1); None: no floor"
    )
    nir_target: str | None = option(
        None,
        "the neurons a NIR consumer runs, so that snn.to_nir reproduces every spike there: 'nir', 'norse' or "
        "'snntorch' (reset='zero', v_init=0), 'sinabs' (v_init=0, max_spikes_per_step=0, v_min=-1); "
        "None: convert2snn's own (reset by subtraction from θ/2, not NIR-expressible)",
        choices=(None, "nir", "norse", "snntorch", "sinabs"),
    )
    timesteps: int | None = option(
        None,
        "target latency T: tune the conversion for T steps with the `recipes` on the calibration "
        "data (None: untuned, good across T; evaluate still reports every T)",
    )
    recipes: str = option(
        "auto",
        "calibration recipes for the target T, joined by '+': threshold, bias, potential; 'auto': the "
        "combination (untuned included) whose T-step predictions agree best with the ANN's on the calibration "
        "samples; 'none'",
    )
    tuning_samples: int = option(512, "calibration samples the recipes use (fewer when T × samples would not fit)")

    def validate(self) -> None:
        """The shared checks, then the rate options (v_init, tau, amp_factor, signed_bit); ``thresholding``, when
        set, replaces ``v_init``. Raises `ApproximationError` for ``signed_bit`` with ``strict``."""
        super().validate()
        if not 0.0 <= self.v_init < 1.0:
            raise InvalidInputError(f"v_init is a fraction of the threshold in [0, 1), got {self.v_init}")
        if self.neuron == "lif" and not self.tau > 1.0:
            raise InvalidInputError(f"tau must be > 1 (steps) for a LIF neuron, got {self.tau}")
        if not self.amp_factor > 0:
            raise InvalidInputError(f"amp_factor must be positive, got {self.amp_factor}")
        if self.thresholding is not None:
            if not 0.0 <= self.thresholding < 1.0:
                raise InvalidInputError(
                    "thresholding (the initial potential as a fraction of the threshold) must be in [0, 1), "
                    f"got {self.thresholding}"
                )
            self.v_init = float(self.thresholding)
        if not (_positive_int(self.max_spikes_per_step) or _is_zero(self.max_spikes_per_step)):
            raise InvalidInputError(
                "max_spikes_per_step must be a positive integer (1: binary spikes) or 0 (as many as thresholds "
                f"crossed), got {self.max_spikes_per_step!r}"
            )
        self.max_spikes_per_step = int(self.max_spikes_per_step)
        self._apply_nir_target()
        if self.reset == "zero" and self.max_spikes_per_step != 1:
            raise InvalidInputError(
                f"reset='zero' fires one spike a step; max_spikes_per_step={self.max_spikes_per_step} needs "
                "reset='subtract'"
            )
        if self.v_min is not None and not (isinstance(self.v_min, (int, float)) and self.v_min <= 0):
            raise InvalidInputError(f"v_min (a floor, as a fraction of the threshold) must be ≤ 0, got {self.v_min!r}")
        self._validate_tuning()
        if not (int(self.signed_bit) == 0 or 2 <= int(self.signed_bit) <= 32):
            raise InvalidInputError(f"signed_bit must be 0 (off) or 2..32, got {self.signed_bit}")
        if self.signed_bit and self.strict:
            raise ApproximationError(
                f"signed_bit={self.signed_bit} rounds the weights (an approximation) but strict=True"
            )

    def _apply_nir_target(self) -> None:
        """Set the neuron options ``nir_target`` names (`NIR_TARGETS`). A value other than both the target's and
        convert2snn's default is an error; one equal to convert2snn's default reads as unset and is replaced."""
        if self.nir_target is None:
            return
        for name, wanted in NIR_TARGETS[self.nir_target].items():
            value = getattr(self, name)
            if value != wanted and value != RateOptions.__dataclass_fields__[name].default:
                given = "thresholding" if name == "v_init" and self.thresholding is not None else name
                raise InvalidInputError(
                    f"nir_target={self.nir_target!r} needs {name}={wanted!r} (what the consumer simulates), "
                    f"got {given}={value!r}; leave {given} unset"
                )
            setattr(self, name, wanted)
        if self.neuron == "lif" and self.nir_target in ("norse", "sinabs"):
            raise InvalidInputError(
                f"nir_target={self.nir_target!r} with neuron='lif': its NIR importer does not run our leak exactly "
                "(Norse ignores the LIF's r, Sinabs reads tau in steps); use neuron='if', or nir_target='snntorch'"
            )
        if self.recipe_names() and "potential" in self.recipe_names():
            raise InvalidInputError(
                "recipes='potential' tunes per-channel initial potentials, which NIR cannot state; with "
                f"nir_target={self.nir_target!r} use recipes='threshold+bias' (or 'auto')"
            )

    def _validate_tuning(self) -> None:
        if self.timesteps is not None:
            if not _positive_int(self.timesteps):
                raise InvalidInputError(
                    f"timesteps (the target latency) must be a positive integer, got {self.timesteps!r}"
                )
            self.timesteps = int(self.timesteps)
        if not _positive_int(self.tuning_samples):
            raise InvalidInputError(f"tuning_samples must be a positive integer, got {self.tuning_samples!r}")
        self.tuning_samples = int(self.tuning_samples)
        names = self.recipe_names()
        if names and self.timesteps is None:  # "auto" without timesteps means untuned
            raise InvalidInputError(
                f"recipes={self.recipes!r} tunes the conversion for a latency: pass timesteps=T as well"
            )

    @property
    def tuned(self) -> bool:
        """True when the conversion is tuned for a latency (``timesteps`` set, ``recipes`` not 'none')."""
        return self.timesteps is not None and str(self.recipes).strip().lower() != "none"

    def recipe_names(self) -> tuple[str, ...]:
        """The calibration recipes named by ``recipes``, in their fixed order (empty for 'auto', which
        chooses among `convert2snn.recipes.AUTO_CANDIDATES`, and for 'none')."""
        spec = str(self.recipes).strip().lower()
        if spec in ("auto", "none"):
            return ()
        names = [name.strip() for name in spec.split("+")]
        for name in names:
            if name not in RECIPES:
                close = difflib.get_close_matches(name, list(RECIPES), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise InvalidInputError(
                    f"unknown calibration recipe {name!r} in recipes={self.recipes!r}; known: "
                    f"{', '.join(RECIPES)}, joined by '+', or 'auto' / 'none'.{hint}"
                )
        return tuple(name for name in RECIPES if name in names)


# The neuron options that make a rate SNN's neurons those a NIR consumer simulates from our export (see
# `convert2snn.tools.nir`): NIR's IF, Norse's IAFCell and snnTorch's Leaky(β = 1, reset "zero") fire above θ,
# reset to 0 and start at 0; Sinabs's IAF resets by subtraction, fires floor(v/θ) spikes and floors v at −θ.
_HARD_RESET = {"reset": "zero", "v_init": 0.0, "max_spikes_per_step": 1, "v_min": None}
NIR_TARGETS: dict[str, dict[str, object]] = {
    "nir": _HARD_RESET,
    "norse": _HARD_RESET,
    "snntorch": _HARD_RESET,
    "sinabs": {"reset": "subtract", "v_init": 0.0, "max_spikes_per_step": 0, "v_min": -1.0},
}


def _is_zero(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) == 0


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) >= 1


@register("rate")
class RateScheme(Scheme):
    """Rate coding with IF/LIF neurons and data-based (percentile) normalisation."""

    Options = RateOptions
    coded = "rate-coded"
    represented_by = "spike rates of IF neurons"

    def has_exact_limit(self) -> bool:
        """True for IF neurons with reset by subtraction, bounded bursts and no floor: a leaky (LIF) neuron, a
        hard reset and a floor lose charge, unbounded bursts do not clip; none of those has the clipped-ReLU
        limit."""
        o = self.options
        return o.neuron == "if" and o.reset == "subtract" and o.max_spikes_per_step >= 1 and o.v_min is None

    def finalize(self, snn: fx.GraphModule, report: ConversionReport) -> None:
        """With ``signed_bit``: quantise the SNN's weights (`quantize_weights`) and record it as an approximation."""
        bits = int(self.options.signed_bit)
        if bits:
            steps = quantize_weights(snn, bits)
            report.approximations.append(
                f"weights quantised to {bits}-bit signed integers per layer ({'; '.join(steps)})"
            )


@RateScheme.rule(*ops.RELU_LIKE, check=check_relu_like)
def relu_to_if(b: SNNBuilder, node: fx.Node, args: tuple) -> fx.Node:
    """ReLU-like → ``Affine(amp·Γ/λ) → IFNeuron(θ = amp, optional leak, up to Γ spikes a step) → Affine(λ/Γ)``
    (amp: ``amp_factor``; Γ: ``max_spikes_per_step``, 1 by default).

    A conversion tuned to a latency (`convert2snn.recipes`) may add a per-channel bias δ to the
    pre-activation (``Affine(None, δ·amp/λ)`` after the scale: folded into the Conv/Linear before it)
    and a per-channel initial potential."""
    scale = b.scales[node.name]
    opts = b.options
    tau = opts.tau if opts.neuron == "lif" else None
    burst = opts.max_spikes_per_step or 1  # 0: as many spikes as thresholds crossed, the threshold at λ
    current = b.call(SeqModule(Affine(opts.amp_factor * burst / scale, None)), args, f"{node.name}_in", node)
    offset = b.scales.get(offset_key(node.name))
    if offset is not None:
        bias = SeqModule(Affine(None, offset * opts.amp_factor * burst / scale))
        current = b.call(bias, (current,), f"{node.name}_bias", node)
    v_init = b.scales.get(potential_key(node.name), opts.v_init)
    neuron = IFNeuron(
        v_threshold=opts.amp_factor,
        v_init=v_init,
        tau=tau,
        max_spikes=opts.max_spikes_per_step or None,
        reset=opts.reset,
        v_min=opts.v_min,
    )
    spikes = b.call(neuron, (current,), node.name, node)
    return b.call(SeqModule(Affine(scale / burst, None)), (spikes,), f"{node.name}_out", node)


@torch.no_grad()
def quantize_weights(snn: fx.GraphModule, bits: int) -> list[str]:
    """Round each weighted layer to ``bits``-bit signed integers times one scale per layer.

    ``W ≈ s·Q`` with Q integer in ±(2^(bits−1) − 1) and s = max|W| / (2^(bits−1) − 1). Stored as s·Q
    (what the integer layer followed by a threshold divided by s computes). Returns what was done.
    """
    levels = 2 ** (bits - 1) - 1
    done = []
    for name, module in snn.named_modules():
        if isinstance(module, ops.WEIGHTED):
            step = float(module.weight.abs().max()) / levels
            if step > 0:
                module.weight.copy_(torch.round(module.weight / step) * step)
            done.append(f"{name.removesuffix('.module')}: step {step:.3g}")
    return done
