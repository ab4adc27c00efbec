"""Metrics of a converted SNN: operation counts, energy, per-sample statistics and the result table.

- `ops`: the ANN's MACs, the analog input layer's MACs, every neuron's fan-out (synapses driven);
- `energy`: energy per operation presets and the SNN / ANN energy estimates;
- `sinks`: per-sample receivers of the simulation's spike counts (histogram, ANN↔SNN correlation);
- `results`: `EvaluationResult`, time-to-accuracy.

Everything that counts spikes goes through the simulation's spike counter (`convert2snn.simulate`);
these modules supply what the counts are multiplied with and the table they end up in.
"""

from .energy import ENERGY_PRESETS, EnergyModel, ann_energy_pj, energy_model, snn_energy_pj
from .ops import ann_macs, fan_out, input_layer_macs, module_macs, node_shape
from .results import EvaluationResult, time_to_accuracy
from .sinks import Correlation, Histogram, SampleCounts, correlation_pairs

__all__ = [
    "ENERGY_PRESETS",
    "EnergyModel",
    "energy_model",
    "fan_out",
    "ann_macs",
    "input_layer_macs",
    "module_macs",
    "node_shape",
    "time_to_accuracy",
    "EvaluationResult",
    "Histogram",
    "Correlation",
    "SampleCounts",
    "snn_energy_pj",
    "ann_energy_pj",
    "correlation_pairs",
]
