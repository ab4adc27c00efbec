"""`convert`: any supported model + calibration data → `SpikingModel`."""
from __future__ import annotations

import os
import warnings
from typing import Any

import torch

import bridges
from bridges.keras_to_onnx import keras_file_input_shape

from .build import ConversionReport
from .conversion import get_conversion
from .calibrate import collect_statistics
from .errors import InvalidInputError
from .model import SpikingModel, as_tensor, check_input_shape
from .options import make_options
from .sequence import propagate_shapes


def convert(model: Any, conversion_type: str = "rate", calibration_data: Any = None, *,
            example_input: torch.Tensor | None = None, **options: Any) -> SpikingModel:
    """Convert ``model`` into a spiking neural network.

    ``model``: a `keras.Model`, a path to `.keras`/`.h5`/SavedModel/`.onnx`, an `onnx.ModelProto`
    or a `torch.nn.Module` (then ``example_input`` fixes the input shape).
    ``calibration_data``: inputs in the model's own layout (NHWC for Keras) from which the
    per-layer scales are measured (a few hundred to a few thousand training samples). Without it
    the scales are worst-case bounds from the weights for inputs in ``input_range`` (data-free;
    warned about once, recorded in ``report.approximations``).
    ``options``: see `convert2snn.options.RateOptions` (percentile, per_channel, v_init, neuron,
    tau, encoding, batch_size, seed, strict, progress).

    Everything that can be checked is checked before any slow work: option names and values,
    the calibration data's type and values, then (after the quick import) its shape and the
    layers the conversion type cannot represent. The user's model is never modified.
    """
    opts = make_options(conversion_type, options)
    kind = get_conversion(conversion_type)
    x_cal = None
    if calibration_data is not None:
        x_cal = as_tensor(calibration_data, "calibration_data")
        if x_cal.dim() < 2:
            raise InvalidInputError(f"calibration_data must be a batch (N, ...), got shape {tuple(x_cal.shape)}")
        _check_shape_before_export(model, x_cal)
        if isinstance(model, torch.nn.Module) and example_input is None:
            example_input = x_cal[:1]
    ann = bridges.to_torch(model, example_input)
    info = ann.bridge_info
    if x_cal is not None:
        x_cal = check_input_shape(x_cal, info, "calibration_data")
        if getattr(opts, "encoding", None) == "poisson" and (float(x_cal.min()) < 0 or float(x_cal.max()) > 1):
            raise InvalidInputError("encoding='poisson' needs inputs in [0, 1] (spike probabilities); "
                                    f"calibration_data spans [{float(x_cal.min()):.3g}, {float(x_cal.max()):.3g}]")
    kind.preflight(ann, info.layers)
    probe = x_cal[:2] if x_cal is not None else torch.zeros((2,) + tuple(info.input_shape))
    propagate_shapes(ann, probe)
    shapes = {n.name: tuple(n.meta["tensor_meta"].shape[1:]) for n in ann.graph.nodes if "tensor_meta" in n.meta
              and hasattr(n.meta["tensor_meta"], "shape")}
    report = ConversionReport(conversion_type, opts.as_dict())
    if x_cal is None:
        _warn_data_free()
        scales = kind.data_free_scales(ann, opts, shapes, info.layers, report)
    else:
        nodes = [n.name for n in kind.calibrated_nodes(ann)]
        stats = collect_statistics(ann, x_cal, nodes, min_percentile=kind.min_percentile(opts),
                                   per_channel=getattr(opts, "per_channel", False), batch_size=opts.batch_size,
                                   progress=opts.progress) if nodes else {}
        scales = kind.scales(ann, stats, opts, shapes, info.layers, report)
    return SpikingModel(ann, info, scales, opts, conversion_type, report)


_warned_data_free = False


def _warn_data_free() -> None:
    global _warned_data_free
    if not _warned_data_free:
        _warned_data_free = True
        warnings.warn(
            "convert2snn: no calibration_data given, so the scales come from the weights alone (data-free, "
            "worst-case bounds for inputs in options.input_range). Data-based normalisation reaches the same "
            "accuracy in far fewer timesteps: convert(model, calibration_data=x_train[:1000]).",
            UserWarning, stacklevel=3,
        )


def load(path: Any) -> SpikingModel:
    """Read a model written by `SpikingModel.save`."""
    return SpikingModel.load(path)


def _check_shape_before_export(model: Any, x_cal: torch.Tensor) -> None:
    """For a `.keras` file the input shape is known without TensorFlow: check it before exporting."""
    if not isinstance(model, (str, os.PathLike)):
        return
    expected = keras_file_input_shape(model) if os.path.exists(model) else None
    if expected is not None and tuple(x_cal.shape[1:]) != expected:
        raise InvalidInputError(
            f"calibration_data has per-sample shape {tuple(x_cal.shape[1:])}, but the model expects {expected} "
            "(the Keras model's own layout, e.g. NHWC); pass an array of shape "
            f"(N, {', '.join(map(str, expected))})"
        )
