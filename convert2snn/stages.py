"""The conversion pipeline as public verbs, each with an artefact that can be inspected and tested:

    ann = bridge(model)                              # clean torch.fx ANN (with .bridge_info)
    scheme = schemes.create("rate", {...})           # the options, validated, and the scheme's rules
    calibration = calibrate(ann, x_calib, scheme)    # λ per activation (+ the statistics behind them)
    snn = build(ann, calibration, scheme)            # SpikingModel: the SNN, checked for exactness
    snn = tune(snn, x_calib, timesteps=8)            # optional: tuned for a latency (rate; recipes)

`convert` is these steps with everything checked before any slow work: option names and values,
the calibration data, the input shape (for a .keras file before TensorFlow starts), then every
layer against the scheme. `load` rebuilds a saved model. The sweep, the SpKeras front end and
the command line call these verbs.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx

import bridges
from bridges.canonicalize import BridgeInfo
from bridges.keras_to_onnx import keras_file_input_shape

from . import schemes
from .errors import InvalidInputError
from .graph.serialize import graph_from_spec
from .inputs import InputRange, as_tensor, check_input_shape
from .model import FORMAT_NAME, FORMAT_VERSION, SpikingModel
from .progress import status
from .recipes import AUTO_CANDIDATES, tune_layers
from .report import ConversionReport, scale_summary
from .schemes.base import Scheme
from .sequence import propagate_shapes
from .statistics import LayerStatistics, collect_statistics, input_key, measured_key

# Calibration samples on which the bridge checks the clean ANN against the model (in its own range).
CHECK_SAMPLES = 4


@dataclass
class Calibration:
    """What `calibrate` measured: λ per calibrated ANN node, and the report entries so far (λ per
    layer, notes, approximations). ``statistics`` (empty without data) can serve another scheme's
    percentile without a second pass over the data (`calibrate(..., statistics=...)`)."""

    scales: dict[str, torch.Tensor]
    report: ConversionReport
    statistics: dict[str, LayerStatistics] = field(default_factory=dict)
    samples: int = 0


def bridge(model: Any, example_input: Any = None, check_inputs: Any = None, progress: bool = True) -> fx.GraphModule:
    """The clean ANN of ``model``: a `keras.Model`, a path to `.keras`/`.h5`/SavedModel/`.onnx`, an
    `onnx.ModelProto`, a `torch.nn.Module` (``example_input`` fixes its input shape), or an ANN that
    is already bridged (returned as it is: `bridge(snn.ann)` is `snn.ann`). ``check_inputs``: a few
    inputs in the model's own layout and range (e.g. calibration samples) on which the clean graph
    is checked against the model, besides random ones. ``progress``: a status line for each phase
    longer than a second (the Keras export, the ONNX import), on a terminal."""
    if isinstance(model, fx.GraphModule) and isinstance(getattr(model, "bridge_info", None), BridgeInfo):
        return model
    if isinstance(model, torch.nn.Module) and example_input is not None:
        example_input = as_tensor(example_input, "example_input")
    if check_inputs is not None:
        check_inputs = as_tensor(check_inputs, "check_inputs")
    return bridges.to_torch(model, example_input, check_inputs=check_inputs, progress=progress)


def calibrate(
    ann: fx.GraphModule, data: Any, scheme: Scheme, *, statistics: dict[str, LayerStatistics] | None = None
) -> Calibration:
    """λ per activation of ``ann`` for ``scheme`` from calibration ``data`` (the ORIGINAL model's
    layout, e.g. NHWC for Keras; a few hundred to a few thousand training samples).

    ``data=None``: data-free scales, worst-case bounds for inputs in ``input_range`` (warned about
    once per process, recorded as an approximation). ``statistics`` from an earlier calibration on
    the same data skip the pass over the data (they must have kept the percentile asked for).
    """
    info = _bridge_info(ann)
    opts = scheme.options
    report = ConversionReport(scheme.name, opts.as_dict())
    if data is None:
        _warn_data_free()
        propagate_shapes(ann, torch.zeros((2,) + tuple(info.input_shape)))
        scales = scheme.data_free_scales(ann, _shapes(ann), info.layers, report)
        report.calibration_inputs = InputRange(None, *opts.input_range, 0).as_dict()
        return Calibration(scales, report)
    x = check_input_shape(as_tensor(data, "calibration_data"), info, "calibration_data")
    scheme.check_calibration_data(x)
    report.calibration_inputs = _calibration_range(data, x, opts.strict).as_dict()
    propagate_shapes(ann, x[:2])
    nodes = [n.name for n in scheme.calibrated_nodes(ann)]
    ranged = [n.name for n in scheme.ranged_nodes(ann, info.layers)]
    if statistics is not None and not all(input_key(name) in statistics for name in ranged):
        statistics = None  # statistics of another scheme, without the input ranges this one needs
    if statistics is None:
        statistics = (
            collect_statistics(
                ann,
                x,
                nodes,
                min_percentile=opts.percentile,
                per_channel=opts.per_channel,
                batch_size=opts.batch_size,
                progress=opts.progress,
                input_ranges=ranged,
            )
            if nodes or ranged
            else {}
        )
    scales = scheme.scales(ann, statistics, _shapes(ann), info.layers, report)
    return Calibration(scales, report, statistics, int(x.shape[0]))


def build(ann: fx.GraphModule, calibration: Calibration, scheme: Scheme) -> SpikingModel:
    """The SNN of ``ann`` with ``calibration``'s scales, built by ``scheme``, normalised and checked
    against the λ-clipped ANN; the user-facing `SpikingModel`."""
    _bridge_info(ann)
    scheme = type(scheme)(copy.deepcopy(scheme.options))  # each model its own options (simulations read them)
    report = copy.deepcopy(calibration.report)
    with status("building the spiking network and checking its limit against the ANN", scheme.options.progress):
        network = _network(ann, calibration.scales, scheme, report)
    return SpikingModel(ann, network, calibration.scales, scheme, report, calibration_report=calibration.report)


def tune(
    snn: SpikingModel,
    data: Any,
    timesteps: int | None = None,
    recipes: str | None = None,
    samples: int | None = None,
) -> SpikingModel:
    """A rate-coded ``snn`` tuned for ``timesteps`` steps on calibration ``data`` (the model's own layout,
    no labels): each neuron layer, in the network's order, tuned on its actual input by the recipes of
    `convert2snn.recipes`. ``recipes``: names joined by '+' (e.g. "threshold+bias"), or "auto":
    each of `AUTO_CANDIDATES` (untuned included) is tried, and a recipe is kept only where its T-step
    predictions agree with the ANN's on clearly more held-out calibration samples (up to 16384 / T
    of those the tuning did not use) than the untuned network's and the previous best's (paired
    counts, two standard deviations). Returns a new `SpikingModel`
    whose report says what was tuned, on how many samples, in how long; ``snn`` is not changed.
    Arguments left None come from ``snn``'s options."""
    if snn.conversion_type != "rate":
        raise InvalidInputError(
            f"tuning for a latency is defined for conversion_type='rate' (this model is {snn.conversion_type!r}): "
            "population and temporal codes are set by n / period instead"
        )
    if snn.report.fine_tuning:
        raise InvalidInputError(
            "this model was fine-tuned (report.fine_tuning): tune rebuilds the SNN from the ANN and would discard "
            "the trained weights; tune first, then fine-tune the tuned model"
        )
    changes = {
        key: value
        for key, value in (("timesteps", timesteps), ("recipes", recipes), ("tuning_samples", samples))
        if value is not None
    }
    options = schemes.create("rate", {**snn.options.as_dict(), **changes}).options
    if not options.tuned:
        raise InvalidInputError(
            "tune needs a target latency and a recipe: e.g. tune(snn, x, timesteps=8) (recipes='auto')"
        )
    x = check_input_shape(as_tensor(data, "calibration_data"), snn.bridge_info, "calibration_data")
    report = copy.deepcopy(snn.calibration_report)
    # a tuned model is tuned again from the λ calibration measured
    measured = {k: snn.scales.get(measured_key(k), v) for k, v in snn.scales.items() if ":" not in k}
    start = snn if len(measured) == len(snn.scales) else build(snn.ann, Calibration(measured, report), snn.scheme)
    automatic = str(options.recipes).strip().lower() == "auto"
    candidates = AUTO_CANDIDATES if automatic else (options.recipe_names(),)
    if options.nir_target is not None:  # NIR states no per-channel initial potential
        candidates = tuple(c for c in candidates if "potential" not in c)
    tried: dict[str, float] = {}
    spent: dict[str, float] = {}
    best = untuned = None
    predicted: dict[int, torch.Tensor] = {}  # the ANN's labels of the comparison samples, computed once
    for names in candidates:
        result = tune_layers(
            start, x, options.timesteps, names, samples=options.tuning_samples, progress=options.progress
        )
        for name, seconds in result.seconds.items():
            spent[name] = spent.get(name, 0.0) + seconds
        if not automatic:
            best = (names, result, None)
            break
        agrees = _selection_agreement(start, snn.ann, data, x, result, options, report, predicted)
        tried["+".join(names) or "none"] = float(agrees.float().mean())
        if not names:
            untuned = agrees
        # a candidate replaces the best so far only when it agrees with the ANN on clearly more samples
        # (paired: gained minus lost above 2 standard deviations), so that noise does not pick a recipe
        if best is None or _clearly_better(agrees, best[2]) and (untuned is None or _clearly_better(agrees, untuned)):
            best = (names, result, agrees)
    names, result, _ = best
    report.options = options.as_dict()
    report.tuning = _tuning_entry(options.timesteps, names, result, tried, spent, automatic)
    if not names:  # untuned won: the model as it was, with the comparison in its report
        return build(snn.ann, Calibration(measured, report), type(snn.scheme)(options))
    layers = snn.ann.bridge_info.layers
    for node in measured:
        report.scales[layers.get(node, node)] = scale_summary(result.scales[node])
    return build(snn.ann, Calibration(result.scales, report), type(snn.scheme)(options))


