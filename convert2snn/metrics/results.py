"""`EvaluationResult`: accuracy at every T with the ANN's, spikes, SOPs, energy, time-to-accuracy and
per-layer correlation — printed as a table, written as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .energy import ann_energy_pj, energy_model, snn_energy_pj


def time_to_accuracy(timesteps: list[int], accuracy: list[float], ann_accuracy: float, tolerance: float) -> int | None:
    """The first requested T whose accuracy is within ``tolerance`` (a fraction, 0.01 = 1 pp) of the ANN's."""
    for t, a in zip(timesteps, accuracy):
        if a >= ann_accuracy - tolerance - 1e-12:
            return int(t)
    return None


def _si(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _joules(pj: float | None) -> str:
    if pj is None:
        return "—"
    for factor, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= factor:
            return f"{pj / factor:.3g} {unit}"
    return f"{pj:.3g} pJ"


@dataclass
class EvaluationResult:
    """Accuracy at every requested T from one simulation, with the ANN's accuracy, spikes, SOPs and energy.

    All counts are per inference (averaged over the samples). ``layer_*`` dicts are keyed by neuron layer.
    """

    timesteps: list[int]
    accuracy: list[float]
    ann_accuracy: float
    spikes_per_neuron: list[float]  # mean spikes per neuron per inference, up to each T
    layer_spikes_per_neuron: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0
    neurons: dict[str, int] = field(default_factory=dict)
    sops: list[float] = field(default_factory=list)  # synaptic operations per inference, up to each T
    layer_sops: dict[str, list[float]] = field(default_factory=dict)  # by the neuron layer that spiked
    input_macs: float = 0.0  # MACs of the analog input layer(s), once per inference
    ann_macs: float = 0.0
    layer_macs: dict[str, float] = field(default_factory=dict)  # ANN Conv/Linear layers
    energy_model: dict[str, Any] = field(default_factory=lambda: energy_model().as_dict())
    snn_energy_pj: list[float] = field(default_factory=list)
    ann_energy_pj: float = 0.0
    time_to_accuracy: dict[str, int | None] = field(default_factory=dict)  # "1pp" / "0.1pp" → T or None
    layer_correlation: dict[str, list[float | None]] = field(default_factory=dict)

    def accuracy_at(self, t: int) -> float:
        """The SNN accuracy at the requested timestep ``t`` (ValueError if ``t`` was not evaluated)."""
        return self.accuracy[self.timesteps.index(t)]

    def with_energy(self, spec: Any) -> EvaluationResult:
        """The same result with energies under another energy model (preset name or custom values)."""
        model = energy_model(spec)
        return replace(
            self,
            energy_model=model.as_dict(),
            snn_energy_pj=[snn_energy_pj(s, self.input_macs, model) for s in self.sops],
            ann_energy_pj=ann_energy_pj(self.ann_macs, model),
        )

    def energy_ratio(self) -> list[float | None]:
        """E_SNN / E_ANN at each T."""
        return [e / self.ann_energy_pj if self.ann_energy_pj else None for e in self.snn_energy_pj]

    def as_dict(self) -> dict[str, Any]:
        """Every field, plus the derived ``energy_ratio``, as a JSON-ready dict."""
        return {
            "timesteps": self.timesteps,
            "accuracy": self.accuracy,
            "ann_accuracy": self.ann_accuracy,
            "spikes_per_neuron": self.spikes_per_neuron,
            "layer_spikes_per_neuron": self.layer_spikes_per_neuron,
            "samples": self.samples,
            "neurons": self.neurons,
            "sops": self.sops,
            "layer_sops": self.layer_sops,
            "input_macs": self.input_macs,
            "ann_macs": self.ann_macs,
            "layer_macs": self.layer_macs,
            "energy_model": self.energy_model,
            "snn_energy_pj": self.snn_energy_pj,
            "ann_energy_pj": self.ann_energy_pj,
            "energy_ratio": self.energy_ratio(),
            "time_to_accuracy": self.time_to_accuracy,
            "layer_correlation": self.layer_correlation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        """A result rebuilt from `as_dict`'s output (keys that are not fields, e.g. ``energy_ratio``, are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as indented JSON, also written to ``path`` when given."""
        text = json.dumps(self.as_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None, per_layer: bool = False) -> str:
        """One row per T (``per_layer=True``: one row per T and neuron layer)."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        if per_layer:
            writer.writerow(["T", "layer", "neurons", "spikes_per_neuron", "sops", "correlation"])
            for i, t in enumerate(self.timesteps):
                for layer, spikes in self.layer_spikes_per_neuron.items():
                    r = self.layer_correlation.get(layer, [None] * len(self.timesteps))[i]
                    sops = self.layer_sops.get(layer, [None] * len(self.timesteps))[i]
                    writer.writerow(
                        [
                            t,
                            layer,
                            self.neurons.get(layer, ""),
                            f"{spikes[i]:.6f}",
                            "" if sops is None else f"{sops:.1f}",
                            "" if r is None else f"{r:.6f}",
                        ]
                    )
        else:
            writer.writerow(
                [
                    "T",
                    "accuracy",
                    "ann_accuracy",
                    "spikes_per_neuron",
                    "sops",
                    "snn_energy_pj",
                    "ann_energy_pj",
                    "energy_ratio",
                ]
            )
            ratios = self.energy_ratio()
            for i, (t, a, s) in enumerate(zip(self.timesteps, self.accuracy, self.spikes_per_neuron)):
                sops = self.sops[i] if i < len(self.sops) else None
                energy = self.snn_energy_pj[i] if i < len(self.snn_energy_pj) else None
                ratio = ratios[i] if i < len(ratios) else None
                writer.writerow(
                    [
                        t,
                        f"{a:.6f}",
                        f"{self.ann_accuracy:.6f}",
                        f"{s:.6f}",
                        "" if sops is None else f"{sops:.1f}",
                        "" if energy is None else f"{energy:.1f}",
                        f"{self.ann_energy_pj:.1f}",
                        "" if ratio is None else f"{ratio:.6f}",
                    ]
                )
        if path is not None:
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()

    def __str__(self) -> str:
        em = self.energy_model
        lines = [f"ANN accuracy: {100 * self.ann_accuracy:.2f} %  ({self.samples} samples)"]
        if self.ann_macs:
            lines.append(
                f"ANN: {_si(self.ann_macs, 'MAC')} per inference = {_joules(self.ann_energy_pj)}   "
                f"(energy model {em['name']}: E_MAC {em['e_mac_pj']} pJ, E_AC {em['e_ac_pj']} pJ)"
            )
        has_sops = len(self.sops) == len(self.timesteps)
        header = f"{'T':>6} {'SNN acc %':>10} {'loss pp':>8} {'spikes/neuron':>14}"
        if has_sops:
            header += f" {'SOPs':>10} {'E_SNN':>10} {'E_SNN/E_ANN':>12}"
        lines.append(header)
        ratios = self.energy_ratio()
        for i, (t, a, s) in enumerate(zip(self.timesteps, self.accuracy, self.spikes_per_neuron)):
            row = f"{t:>6} {100 * a:>10.2f} {100 * (self.ann_accuracy - a):>8.2f} {s:>14.3f}"
            if has_sops:
                ratio = ratios[i] if i < len(ratios) else None
                row += (
                    f" {_si(self.sops[i], ''):>10} {_joules(self.snn_energy_pj[i]) if self.snn_energy_pj else '—':>10}"
                    f" {'—' if ratio is None else f'{ratio:.3f}':>12}"
                )
            lines.append(row)
        if self.time_to_accuracy:
            parts = []
            for key, label in (("1pp", "1 pp"), ("0.1pp", "0.1 pp")):
                t = self.time_to_accuracy.get(key)
                parts.append(
                    f"within {label} of the ANN at T={t}" if t else f"not within {label} up to T={max(self.timesteps)}"
                )
            lines.append("time to accuracy: " + "; ".join(parts))
        if self.layer_spikes_per_neuron:
            t = self.timesteps[-1]
            lines.append(f"per layer at T={t}:")
            lines.append(
                f"  {'layer':<24} {'neurons':>8} {'spikes/neuron':>14} {'rate/step':>10} {'SOPs':>10} "
                f"{'r(ANN,SNN)':>11}"
            )
            for layer, spikes in self.layer_spikes_per_neuron.items():
                r = self.layer_correlation.get(layer, [None])[-1]
                sops = self.layer_sops.get(layer, [None])[-1]
                lines.append(
                    f"  {layer[:24]:<24} {self.neurons.get(layer, 0):>8} {spikes[-1]:>14.3f} {spikes[-1] / t:>10.4f}"
                    f" {_si(sops, ''):>10} {'—' if r is None else f'{r:.4f}':>11}"
                )
        return "\n".join(lines)


__all__ = ["EvaluationResult", "time_to_accuracy"]
