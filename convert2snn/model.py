"""`SpikingModel`: the converted network and what users do with it (predict, evaluate, count, save)."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

import numpy as np
import torch
from torch import fx

from bridges.canonicalize import BridgeInfo

from .build import ConversionReport, build_snn
from .conversion import get_conversion
from .errors import InvalidInputError
from .nodes import is_neuron
from .options import make_options
from .sequence import propagate_shapes
from .serialize import graph_from_spec, graph_to_spec
from .simulate import simulate

FORMAT_NAME = "convert2snn"
FORMAT_VERSION = 1


def as_tensor(x: Any, name: str = "x") -> torch.Tensor:
    """A float32 tensor from numpy / torch / nested lists, with clear errors for bad data."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # noqa: BLE001
            raise InvalidInputError(f"{name} cannot be read as an array: {exc}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise InvalidInputError(f"{name} must be real-valued, got dtype {t.dtype}")
    t = t.float()
    if t.dim() == 0 or t.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise InvalidInputError(f"{name} contains {bad} NaN/inf value(s)")
    return t


def check_input_shape(x: torch.Tensor, info: BridgeInfo, name: str = "x") -> torch.Tensor:
    """Check ``x`` against the model's input shape (original layout) and return it in the ANN's layout."""
    expected = tuple(info.original_input_shape())
    got = tuple(x.shape[1:])
    if got != expected:
        layout = " (the original model's layout, e.g. NHWC for Keras)" if info.input_permutation else ""
        raise InvalidInputError(
            f"{name} has per-sample shape {got}, but the model expects {expected}{layout}; "
            f"pass an array of shape (N, {', '.join(map(str, expected))})"
        )
    return info.to_model_layout(x)


def labels_to_indices(y: Any, n: int, classes: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == classes:
        arr = arr.argmax(axis=1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInputError(f"labels must be class indices (N,) or one-hot (N, {classes}), got shape {np.asarray(y).shape}")
    if arr.shape[0] != n:
        raise InvalidInputError(f"{arr.shape[0]} labels for {n} inputs")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InvalidInputError("labels must be integers (class indices) or one-hot rows")
        arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= classes:
        raise InvalidInputError(f"labels must lie in [0, {classes - 1}] (the model has {classes} outputs); got {arr.min()}..{arr.max()}")
    return arr


def check_timesteps(timesteps: Any) -> list[int]:
    values = [timesteps] if isinstance(timesteps, (int, np.integer)) else list(timesteps) if isinstance(timesteps, Iterable) else None
    if not values or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1 for t in values):
        raise InvalidInputError(f"timesteps must be a positive integer or a list of them, got {timesteps!r}")
    return [int(t) for t in values]


@dataclass
class EvaluationResult:
    """Accuracy at every requested T from one simulation, with the ANN's accuracy and spike statistics."""

    timesteps: list[int]
    accuracy: list[float]
    ann_accuracy: float
    spikes_per_neuron: list[float]  # mean spikes per neuron per inference, up to each T
    layer_spikes_per_neuron: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0

    def accuracy_at(self, t: int) -> float:
        return self.accuracy[self.timesteps.index(t)]

    def as_dict(self) -> dict[str, Any]:
        return {"timesteps": self.timesteps, "accuracy": self.accuracy, "ann_accuracy": self.ann_accuracy,
                "spikes_per_neuron": self.spikes_per_neuron, "layer_spikes_per_neuron": self.layer_spikes_per_neuron,
                "samples": self.samples}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.as_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["T", "accuracy", "ann_accuracy", "spikes_per_neuron"])
        for t, a, s in zip(self.timesteps, self.accuracy, self.spikes_per_neuron):
            writer.writerow([t, f"{a:.6f}", f"{self.ann_accuracy:.6f}", f"{s:.6f}"])
        if path is not None:
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()

    def __str__(self) -> str:
        lines = [f"ANN accuracy: {100 * self.ann_accuracy:.2f} %  ({self.samples} samples)",
                 f"{'T':>6} {'SNN acc %':>10} {'loss pp':>8} {'spikes/neuron':>14}"]
        for t, a, s in zip(self.timesteps, self.accuracy, self.spikes_per_neuron):
            lines.append(f"{t:>6} {100 * a:>10.2f} {100 * (self.ann_accuracy - a):>8.2f} {s:>14.3f}")
        return "\n".join(lines)


class SpikingModel:
    """A converted SNN. ``network`` is a plain multi-step `torch.nn.Module` of SpikingJelly-compatible nodes.

    Inputs to every method are in the ORIGINAL model's layout (NHWC numpy arrays for Keras).
    """

    def __init__(self, ann: fx.GraphModule, info: BridgeInfo, scales: dict[str, torch.Tensor], options: Any,
                 conversion_type: str, report: ConversionReport, network: fx.GraphModule | None = None):
        self.ann = ann
        self.bridge_info = info
        self.scales = scales
        self.options = options
        self.conversion_type = conversion_type
        self.report = report
        self.device = torch.device("cpu")
        self.network = network if network is not None else self._build()
        self._layer_names = {name: name for name, m in self.network.named_modules() if is_neuron(m)}
        self._neurons = self._count_neurons()
        self._activation_elements = self._activation_size()

    # -- construction ------------------------------------------------------------------------
    def _build(self) -> fx.GraphModule:
        kind = get_conversion(self.conversion_type)
        context = SimpleNamespace(scales=self.scales, options=self.options)
        snn = build_snn(self.ann, self.conversion_type, self.report, self.bridge_info.layers, context)
        example = torch.randn((2,) + tuple(self.bridge_info.input_shape), generator=torch.Generator().manual_seed(0))
        kind.finish(snn, self, example)
        return snn

    def _count_neurons(self) -> dict[str, int]:
        propagate_shapes(self.network, torch.zeros((1, 1) + tuple(self.bridge_info.input_shape)))
        counts = {}
        for node in self.network.graph.nodes:
            if node.op == "call_module" and is_neuron(self.network.get_submodule(node.target)):
                counts[node.target] = int(np.prod(node.meta["tensor_meta"].shape[2:]))
        return counts

    def _activation_size(self) -> int:
        total = 0
        for node in self.network.graph.nodes:
            meta = node.meta.get("tensor_meta")
            if meta is not None and hasattr(meta, "shape"):
                total += int(np.prod(meta.shape[2:]))
        return total

    # -- inputs ------------------------------------------------------------------------------
    def _inputs(self, x: Any, name: str = "x") -> torch.Tensor:
        return check_input_shape(as_tensor(x, name), self.bridge_info, name)

    def to(self, device: str | torch.device) -> "SpikingModel":
        """Run simulations on ``device`` (e.g. "cuda")."""
        self.device = torch.device(device)
        return self

    # -- API ---------------------------------------------------------------------------------
    @torch.no_grad()
    def ann_predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """The clean torch ANN's output (softmax included if the model had one)."""
        xt = self._inputs(x)
        bs = batch_size or self.options.batch_size
        ann = self.ann.to(self.device).eval()
        outs = [ann(xt[i:i + bs].to(self.device)).float().cpu() for i in range(0, xt.shape[0], bs)]
        self.ann.to("cpu")
        return torch.cat(outs).numpy()

    def _simulate(self, x: torch.Tensor, timesteps: list[int], per_neuron: bool = False, batch_size: int | None = None):
        return simulate(self.network, x, timesteps, batch_size=batch_size or self.options.batch_size,
                        encoding=self.options.encoding, seed=self.options.seed, device=self.device,
                        layer_names=self._layer_names, activation_elements=self._activation_elements,
                        per_neuron=per_neuron, progress=self.options.progress)

    def predict(self, x: Any, timesteps: int = 32, batch_size: int | None = None) -> np.ndarray:
        """SNN output scores (N, C) after ``timesteps`` steps: the readout's estimate of the ANN's logits."""
        t = check_timesteps(timesteps)
        if len(t) != 1:
            raise InvalidInputError("predict takes one number of timesteps; use evaluate for several")
        return self._simulate(self._inputs(x), t, batch_size=batch_size).outputs[t[0]]

    def evaluate(self, x: Any, y: Any, timesteps: Any = (8, 16, 32), batch_size: int | None = None) -> EvaluationResult:
        """Accuracy at every T in ``timesteps`` (one simulation up to max T) and the ANN's accuracy."""
        ts = sorted(set(check_timesteps(timesteps)))
        xt = self._inputs(x)
        ann_out = self.ann_predict(x, batch_size)
        labels = labels_to_indices(y, xt.shape[0], ann_out.shape[1])
        result = self._simulate(xt, ts, batch_size=batch_size)
        total_neurons = max(1, sum(self._neurons.values()))
        per_layer = {}
        cumulative = {k: np.cumsum(v) for k, v in result.spikes.per_step.items()}
        spikes = []
        for t in ts:
            spikes.append(float(sum(c[t - 1] for c in cumulative.values()) / (xt.shape[0] * total_neurons)))
        for layer, c in cumulative.items():
            per_layer[layer] = [float(c[t - 1] / (xt.shape[0] * self._neurons[layer])) for t in ts]
        return EvaluationResult(
            timesteps=ts,
            accuracy=[float((result.outputs[t].argmax(1) == labels).mean()) for t in ts],
            ann_accuracy=float((ann_out.argmax(1) == labels).mean()),
            spikes_per_neuron=spikes, layer_spikes_per_neuron=per_layer, samples=int(xt.shape[0]),
        )

    def spike_counts(self, x: Any, timesteps: int = 32, per_neuron: bool = False) -> dict[str, Any]:
        """Spikes per neuron layer over all of ``x`` after ``timesteps`` steps.

        ``per_neuron=False``: total spikes per layer (ints). ``per_neuron=True``: an array with each
        neuron's spike count summed over the samples (for histograms).
        """
        t = check_timesteps(timesteps)[0]
        result = self._simulate(self._inputs(x), [t], per_neuron=per_neuron)
        if per_neuron:
            return {k: v.astype(np.int64) for k, v in result.spikes.per_neuron.items()}
        return {k: int(round(float(v[:t].sum()))) for k, v in result.spikes.per_step.items()}

    def neuron_counts(self) -> dict[str, int]:
        """Neurons per layer (per sample)."""
        return dict(self._neurons)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one file, atomically; `convert2snn.load` reads it back bit-identically."""
        path = Path(path)
        meta = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "conversion_type": self.conversion_type,
            "options": self.options.as_dict(), "bridge_info": self.bridge_info.as_dict(),
            "report": self.report.as_dict(), "ann": graph_to_spec(self.ann),
        }
        payload = {
            "meta": json.dumps(meta),
            "ann_state": {k: v.detach().cpu() for k, v in self.ann.state_dict().items()},
            "snn_state": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "scales": {k: v.detach().cpu() for k, v in self.scales.items()},
        }
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SpikingModel":
        path = Path(path)
        if not path.exists():
            raise InvalidInputError(f"'{path}' does not exist")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta"])
        except Exception as exc:  # noqa: BLE001
            raise InvalidInputError(f"'{path}' is not a convert2snn model file (or it is truncated): {exc}") from exc
        if meta.get("format") != FORMAT_NAME:
            raise InvalidInputError(f"'{path}' is not a convert2snn model file")
        if meta.get("version") != FORMAT_VERSION:
            raise InvalidInputError(f"'{path}' has format version {meta.get('version')}; this convert2snn reads "
                                    f"version {FORMAT_VERSION}. Convert the model again with this version.")
        ann = graph_from_spec(meta["ann"], payload["ann_state"])
        info = BridgeInfo.from_dict(meta["bridge_info"])
        ann.bridge_info = info
        options = make_options(meta["conversion_type"], meta["options"])
        report = ConversionReport(**meta["report"])
        model = cls(ann, info, dict(payload["scales"]), options, meta["conversion_type"],
                    ConversionReport(report.conversion_type, report.options))
        model.report = report
        model.network.load_state_dict(payload["snn_state"], strict=True)
        return model


__all__ = ["SpikingModel", "EvaluationResult"]
