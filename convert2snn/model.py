"""`SpikingModel`: a converted network and what users do with it (predict, evaluate, count, save).

It holds the clean ANN and the SNN and runs simulations; it builds nothing (`convert2snn.stages`
does, and `convert2snn.load` rebuilds a saved model).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import fx

from bridges import ops
from bridges.canonicalize import BridgeInfo
from bridges.modules import Affine

from . import distributed, metrics
from .defaults import DEFAULT_ENERGY, DEFAULT_STEPS, DEFAULT_TIMESTEPS
from .errors import InvalidInputError
from .finetune import FineTuneResult, fine_tune
from .graph.serialize import graph_to_spec
from .inputs import (
    InputRange,
    as_tensor,
    check_input_range,
    check_input_shape,
    check_timesteps,
    labels_to_indices,
)
from .metrics import EvaluationResult
from .neurons import is_neuron, latency, neurons_per_unit
from .report import ConversionReport
from .sequence import SeqModule, propagate_shapes
from .simulate import simulate
from .tools import nir

if TYPE_CHECKING:  # the schemes build models; a model only reads its scheme's options
    from .schemes.base import Scheme, SchemeOptions

FORMAT_NAME = "convert2snn"
FORMAT_VERSION = 1


class SpikingModel:
    """A converted SNN. ``network`` is a plain multi-step `torch.nn.Module` of SpikingJelly-compatible nodes.

    Inputs to every method are in the ORIGINAL model's layout (NHWC numpy arrays for Keras).
    """

    def __init__(
        self,
        ann: fx.GraphModule,
        network: fx.GraphModule,
        scales: dict[str, torch.Tensor],
        scheme: Scheme,
        report: ConversionReport,
        calibration_report: ConversionReport | None = None,
    ):
        self.ann = ann
        self.network = network
        self.scales = scales
        self.scheme = scheme
        self.report = report
        # the report as calibration left it, before building added to it (what `stages.tune` rebuilds from)
        self.calibration_report = copy.deepcopy(report) if calibration_report is None else calibration_report
        # kept here too: a deep copy of a GraphModule drops attributes it does not know
        self.bridge_info: BridgeInfo = ann.bridge_info
        self.sources: dict[str, str] = dict(network.snn_sources)  # SNN module → the ANN node it stands for
        self.device = torch.device("cpu")
        self._static: dict[str, Any] | None = None  # fan-out and MACs, computed on first use
        self._range_warned = False  # inputs far from the calibration range are warned about once
        self._layer_names = {name: name for name, m in self.network.named_modules() if is_neuron(m)}
        self._neurons = self._count_neurons()
        self._activation_elements, self._largest_activation = self._activation_size()

    @property
    def options(self) -> SchemeOptions:
        """The conversion options (batch_size, seed and progress also steer simulations)."""
        return self.scheme.options

    @property
    def conversion_type(self) -> str:
        """The conversion type that built this model: "rate", "population" or "temporal"."""
        return self.scheme.name

    # -- structure ---------------------------------------------------------------------------
    def _count_neurons(self) -> dict[str, int]:
        """Neurons per neuron module: output elements per sample × the module's neurons per unit
        (n for a population); modules nested in others (LSTM gates) are counted too."""
        shapes: dict[str, tuple[int, ...]] = {}
        modules = {name: m for name, m in self.network.named_modules() if is_neuron(m)}
        handles = [
            m.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[2:])))
            for name, m in modules.items()
        ]
        try:
            propagate_shapes(self.network, torch.zeros((1, 1) + tuple(self.bridge_info.input_shape)))
        finally:
            for h in handles:
                h.remove()
        return {name: int(np.prod(shapes[name])) * neurons_per_unit(m) for name, m in modules.items() if name in shapes}

    def _activation_size(self) -> tuple[int, int]:
        """Elements per sample and step: of all node outputs together, and of the largest one."""
        sizes = [
            int(np.prod(meta.shape[2:]))
            for node in self.network.graph.nodes
            if (meta := node.meta.get("tensor_meta")) is not None and hasattr(meta, "shape")
        ]
        return sum(sizes), max(sizes, default=0)

    # -- inputs ------------------------------------------------------------------------------
    def _inputs(self, x: Any, name: str = "x", check_range: bool = True) -> torch.Tensor:
        """``x`` as a tensor in the ANN's layout, checked against the model's input shape and, for
        the SNN's inputs (``check_range``), against the calibration inputs' range (once per model: a
        warning, or an error with ``strict=True``)."""
        t = check_input_shape(as_tensor(x, name), self.bridge_info, name)
        if check_range and not self._range_warned:
            calibrated = InputRange.from_dict(self.report.calibration_inputs)
            self._range_warned = check_input_range(t, calibrated, name, self.options.strict)
        return t

    def network_inputs(self, x: Any) -> torch.Tensor:
        """``x`` in the model's own layout as the tensor ``network`` takes at every step ([N, C, H, W] for a Keras
        model's NHWC images), checked like `predict`'s input: for training loops of one's own (hold it for T steps,
        ``x.unsqueeze(0).expand(T, ...)``, in multi-step mode; feed it once per step in single-step mode)."""
        return self._inputs(x)

    def to(self, device: str | torch.device) -> SpikingModel:
        """Run simulations on ``device`` (e.g. "cuda")."""
        self.device = torch.device(device)
        return self

    # -- API ---------------------------------------------------------------------------------
    @torch.no_grad()
    def ann_predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """The clean torch ANN's output (softmax included if the model had one)."""
        xt = self._inputs(x, check_range=False)  # the ANN takes any range
        bs = batch_size or self.options.batch_size
        ann = self.ann.to(self.device).eval()
        outs = [ann(xt[i : i + bs].to(self.device)).float().cpu() for i in range(0, xt.shape[0], bs)]
        self.ann.to("cpu")
        return torch.cat(outs).numpy()

    @property
    def latency(self) -> int | None:
        """Steps until the output is complete, for codes that have such a point (the single-spike
        temporal code: (depth + 1)·K); None for rate, population and phase codes, which refine
        their estimate with every step."""
        return latency(self.network)

    def default_timesteps(self) -> list[int]:
        """What `evaluate` reports when no timesteps are given: the latency for a code that has one,
        else `convert2snn.defaults.DEFAULT_TIMESTEPS`."""
        return [self.latency] if self.latency is not None else list(DEFAULT_TIMESTEPS)

    def _steps(self, timesteps: Any, method: str) -> int:
        """One step count for a single-T method: ``timesteps``, or the latency / `DEFAULT_STEPS`."""
        if timesteps is None:
            return self.latency if self.latency is not None else DEFAULT_STEPS
        t = check_timesteps(timesteps)
        if len(t) != 1:
            raise InvalidInputError(f"{method} takes one number of timesteps; use evaluate for several")
        return t[0]

    def _simulate(
        self,
        x: torch.Tensor,
        timesteps: list[int],
        per_neuron: bool = False,
        batch_size: int | None = None,
        **counting: Any,
    ):
        """One simulation; ``counting`` (count, fan_out, sink, trace) goes to the spike counter (see `simulate`)."""
        if self.latency is not None and max(timesteps) < self.latency:
            warnings.warn(
                f"convert2snn: this {self.conversion_type} network's output is complete only after "
                f"{self.latency} steps (SpikingModel.latency); results at T = {max(timesteps)} are partial",
                UserWarning,
                stacklevel=3,
            )
        rank, world = distributed.context()
        kwargs = dict(
            batch_size=batch_size or self.options.batch_size,
            encoding=self.options.encoding,
            seed=self.options.seed,
            device=self.device,
            layer_names=self._layer_names,
            activation_elements=self._activation_elements,
            largest_activation=self._largest_activation,
            per_neuron=per_neuron,
            progress=self.options.progress,
            **counting,
        )
        if not distributed.joined():
            return simulate(self.network, x, timesteps, **kwargs)
        # under torchrun: this rank's shard, then every rank's results merged (Poisson input: seed + rank)
        if x.shape[0] < world:
            raise InvalidInputError(f"{x.shape[0]} sample(s) cannot be shared by {world} processes")
        kwargs.update(seed=self.options.seed + rank, progress=kwargs["progress"] and rank == 0)
        result = simulate(self.network, x[distributed.shard(x.shape[0], rank, world)], timesteps, **kwargs)
        return distributed.merge(result, counting.get("sink"))

    def predict(self, x: Any, timesteps: int | None = None, batch_size: int | None = None) -> np.ndarray:
        """SNN output scores (N, C) after ``timesteps`` steps (default: the latency of a code that has
        one, else 32): the readout's estimate of the ANN's logits."""
        t = self._steps(timesteps, "predict")
        return self._simulate(self._inputs(x), [t], batch_size=batch_size, count=False).outputs[t]

    def evaluate(
        self,
        x: Any,
        y: Any,
        timesteps: Any = None,
        batch_size: int | None = None,
        *,
        energy: Any = DEFAULT_ENERGY,
        correlation: bool = True,
    ) -> EvaluationResult:
        """Accuracy at every T in ``timesteps`` from one simulation up to max T, with the ANN's accuracy.
        ``timesteps`` defaults to `default_timesteps` (4, 8, 16, 32; a single-spike temporal network:
        its latency).

        Also per T: spikes per neuron (overall and per layer), synaptic operations (spikes × fan-out),
        the energy estimate under ``energy`` (a preset "45nm-fp32" / "fp16" / "int8", or custom
        (E_MAC, E_AC) in pJ; see `convert2snn.metrics`), time-to-accuracy, and (``correlation=True``)
        the per-layer Pearson r between decoded rates and the ANN's activations.
        """
        ts = check_timesteps(self.default_timesteps() if timesteps is None else timesteps)
        model = metrics.energy_model(energy)
        xt = self._inputs(x)
        ann_out = self.ann_predict(x, batch_size)
        labels = labels_to_indices(y, xt.shape[0], ann_out.shape[1])
        sink = metrics.Correlation(self.ann, metrics.correlation_pairs(self), self.device) if correlation else None
        try:
            result = self._simulate(xt, ts, batch_size=batch_size, fan_out=self._fan_out_tensors(), sink=sink)
        finally:
            self.ann.to("cpu")
        n = xt.shape[0]
        total_neurons = max(1, sum(self._neurons.values()))
        cumulative = {k: np.cumsum(v) for k, v in result.spikes.per_step.items()}
        spikes = [float(sum(c[t - 1] for c in cumulative.values()) / (n * total_neurons)) for t in ts]
        per_layer = {
            layer: [float(c[t - 1] / (n * self._neurons[layer])) for t in ts] for layer, c in cumulative.items()
        }
        sops_cum = {k: np.cumsum(v) for k, v in result.spikes.sops_per_step.items()}
        layer_sops = {layer: [float(c[t - 1] / n) for t in ts] for layer, c in sops_cum.items()}
        sops = [float(sum(v[i] for v in layer_sops.values())) for i in range(len(ts))]
        static = self._static_metrics()
        accuracy = [float((result.outputs[t].argmax(1) == labels).mean()) for t in ts]
        ann_accuracy = float((ann_out.argmax(1) == labels).mean())
        return EvaluationResult(
            timesteps=ts,
            accuracy=accuracy,
            ann_accuracy=ann_accuracy,
            spikes_per_neuron=spikes,
            layer_spikes_per_neuron=per_layer,
            samples=int(n),
            neurons=dict(self._neurons),
            sops=sops,
            layer_sops=layer_sops,
            input_macs=float(static["input_macs"]),
            ann_macs=float(sum(static["ann_macs"].values())),
            layer_macs={k: float(v) for k, v in static["ann_macs"].items()},
            energy_model=model.as_dict(),
            snn_energy_pj=[metrics.snn_energy_pj(s, static["input_macs"], model) for s in sops],
            ann_energy_pj=metrics.ann_energy_pj(sum(static["ann_macs"].values()), model),
            time_to_accuracy={
                "1pp": metrics.time_to_accuracy(ts, accuracy, ann_accuracy, 0.01),
                "0.1pp": metrics.time_to_accuracy(ts, accuracy, ann_accuracy, 0.001),
            },
            layer_correlation=sink.result(per_layer, ts) if sink is not None else {},
        )

    def spike_counts(
        self, x: Any, timesteps: int | None = None, per_neuron: bool = False, mode: int = 0
    ) -> dict[str, Any]:
        """Spikes per neuron layer over all of ``x`` after ``timesteps`` steps (SpKeras SpikeCounter).

        ``mode=0``: total spikes per layer (ints); with ``per_neuron=True`` an array with each
        neuron's spike count summed over the samples. ``mode=1`` (SpKeras's histogram mode): per
        layer an int array ``h`` where ``h[k]`` is how many (sample, neuron) pairs fired exactly k
        spikes, k = 0..max.
        """
        t = self._steps(timesteps, "spike_counts")
        if mode not in (0, 1):
            raise InvalidInputError(f"mode must be 0 (totals) or 1 (per-neuron histogram), got {mode!r}")
        if mode == 1:
            hist = metrics.Histogram()
            self._simulate(self._inputs(x), [t], sink=hist)
            return dict(hist.counts)
        result = self._simulate(self._inputs(x), [t], per_neuron=per_neuron)
        if per_neuron:
            return {k: v.astype(np.int64) for k, v in result.spikes.per_neuron.items()}
        return {k: int(round(float(v[:t].sum()))) for k, v in result.spikes.per_step.items()}

    def neuron_counts(self, mode: int = 0) -> dict[str, int]:
        """Neurons per layer, per sample (SpKeras NeuronNumbers).

        ``mode=1`` leaves out neuron layers fed directly by average pooling (as SpKeras's mode 1 does).
        """
        if mode not in (0, 1):
            raise InvalidInputError(
                f"mode must be 0 (all layers) or 1 (without layers after average pooling), got {mode!r}"
            )
        if mode == 0:
            return dict(self._neurons)
        return {k: v for k, v in self._neurons.items() if not self._after_average_pooling(k)}

    def _after_average_pooling(self, layer: str) -> bool:
        node = next((n for n in self.network.graph.nodes if n.op == "call_module" and n.target == layer), None)
        while node is not None and node.all_input_nodes:
            node = node.all_input_nodes[0]
            if node.op != "call_module":
                return False
            module = self.network.get_submodule(node.target)
            inner = module.module if isinstance(module, SeqModule) else module
            if isinstance(inner, ops.AVG_POOL):
                return True
            if not isinstance(inner, Affine) or len(node.all_input_nodes) != 1:
                return False
        return False

    def fan_out(self) -> dict[str, np.ndarray]:
        """Synapses driven by each neuron (per neuron layer, in the layer's per-sample shape); see
        `convert2snn.metrics.ops`."""
        return {k: v.copy() for k, v in self._static_metrics()["fan_out"].items()}

    def spike_trains(self, x: Any, timesteps: int | None = None, neurons: int = 8) -> dict[str, dict[str, np.ndarray]]:
        """Spike trains of ``neurons`` neurons per layer for the first sample of ``x``.

        Returns layer → {"indices": flat neuron indices, "spikes": [T, k] 0/1 array}. The neurons are
        spread over the ANN activation ranks of that sample (active ones first), so a raster shows a
        range of rates.
        """
        t = self._steps(timesteps, "spike_trains")
        xt = self._inputs(x)[:1]
        chosen = self._pick_neurons(xt, int(neurons))
        result = self._simulate(xt, [t], trace={k: torch.as_tensor(v) for k, v in chosen.items()})
        return {
            k: {"indices": chosen[k], "spikes": result.spikes.traces[k][:t]}
            for k in chosen
            if k in result.spikes.traces
        }

    @torch.no_grad()
    def _pick_neurons(self, xt: torch.Tensor, k: int) -> dict[str, np.ndarray]:
        pairs = metrics.correlation_pairs(self)
        sink = metrics.Correlation(self.ann, pairs)
        sink.begin_batch(xt)
        chosen = {}
        for layer, count in self._neurons.items():
            act = sink.activations.get(layer)
            if act is not None:
                order = torch.argsort(act[0], descending=True)
                active = int((act[0] > 0).sum())
                pool = order[: max(active, min(k, count))]
                picks = pool[torch.linspace(0, len(pool) - 1, min(k, len(pool))).round().long()]
            else:
                picks = torch.linspace(0, count - 1, min(k, count)).round().long()
            chosen[layer] = np.unique(picks.numpy())
        self.ann.to("cpu")
        return chosen

    def _fan_out_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self._static_metrics()["fan_out"].items()}

    def _static_metrics(self) -> dict[str, Any]:
        """Fan-out, input-layer MACs and ANN MACs: structural, computed once per model."""
        cache = self._static
        if cache is None:
            poisson = self.options.encoding == "poisson"
            shape = tuple(self.bridge_info.input_shape)
            cache = {
                "fan_out": metrics.fan_out(self.network, shape, include_input=poisson),
                "input_macs": 0 if poisson else sum(metrics.input_layer_macs(self.network, shape).values()),
                "ann_macs": metrics.ann_macs(self.ann, shape),
            }
            self._static = cache
        return cache

    # -- training ----------------------------------------------------------------------------
    def fine_tune(self, x: Any, y: Any = None, *, timesteps: int, epochs: int = 1, **options: Any) -> FineTuneResult:
        """Train the SNN in place by backpropagation through ``timesteps`` steps with SpikingJelly surrogate
        gradients; returns the accuracy at T before and after and the per-epoch history (also recorded in
        ``report.fine_tuning``). ``x``, ``y``: arrays in the model's layout, or ``x`` a DataLoader of
        (inputs, labels). Options (lr, batch_size, optimizer, surrogate, learn_thresholds, learn_leak,
        validation_data, steps_per_epoch, memory_bytes, seed, progress): see `convert2snn.finetune.fine_tune`."""
        return fine_tune(self, x, y, timesteps=timesteps, epochs=epochs, **options)

    # -- files -------------------------------------------------------------------------------
    def to_nir(self, path: str | os.PathLike | None = None, consumer: str | None = None) -> Any:
        """The network as a ``nir.NIRGraph`` written for ``consumer`` ('nir', 'norse', 'snntorch' or 'sinabs';
        default: the conversion's ``nir_target``, else 'nir'); also written to ``path`` when given.

        Exact (the consumer's spikes equal ours) when converted with ``nir_target=consumer``; otherwise a
        warning names what differs. See `convert2snn.tools.nir`."""
        if self.conversion_type != "rate":
            why = {
                "population": "its units (n IF neurons with spread thresholds, read out as a mean) have no NIR node",
                "temporal": "its thresholds oscillate with the step, which no NIR neuron states",
            }.get(self.conversion_type, "")
            raise InvalidInputError(
                f"NIR export covers rate-converted networks, not {self.conversion_type!r}"
                + (f": {why}" if why else "")
                + "; convert with conversion_type='rate' to export"
            )
        if consumer is None:
            consumer = self.options.nir_target or "nir"  # rate options (checked above)
        graph = nir.to_nir(self.network, tuple(self.bridge_info.input_shape), consumer=consumer)
        if path is not None:
            nir.write_nir(graph, path)
        return graph

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one file, atomically; `convert2snn.load` reads it back bit-identically."""
        path = Path(path)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "conversion_type": self.conversion_type,
            "options": self.options.as_dict(),
            "bridge_info": self.bridge_info.as_dict(),
            "report": self.report.as_dict(),
            "ann": graph_to_spec(self.ann),
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
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a saved model is not
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


__all__ = ["SpikingModel", "EvaluationResult", "FORMAT_NAME", "FORMAT_VERSION"]
