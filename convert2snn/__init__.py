"""convert2snn: trained Keras / ONNX / PyTorch networks → spiking neural networks in PyTorch.

    import convert2snn
    snn = convert2snn.convert(model, conversion_type="rate", calibration_data=x_train[:1000])
    snn.evaluate(x_test, y_test, timesteps=[8, 16, 32])

The pipeline (`convert2snn.stages`): `bridge` (model → clean torch graph, `bridges`) →
`calibrate` (λ per layer, `statistics`) → `build` (the scheme's rules, `schemes` and `graph`;
neurons in `neurons`) → optionally `tune` (rate, for a target latency: `recipes`) → `SpikingModel`
(`model`: simulation in `simulate`, metrics in `metrics`) → optionally `fine_tune` (training by
backpropagation through time: `finetune`).
`tools` holds the sweep, the SpKeras front end, NIR export and plots; `cli` the command line.
"""

__version__ = "0.1.0"

import importlib  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

# The public names and the module each lives in. They load on first use (PEP 562), so that
# ``import convert2snn`` and the command line's --help, --version and argument errors do not
# import torch (seconds); ``convert2snn.convert(...)`` imports what it needs.
_EXPORTS = {
    "convert": "stages",
    "load": "stages",
    "bridge": "stages",
    "calibrate": "stages",
    "build": "stages",
    "tune": "stages",
    "fine_tune": "finetune",
    "sweep": "tools.sweep",
    "SpikingModel": "model",
    "EvaluationResult": "metrics",
    "ConversionError": "errors",
    "UnsupportedLayerError": "errors",
    "InvalidInputError": "errors",
    "ExportError": "errors",
    "ApproximationError": "errors",
    "SimulationMemoryError": "errors",
}

__all__ = [  # = the keys of _EXPORTS (a test checks), spelled out for linters and type checkers
    "convert",
    "load",
    "bridge",
    "calibrate",
    "build",
    "tune",
    "fine_tune",
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

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported eagerly
    from .errors import (
        ApproximationError,
        ConversionError,
        ExportError,
        InvalidInputError,
        SimulationMemoryError,
        UnsupportedLayerError,
    )
    from .finetune import fine_tune
    from .metrics import EvaluationResult
    from .model import SpikingModel
    from .stages import bridge, build, calibrate, convert, load, tune
    from .tools.sweep import sweep


def __getattr__(name: str) -> Any:
    """A public name (imported from its module on first use) or a submodule (``convert2snn.stages``)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