# Held-out calibration samples on which recipes="auto" compares its candidates: up to this many
# sample-steps (samples × T), at least `SELECTION_MIN` samples, else the tuning samples themselves.
SELECTION_STEPS = 16384
SELECTION_MIN = 256


@torch.no_grad()
def _selection_agreement(
    start: SpikingModel,
    ann: fx.GraphModule,
    data: Any,
    x: torch.Tensor,
    result,
    options,
    report: ConversionReport,
    predicted: dict[int, torch.Tensor],
) -> torch.Tensor:
    """Per sample: does the candidate's T-step prediction equal the ANN's? On calibration samples the
    tuning did not see (fewer for larger T), so that a recipe is not chosen for fitting its own samples;
    on the tuning samples (the pass's own outputs) when too few are left over."""
    steps = options.timesteps
    held_out = min(x.shape[0] - result.samples, max(SELECTION_MIN, SELECTION_STEPS // steps))
    if held_out < SELECTION_MIN:
        outputs, x_sel = result.outputs, x[: result.samples]
    else:
        x_sel = x[result.samples : result.samples + held_out]
        candidate = build(start.ann, Calibration(result.scales, report), type(start.scheme)(options))
        outputs = torch.as_tensor(candidate.predict(data[result.samples : result.samples + held_out], timesteps=steps))
    key = x_sel.shape[0]  # every candidate compares on the same samples: the ANN runs on them once
    if key not in predicted:
        size = options.batch_size
        predicted[key] = torch.cat([ann(x_sel[i : i + size]) for i in range(0, key, size)]).argmax(1)
    return outputs.reshape(outputs.shape[0], -1).argmax(1) == predicted[key]


def _clearly_better(agrees: torch.Tensor, other: torch.Tensor) -> bool:
    """``agrees`` beats ``other`` on the same samples by more than twice the noise of a paired count."""
    gained = int((agrees & ~other).sum())
    lost = int((other & ~agrees).sum())
    return gained - lost > 2.0 * (gained + lost) ** 0.5


def _tuning_entry(
    timesteps: int,
    names: tuple[str, ...],
    result,
    tried: dict[str, float],
    spent: dict[str, float],
    automatic: bool,
) -> dict:
    """The report's record of a tuning (see `ConversionReport.tuning`); ``spent``: seconds per recipe over
    every candidate tried (the shared simulation under "simulation")."""
    before = [b for b, _ in result.errors.values()]
    after = [a for _, a in result.errors.values()]
    return {
        "timesteps": timesteps,
        "recipes": list(names),
        "chosen_by": "agreement with the ANN on held-out calibration samples" if automatic else "recipes option",
        "agreement": tried,  # candidate → fraction of held-out calibration samples predicted as the ANN does, at T
        "samples": result.samples,
        "seconds": {name: round(seconds, 3) for name, seconds in spent.items()},
        "error_before": sum(before) / max(len(before), 1),
        "error_after": sum(after) / max(len(after), 1),
        "layers": {layer: {"before": b, "after": a} for layer, (b, a) in result.errors.items()},
    }


def convert(
    model: Any,
    conversion_type: str = "rate",
    calibration_data: Any = None,
    *,
    example_input: torch.Tensor | None = None,
    **options: Any,
) -> SpikingModel:
    """Convert ``model`` into a spiking neural network: `bridge` → `calibrate` → `build`.

    ``model``: a `keras.Model`, a path to `.keras`/`.h5`/SavedModel/`.onnx`, an `onnx.ModelProto`,
    a `torch.nn.Module` (then ``example_input`` fixes the input shape, or the first calibration
    sample does), or an already bridged ANN (`bridge`, `SpikingModel.ann`).
    ``calibration_data``: inputs in the model's own layout (NHWC for Keras) from which the
    per-layer scales are measured (a few hundred to a few thousand training samples). Without it
    the scales are worst-case bounds from the weights for inputs in ``input_range`` (data-free;
    warned about once, recorded in ``report.approximations``).
    ``options``: the scheme's options (`convert2snn.schemes.RateOptions`, `PopulationOptions`,
    `TemporalOptions`): percentile, per_channel, neuron, n, code, period, batch_size, seed, ...

    Everything that can be checked is checked before any slow work: option names and values,
    the calibration data's type and values, then (after the quick import) its shape and the
    layers the conversion type cannot represent. The user's model is never modified.
    """
    scheme = schemes.create(conversion_type, options)
    if calibration_data is None and scheme.name == "rate" and scheme.options.tuned:
        raise InvalidInputError(
            f"timesteps={scheme.options.timesteps} tunes the conversion on calibration data: pass calibration_data "
            "(a few hundred training inputs; no labels needed)"
        )
    x_cal = None
    if calibration_data is not None:
        x_cal = as_tensor(calibration_data, "calibration_data")
        if x_cal.dim() < 2:
            raise InvalidInputError(f"calibration_data must be a batch (N, ...), got shape {tuple(x_cal.shape)}")
        _check_shape_before_export(model, x_cal)
        if isinstance(model, torch.nn.Module) and example_input is None:
            example_input = x_cal[:1]
        calibrated_on = _calibration_range(calibration_data, x_cal, scheme.options.strict)
    ann = bridge(
        model,
        example_input,
        check_inputs=None if x_cal is None else x_cal[:CHECK_SAMPLES],
        progress=scheme.options.progress,
    )
    if x_cal is not None:
        scheme.check_calibration_data(check_input_shape(x_cal, ann.bridge_info, "calibration_data"))
    scheme.check(ann, ann.bridge_info.layers)
    calibration = calibrate(ann, x_cal, scheme)
    if x_cal is not None:  # the dtype as the user passed it, not the float32 copy's
        calibration.report.calibration_inputs = calibrated_on.as_dict()
    snn = build(ann, calibration, scheme)
    if scheme.name == "rate" and scheme.options.tuned:
        snn = tune(snn, x_cal)
    return snn


def _calibration_range(data: Any, x: torch.Tensor, strict: bool) -> InputRange:
    """The calibration inputs' range, with a warning (an error with ``strict``) for integer data
    that looks like unscaled images."""
    calibrated_on = InputRange.of(data, x)
    if (unscaled := calibrated_on.unscaled_warning("calibration_data")) is not None:
        if strict:
            raise InvalidInputError(unscaled + " (strict=True)")
        warnings.warn(f"convert2snn: {unscaled}", UserWarning, stacklevel=3)
    return calibrated_on


def load(path: str | os.PathLike) -> SpikingModel:
    """Read a model written by `SpikingModel.save` (no code from the file is executed)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"'{path}' does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta"])
    except Exception as exc:  # noqa: BLE001 - torch.load and json raise many kinds for junk files
        raise InvalidInputError(f"'{path}' is not a convert2snn model file (or it is truncated): {exc}") from exc
    if meta.get("format") != FORMAT_NAME:
        raise InvalidInputError(f"'{path}' is not a convert2snn model file")
    if meta.get("version") != FORMAT_VERSION:
        raise InvalidInputError(
            f"'{path}' has format version {meta.get('version')}; this convert2snn reads version {FORMAT_VERSION}. "
            "Convert the model again with this version."
        )
    ann = graph_from_spec(meta["ann"], payload["ann_state"])
    ann.bridge_info = BridgeInfo.from_dict(meta["bridge_info"])
    scheme = schemes.create(meta["conversion_type"], meta["options"])
    scales = dict(payload["scales"])
    built = ConversionReport(scheme.name, scheme.options.as_dict())
    network = _network(ann, scales, scheme, built)
    # files written before the folded scales' modules were removed also hold those (unused) buffers
    missing = network.load_state_dict(payload["snn_state"], strict=False).missing_keys
    if missing:
        raise InvalidInputError(f"'{path}' lacks the network's {', '.join(missing[:5])}: it is truncated or damaged")
    report = ConversionReport(**meta["report"])
    calibration_report = copy.deepcopy(report)  # the report before building: without what building adds
    calibration_report.notes = [note for note in report.notes if note not in built.notes]
    calibration_report.tuning = None
    return SpikingModel(ann, network, scales, scheme, report, calibration_report=calibration_report)


def _network(
    ann: fx.GraphModule, scales: dict[str, torch.Tensor], scheme: Scheme, report: ConversionReport
) -> fx.GraphModule:
    """The scheme's SNN graph of ``ann``, normalised and checked (`Scheme.finish`)."""
    info: BridgeInfo = ann.bridge_info
    scheme.check(ann, info.layers)
    snn = scheme.build(ann, scales, report, info.layers)
    example = torch.randn((2,) + tuple(info.input_shape), generator=torch.Generator().manual_seed(0))
    scheme.finish(snn, ann, scales, report, example)
    return snn


def _bridge_info(ann: Any) -> BridgeInfo:
    """The `BridgeInfo` of an ANN from `bridge`, or a clear error for anything else."""
    info = getattr(ann, "bridge_info", None)
    if not isinstance(ann, fx.GraphModule) or not isinstance(info, BridgeInfo):
        raise InvalidInputError(
            f"expected a clean ANN from convert2snn.bridge(model) (a torch.fx.GraphModule with .bridge_info), "
            f"got {type(ann).__name__}; a deep copy of one loses .bridge_info: bridge the model again"
        )
    return info


def _shapes(ann: fx.GraphModule) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every node (after `propagate_shapes`)."""
    return {
        n.name: tuple(n.meta["tensor_meta"].shape[1:])
        for n in ann.graph.nodes
        if "tensor_meta" in n.meta and hasattr(n.meta["tensor_meta"], "shape")
    }


_warned_data_free = False


def _warn_data_free() -> None:
    global _warned_data_free
    if not _warned_data_free:
        _warned_data_free = True
        warnings.warn(
            "convert2snn: no calibration_data given, so the scales come from the weights alone (data-free, "
            "worst-case bounds for inputs in options.input_range). Data-based normalisation reaches the same "
            "accuracy in far fewer timesteps: convert(model, calibration_data=x_train[:1000]).",
            UserWarning,
            stacklevel=4,
        )


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
