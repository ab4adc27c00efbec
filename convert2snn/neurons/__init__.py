"""The nodes converted networks are built from: SpikingJelly `BaseNode` / `MemoryModule` subclasses
that declare the interfaces of `convert2snn.neurons.protocol`, and their kernels.

- `rate`: `IFNeuron` (integrate-and-fire, optional leak, reset by subtraction);
- `population`: `PopulationIFNode`, `PopulationActivationNode` (sigmoid / tanh), `PiecePopulationNode` (a
  monotone piece of any scalar activation), `PopulationLSTM`;
- `temporal`: `PhaseNode`, `TTFSNode` and the single-spike code's `StepSynapse`, `CycleDelay`, `CycleMaxPool`,
  `CycleReadout`;
- `common`: `SpikingMaxPool` and `MembraneReadout`, used by every scheme;
- `kernels`: the Triton and Numba scans, chosen by an explicit ``backend``.
"""

from .common import MembraneReadout, SpikingMaxPool
from .population import PiecePopulationNode, PopulationActivationNode, PopulationIFNode, PopulationLSTM
from .protocol import (
    Readout,
    SpikeRouter,
    SpikingNode,
    StatefulNode,
    has_limit,
    is_neuron,
    latency,
    neurons_per_unit,
    set_backend,
    unit_spikes,
)
from .rate import IFNeuron
from .temporal import CycleDelay, CycleMaxPool, CycleReadout, PhaseNode, StepSynapse, TTFSNode

__all__ = [
    "IFNeuron",
    "PopulationIFNode",
    "PopulationActivationNode",
    "PiecePopulationNode",
    "PopulationLSTM",
    "PhaseNode",
    "TTFSNode",
    "StepSynapse",
    "CycleDelay",
    "CycleMaxPool",
    "CycleReadout",
    "SpikingMaxPool",
    "MembraneReadout",
    "SpikingNode",
    "SpikeRouter",
    "Readout",
    "StatefulNode",
    "is_neuron",
    "neurons_per_unit",
    "unit_spikes",
    "has_limit",
    "set_backend",
    "latency",
]
