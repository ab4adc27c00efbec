"""`ConversionReport`: what a conversion did — scales, approximations, notes — kept with the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .inputs import InputRange

if TYPE_CHECKING:
    import torch


def scale_summary(lam: torch.Tensor) -> dict[str, float]:
    """A λ as the report shows it: {"lambda"} for one value, {"min", "mean", "max"} per channel."""
    flat = lam.reshape(-1)
    if flat.numel() == 1:
        return {"lambda": float(flat[0])}
    return {"min": float(flat.min()), "mean": float(flat.mean()), "max": float(flat.max())}


@dataclass
class ConversionReport:
    """What a conversion did: scales, approximations (each also checked against ``strict``), notes."""

    conversion_type: str
    options: dict[str, Any]
    # layer → {"lambda"} | {"min", "mean", "max"} (per channel) | {"low", "high"} (an input range)
    scales: dict[str, dict[str, float]] = field(default_factory=dict)
    approximations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the calibration inputs' range and dtype (`convert2snn.inputs.InputRange.as_dict`): inputs far
    # outside it get a warning from predict / evaluate
    calibration_inputs: dict[str, Any] | None = None
    # a conversion tuned for a latency (`convert2snn.stages.tune`): the target T, the recipes, the
    # calibration samples and seconds they used, and each layer's output error before / after
    tuning: dict[str, Any] | None = None
    # every fine-tuning run (`convert2snn.finetune`), in order: T, epochs, data, optimizer, the accuracy at T
    # before and after, and the per-epoch history
    fine_tuning: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (saved with the model; `ConversionReport(**d)` reads it back)."""
        return {
            "conversion_type": self.conversion_type,
            "options": self.options,
            "scales": self.scales,
            "approximations": self.approximations,
            "notes": self.notes,
            "calibration_inputs": self.calibration_inputs,
            "tuning": self.tuning,
            "fine_tuning": self.fine_tuning,
        }

    def __str__(self) -> str:
        lines = [f"conversion: {self.conversion_type}"]
        if self.calibration_inputs:
            lines.append(f"  calibrated on: {InputRange.from_dict(self.calibration_inputs)}")
        for layer, s in self.scales.items():
            if set(s) == {"low", "high"}:
                lines.append(f"  input range[{layer}] = [{s['low']:.4g}, {s['high']:.4g}]")
            else:
                lines.append(f"  λ[{layer}] = " + ", ".join(f"{k}={v:.4g}" for k, v in s.items()))
        if self.tuning:
            t = self.tuning
            spent = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in t["seconds"].items())
            tried = ", ".join(f"{name} {share:.1%}" for name, share in t["agreement"].items())
            lines.append(
                f"  tuned for T = {t['timesteps']} with {'+'.join(t['recipes']) or 'nothing (untuned was best)'} "
                f"({t['chosen_by']}{': ' + tried if tried else ''}) on {t['samples']} calibration samples "
                f"({spent}); layer output error vs the ANN {t['error_before']:.4g} → {t['error_after']:.4g}"
            )
        for run in self.fine_tuning:
            learned = f"; learned {' and '.join(run['learned'])}" if run["learned"] else ""
            rate = "" if run["lr"] is None else f", lr {run['lr']:g}"
            lines.append(
                f"  fine-tuned at T = {run['timesteps']} for {run['epochs']} epoch(s) on {run['samples']} samples "
                f"({run['optimizer']}{rate}, surrogate {run['surrogate']}{learned}): accuracy at T "
                f"{run['accuracy_before']:.2%} → {run['accuracy_after']:.2%} on {run['measured_on']} "
                f"({run['seconds']:.0f} s)"
            )
        lines += [f"  approximation: {a}" for a in self.approximations]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
