"""Defaults shared by the API and the command line, in one place.

Torch-free on purpose: the command line reads them for ``--help`` before it imports anything heavy.
"""

# The timesteps `SpikingModel.evaluate` and the CLI report when none are asked for (one simulation up
# to the largest serves all); a code with a latency (single-spike temporal) reports that instead.
DEFAULT_TIMESTEPS = (4, 8, 16, 32)

# The steps of a single-T method (`SpikingModel.predict`, `spike_counts`) for a code without a latency.
DEFAULT_STEPS = 32

# The energy model of evaluations (`convert2snn.metrics.energy_model`).
DEFAULT_ENERGY = "45nm-fp32"
