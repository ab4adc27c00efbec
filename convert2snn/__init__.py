"""convert2snn: trained Keras / ONNX / PyTorch networks → spiking neural networks in PyTorch.

    import convert2snn
    snn = convert2snn.convert(model, conversion_type="rate", calibration_data=x_train[:1000])
    snn.evaluate(x_test, y_test, timesteps=[8, 16, 32])

The pipeline (`convert2snn.stages`): `bridge` (model → clean torch graph, `bridges`) →
`calibrate` (λ per layer, `statistics`) → `build` (the scheme's rules, `schemes` and `graph`;
neurons in `neurons`) → `SpikingModel` (`model`: simulation in `simulate`, metrics in `metrics`).
`tools` holds the sweep, the SpKeras front end, NIR export and plots; `cli` the command line.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ApproximationError,
    ConversionError,
    ExportError,
    InvalidInputError,
    SimulationMemoryError,
    UnsupportedLayerError,
)
from .metrics import EvaluationResult  # noqa: E402
from .model import SpikingModel  # noqa: E402
from .stages import bridge, build, calibrate, convert, load  # noqa: E402
from .tools.sweep import sweep  # noqa: E402

__all__ = [
    "convert",
    "load",
    "bridge",
    "calibrate",
    "build",
    "sweep",
    "SpikingModel",
    "EvaluationResult",
    "ConversionError",
    "UnsupportedLayerError",
    "InvalidInputError",
    "ExportError",
    "ApproximationError",
    "SimulationMemoryError",
    "__version__",
]
