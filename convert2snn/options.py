"""Conversion options: defaults, validation, and "did you mean" for misspelt names."""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import InvalidInputError

@dataclass
class RateOptions:
    """Options of ``conversion_type="rate"`` (see the README's option table)."""

    percentile: float = 99.9
    """Activation percentile that sets each layer's scale λ (100 = max normalisation). 99.9 beat
    99.99 and 100 at every T ≤ 8 on MNIST (benchmarks/RESULTS.md)."""
    per_channel: bool = True
    """One λ per output channel (False: one per layer). Per channel loses less at T ≤ 4 on MNIST
    (98.95 % vs 98.80 % at T = 4, ANN 99.00 %); it costs nothing at run time (folded into weights)."""
    v_init: float = 0.5
    """Initial membrane potential as a fraction of the threshold (0.5: error centering)."""
    neuron: str = "if"
    """"if" (integrate-and-fire) or "lif" (leaky, with ``tau``)."""
    tau: float = 100.0
    """Membrane time constant in steps for ``neuron="lif"``."""
    encoding: str = "analog"
    """Input coding: "analog" (the input is a constant current) or "poisson" (inputs in [0, 1])."""
    amp_factor: float = 1.0
    """SpKeras "current normalisation": currents into each neuron and its threshold are both multiplied
    by ``amp_factor`` (spikes are unchanged up to float rounding; for hardware with a fixed range)."""
    thresholding: float | None = None
    """SpKeras's name for ``v_init`` (its 0.5 default is error centering); overrides ``v_init`` when set."""
    signed_bit: int = 0
    """Quantise each layer's weights to ``signed_bit``-bit signed integers times one scale per layer
    (0: off). The scale is folded into the next neuron's threshold, so integer hardware needs no
    other change (unlike SpKeras, whose integer threshold uses the wrong normalisation)."""
    input_range: tuple[float, float] = (0.0, 1.0)
    """Range of every input value, used only without calibration data (data-free bounds)."""
    batch_size: int = 256
    """Batch size for calibration and simulation."""
    seed: int = 0
    """Seed for Poisson input (bit-identical results for the same seed)."""
    strict: bool = False
    """Raise instead of recording an approximation in the conversion report."""
    progress: bool = True
    """tqdm progress bars (shown only on a terminal)."""

    def validate(self) -> None:
        if not 0.0 < self.percentile <= 100.0:
            raise InvalidInputError(f"percentile must be in (0, 100], got {self.percentile}")
        if not 0.0 <= self.v_init < 1.0:
            raise InvalidInputError(f"v_init is a fraction of the threshold in [0, 1), got {self.v_init}")
        if self.neuron not in ("if", "lif"):
            raise InvalidInputError(f"neuron must be 'if' or 'lif', got {self.neuron!r}")
        if self.neuron == "lif" and not self.tau > 1.0:
            raise InvalidInputError(f"tau must be > 1 (steps) for a LIF neuron, got {self.tau}")
        if self.encoding not in ("analog", "poisson"):
            raise InvalidInputError(f"encoding must be 'analog' or 'poisson', got {self.encoding!r}")
        if not self.amp_factor > 0:
            raise InvalidInputError(f"amp_factor must be positive, got {self.amp_factor}")
        if self.thresholding is not None:
            if not 0.0 <= self.thresholding < 1.0:
                raise InvalidInputError(f"thresholding (the initial potential as a fraction of the threshold) must be in [0, 1), got {self.thresholding}")
            self.v_init = float(self.thresholding)
        if not (int(self.signed_bit) == 0 or 2 <= int(self.signed_bit) <= 32):
            raise InvalidInputError(f"signed_bit must be 0 (off) or 2..32, got {self.signed_bit}")
        if len(tuple(self.input_range)) != 2 or not float(self.input_range[0]) < float(self.input_range[1]):
            raise InvalidInputError(f"input_range must be (low, high) with low < high, got {self.input_range!r}")
        self.input_range = (float(self.input_range[0]), float(self.input_range[1]))
        if int(self.batch_size) < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {self.batch_size}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_options(conversion_type: str, options: dict[str, Any]):
    """Build and validate a conversion type's options, naming any unknown option with a suggestion."""
    from .conversion import get_conversion

    cls = get_conversion(conversion_type).options
    known = [f.name for f in fields(cls)]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known options: {', '.join(known)}."
            raise InvalidInputError(f"unknown option {name!r} for conversion_type={conversion_type!r}.{hint}")
    opts = cls(**options)
    opts.validate()
    return opts
