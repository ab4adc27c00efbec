"""Energy estimates: 45 nm operation energies (Horowitz, ISSCC 2014) for a MAC (ANN) and an accumulate (SNN).

E_SNN = SOPs · E_AC + input MACs · E_MAC (an analog input layer computes its current with MACs, once per
inference), E_ANN = MACs · E_MAC; presets for fp32 / fp16 / int8 or custom values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

ENERGY_PRESETS: dict[str, tuple[float, float]] = {
    # name: (E_MAC, E_AC) in pJ per operation, 45 nm CMOS (Horowitz, ISSCC 2014)
    "45nm-fp32": (4.6, 0.9),
    "45nm-fp16": (1.5, 0.4),
    "45nm-int8": (0.23, 0.03),
}
_PRESET_ALIASES = {"fp32": "45nm-fp32", "fp16": "45nm-fp16", "int8": "45nm-int8", "45nm": "45nm-fp32"}


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in picojoules: a multiply-accumulate (ANN) and an accumulate (SNN synaptic op)."""

    name: str
    e_mac_pj: float
    e_ac_pj: float

    def as_dict(self) -> dict[str, Any]:
        """The model as a JSON-ready dict (name and both energies in pJ)."""
        return {"name": self.name, "e_mac_pj": self.e_mac_pj, "e_ac_pj": self.e_ac_pj}


def energy_model(spec: Any = "45nm-fp32") -> EnergyModel:
    """An `EnergyModel` from a preset name ("fp32", "fp16", "int8", "45nm-fp32", …), a string
    "E_MAC,E_AC" in pJ, a (E_MAC, E_AC) pair, a dict with ``e_mac_pj``/``e_ac_pj``, or an `EnergyModel`."""
    if isinstance(spec, EnergyModel):
        return spec
    if spec is None:
        spec = "45nm-fp32"
    if isinstance(spec, dict):
        try:
            return EnergyModel(str(spec.get("name", "custom")), float(spec["e_mac_pj"]), float(spec["e_ac_pj"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"an energy model dict needs numeric 'e_mac_pj' and 'e_ac_pj', got {spec!r}"
            ) from exc
    if isinstance(spec, str):
        key = _PRESET_ALIASES.get(spec.strip().lower(), spec.strip().lower())
        if key in ENERGY_PRESETS:
            return EnergyModel(key, *ENERGY_PRESETS[key])
        parts = spec.split(",")
        if len(parts) == 2:
            try:
                return _custom(float(parts[0]), float(parts[1]))
            except ValueError:
                pass
        raise InvalidInputError(
            f"unknown energy model {spec!r}: use one of {', '.join(list(_PRESET_ALIASES) + list(ENERGY_PRESETS))} "
            "or 'E_MAC,E_AC' in pJ (e.g. '4.6,0.9')"
        )
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return _custom(float(spec[0]), float(spec[1]))
    raise InvalidInputError(f"cannot make an energy model from {spec!r}")


def _custom(e_mac: float, e_ac: float) -> EnergyModel:
    if not (e_mac >= 0 and e_ac >= 0 and math.isfinite(e_mac) and math.isfinite(e_ac)):
        raise InvalidInputError(
            f"energies per operation must be finite and non-negative, got E_MAC={e_mac}, E_AC={e_ac}"
        )
    return EnergyModel("custom", e_mac, e_ac)


def snn_energy_pj(sops: float, input_macs: float, model: EnergyModel) -> float:
    """Energy of one SNN inference: synaptic ops are accumulates, the analog input layer's work is MACs."""
    return sops * model.e_ac_pj + input_macs * model.e_mac_pj


def ann_energy_pj(macs: float, model: EnergyModel) -> float:
    """Energy of one ANN inference in pJ: every MAC at ``e_mac_pj``."""
    return macs * model.e_mac_pj


__all__ = ["ENERGY_PRESETS", "EnergyModel", "energy_model", "snn_energy_pj", "ann_energy_pj"]
