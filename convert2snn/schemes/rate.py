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
signed-bit weight quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx

from bridges import ops
from bridges.modules import Affine

from ..errors import ApproximationError, InvalidInputError
from ..graph.builder import SNNBuilder
from ..neurons import IFNeuron
from ..report import ConversionReport
from ..sequence import SeqModule
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
        if not (int(self.signed_bit) == 0 or 2 <= int(self.signed_bit) <= 32):
            raise InvalidInputError(f"signed_bit must be 0 (off) or 2..32, got {self.signed_bit}")
        if self.signed_bit and self.strict:
            raise ApproximationError(
                f"signed_bit={self.signed_bit} rounds the weights (an approximation) but strict=True"
            )


@register("rate")
class RateScheme(Scheme):
    """Rate coding with IF/LIF neurons and data-based (percentile) normalisation."""

    Options = RateOptions
    coded = "rate-coded"
    represented_by = "spike rates of IF neurons"

    def has_exact_limit(self) -> bool:
        """True for IF neurons only: a leaky (LIF) neuron loses charge and has no clipped-ReLU limit."""
        return self.options.neuron == "if"  # a leaky neuron loses charge: no clipped-ReLU limit

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
    """ReLU-like → ``Affine(amp/λ) → IFNeuron(θ = amp, optional leak) → Affine(λ)`` (amp: ``amp_factor``)."""
    scale = b.scales[node.name]
    opts = b.options
    tau = opts.tau if opts.neuron == "lif" else None
    pre = b.call(SeqModule(Affine(opts.amp_factor / scale, None)), args, f"{node.name}_in", node)
    spikes = b.call(IFNeuron(v_threshold=opts.amp_factor, v_init=opts.v_init, tau=tau), (pre,), node.name, node)
    return b.call(SeqModule(Affine(scale, None)), (spikes,), f"{node.name}_out", node)


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
