"""convert2snn: trained Keras / ONNX / PyTorch networks → spiking neural networks in PyTorch.

    import convert2snn
    snn = convert2snn.convert(model, conversion_type="rate", calibration_data=x_train[:1000])
    snn.evaluate(x_test, y_test, timesteps=[8, 16, 32])

Pipeline (one module per stage): `bridges` (model → clean torch graph), `calibrate`
(activation statistics → λ), `build` + `rate` (neuron replacement, weight normalisation),
`simulate` (time-chunked multi-step simulation), `model` (the user-facing `SpikingModel`).
"""
from .convert import convert, load
from .errors import (ApproximationError, ConversionError, ExportError, InvalidInputError, SimulationMemoryError,
                     UnsupportedLayerError)
from .model import EvaluationResult, SpikingModel
from .sweep import sweep

__version__ = "0.1.0"

__all__ = ["convert", "load", "sweep", "SpikingModel", "EvaluationResult", "ConversionError", "UnsupportedLayerError",
           "InvalidInputError", "ExportError", "ApproximationError", "SimulationMemoryError", "__version__"]
