"""Fine-tuning a converted SNN by backpropagation through time: conversion, then training.

Conversion gives the starting point; a short surrogate-gradient fine-tune at the target T closes
much of what is left between the SNN at few timesteps and the ANN (hybrid conversion + training:
Rathi et al., ICLR 2020; DIET-SNN, Rathi & Roy 2021, which also learns thresholds and leaks).

The network trains as any SpikingJelly network does: a multi-step forward on [T, B, ...] input
(the analog input held for T steps, or Poisson spikes), `functional.reset_net` before every
batch, each neuron's surrogate function in the backward pass. The loss is the cross-entropy of the
readout after T steps, the mean of the output layer's currents, which is the SNN's estimate of the
ANN's logits and what `SpikingModel.predict` returns. Optionally the neurons' thresholds θ (and
the LIF leak τ) learn too, one per layer (`IFNeuron.learn`). Rate and population networks train;
the temporal codes are exact by construction and have no surrogate path (refused by name).

Memory is planned like a simulation's: backpropagation through T steps keeps every layer's
activations of every step, so the batch is split into micro-batches that fit (gradients are
accumulated, the optimiser steps once per batch) and a sample that cannot fit at all is refused
before training starts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based import surrogate as sj_surrogate
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .errors import InvalidInputError, SimulationMemoryError
from .inputs import as_tensor, labels_to_indices
from .neurons import IFNeuron, is_neuron
from .neurons.protocol import StatefulNode
from .progress import progress_bar, shown
from .sequence import constant_sequence, multi_step_mode
from .simulate import available_memory, memory_format_for

if TYPE_CHECKING:
    from .model import SpikingModel

logger = logging.getLogger("convert2snn")

# Bytes that backpropagation through time keeps per activation element and step: the layer's output,
# and for a neuron layer its membrane and the surrogate's input, in float32. Measured on the MNIST LeNet
# (peak resident memory of one batch of 512 on the CPU, T = 4 and 8): 7-10 bytes; 16 leaves a margin.
BPTT_BYTES_PER_ELEMENT = 4 * 4
# What one micro-batch's forward and backward may hold when ``memory_bytes`` is not given: on the CPU a
# fixed budget (larger micro-batches are not faster there), on a GPU this share of its free memory.
DEFAULT_CPU_TRAINING_BYTES = 2 << 30
GPU_MEMORY_SHARE = 0.6
# Samples on which the accuracy before and after is measured when no validation data is given.
ACCURACY_SAMPLES = 2048

# Where learned thresholds and leaks are held by `_keep_in_range`.
MIN_THRESHOLD = 1e-3
MIN_TAU = 1.01

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": lambda params, lr, weight_decay: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay),
}


@dataclass
class EpochRecord:
    """One epoch of fine-tuning: mean training loss, training accuracy (of the batches as they trained), the
    accuracy at T on the validation data (None without), samples seen and seconds."""

    epoch: int
    loss: float
    train_accuracy: float
    validation_accuracy: float | None
    samples: int
    seconds: float


@dataclass
class FineTuneResult:
    """What `fine_tune` did: the accuracy at T before and after (on ``measured_on``), and every epoch."""

    timesteps: int
    accuracy_before: float
    accuracy_after: float
    measured_on: str
    micro_batch: int
    epochs: list[EpochRecord] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the report's ``fine_tuning`` entry holds the same history)."""
        return {**asdict(self), "epochs": [asdict(e) for e in self.epochs]}

    def __str__(self) -> str:
        lines = [
            f"fine-tuned at T = {self.timesteps}: accuracy {self.accuracy_before:.2%} → {self.accuracy_after:.2%} "
            f"on {self.measured_on}",
            "epoch  loss     train acc  val acc  seconds",
        ]
        for e in self.epochs:
            val = "-" if e.validation_accuracy is None else f"{e.validation_accuracy:.2%}"
            lines.append(f"{e.epoch:>5}  {e.loss:<7.4f}  {e.train_accuracy:>9.2%}  {val:>7}  {e.seconds:>7.1f}")
        return "\n".join(lines)


def surrogate_function(
    spec: str | sj_surrogate.SurrogateFunctionBase | None,
) -> sj_surrogate.SurrogateFunctionBase | None:
    """A SpikingJelly surrogate from an instance or a class name of `spikingjelly.activation_based.surrogate`
    (any case: "atan", "Sigmoid", "PiecewiseQuadratic"…); None keeps each neuron's own (ATan by default)."""
    if spec is None or isinstance(spec, sj_surrogate.SurrogateFunctionBase):
        return spec
    base = sj_surrogate.SurrogateFunctionBase
    names = {
        name.lower(): cls
        for name, cls in vars(sj_surrogate).items()
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base
    }
    cls = names.get(str(spec).lower())
    if cls is None:
        raise InvalidInputError(
            f"unknown surrogate {spec!r}: give a spikingjelly.activation_based.surrogate instance or one of "
            f"{', '.join(sorted(names))}"
        )
    return cls()


def fine_tune(
    snn: SpikingModel,
    x: Any,
    y: Any = None,
    *,
    timesteps: int,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] = "adam",
    weight_decay: float = 0.0,
    surrogate: str | sj_surrogate.SurrogateFunctionBase | None = None,
    learn_thresholds: bool = False,
    learn_leak: bool = False,
    validation_data: Any = None,
    steps_per_epoch: int | None = None,
    memory_bytes: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
) -> FineTuneResult:
    """Train ``snn.network`` in place by backpropagation through ``timesteps`` steps; see the module doc.

        Data: ``x`` and ``y`` arrays in the model's own layout (as `SpikingModel.evaluate` takes them; labels
        int or one-hot), or ``x`` a `torch.utils.data.DataLoader` yielding (inputs, labels) batches in that
        layout (``y`` None; its own batch size and sampler apply). ``validation_data``: (x, y) or a DataLoader;
        the accuracy at T on it is measured before, after every epoch and at the end (without it, before and
        after on up to `ACCURACY_SAMPLES` training samples).

        ``optimizer``: "adam" (default), "adamw", "sgd" (momentum 0.9) or a callable params → optimiser (then
        ``lr`` and ``weight_decay`` are its business); the learning rate follows a cosine schedule to 0 over the
        run. ``surrogate``: see `surrogate_function`; it replaces every neuron's surrogate and stays (it is not saved:
    a loaded model's neurons have the default, ATan). ``learn_thresholds`` / ``learn_leak``: θ per layer
        (and τ for LIF neurons) train with the weights (IF / LIF neurons only). ``steps_per_epoch`` caps the
        batches of an epoch (a partial epoch where time is short). ``memory_bytes``: what one micro-batch may
        hold (default `DEFAULT_CPU_TRAINING_BYTES` on the CPU, `GPU_MEMORY_SHARE` of the free memory on a GPU).
        ``seed`` (default ``snn.options.seed``) fixes the shuffling, Poisson input and everything else random:
        the same call on the same machine gives the same network on the CPU (on a GPU, up to its nondeterministic
        kernels). Runs on ``snn.device``.

        The report gets a ``fine_tuning`` entry (`ConversionReport.fine_tuning`); the ANN is not changed.
    """
    timesteps = _positive_int(timesteps, "timesteps")
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    if steps_per_epoch is not None:
        steps_per_epoch = _positive_int(steps_per_epoch, "steps_per_epoch")
    if callable(optimizer):
        make_optimizer = optimizer
        optimizer_name = getattr(optimizer, "__name__", type(optimizer).__name__)
    else:
        if str(optimizer).lower() not in OPTIMIZERS:
            raise InvalidInputError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)} or a callable, got {optimizer!r}"
            )
        if not lr > 0:
            raise InvalidInputError(f"lr must be > 0, got {lr}")
        make_optimizer = lambda params: OPTIMIZERS[str(optimizer).lower()](params, lr=lr, weight_decay=weight_decay)  # noqa: E731
        optimizer_name = str(optimizer).lower()
    network = snn.network
    _check_trainable(network, snn.conversion_type, learn_thresholds, learn_leak)
    chosen = surrogate_function(surrogate)
    seed = snn.options.seed if seed is None else int(seed)
    progress = snn.options.progress if progress is None else progress
    classes = _classes(snn)
    device = snn.device
    cuda = [] if device.type != "cuda" else [torch.cuda.current_device() if device.index is None else device.index]
    history: list[EpochRecord] = []
    learned_params: list[nn.Parameter] = []
    bounds: list[tuple[nn.Parameter, float]] = []
    # everything random from here on (a DataLoader's shuffling included) follows ``seed``; the caller's RNG state
    # is given back after
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        train = _training_data(snn, x, y, classes, batch_size, steps_per_epoch)
        validation = None if validation_data is None else _validation_data(snn, validation_data, classes)
        micro = _micro_batch(snn, timesteps, train.batch_size, device, memory_bytes)
        if validation is not None:
            measure, measured_on = validation, f"{validation[0].shape[0]} validation samples"
        else:
            measure = train.head(ACCURACY_SAMPLES)
            measured_on = f"{measure[0].shape[0]} training samples (no validation_data)"
        before = _accuracy(snn, measure, timesteps)
        layout = memory_format_for(train.example, device)
        batches = train.batches_per_epoch(steps_per_epoch)
        started = time.perf_counter()
        try:
            if chosen is not None:
                for module in network.modules():
                    if isinstance(module, BaseNode):
                        module.surrogate_function = chosen
            bounds = _learn(network, learn_thresholds, learn_leak)
            learned_params += [param for param, _ in bounds]
            network.to(device=device, memory_format=layout)
            learned_ids = {id(p) for p in learned_params}
            weights = [p for p in network.parameters() if p.requires_grad and id(p) not in learned_ids]
            # thresholds and leaks are not decayed towards 0 (an own optimiser gets the same two groups)
            groups = [{"params": weights}] + (
                [{"params": learned_params, "weight_decay": 0.0}] if learned_params else []
            )
            opt = make_optimizer(groups)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * batches))
            generator = torch.Generator().manual_seed(seed)
            with multi_step_mode(network):
                for epoch in range(1, epochs + 1):
                    history.append(
                        _epoch(
                            snn,
                            train,
                            opt,
                            schedule,
                            bounds,
                            epoch,
                            epochs,
                            timesteps,
                            micro,
                            layout,
                            generator,
                            batches,
                            progress,
                        )
                    )
                    if validation is not None:
                        history[-1].validation_accuracy = _accuracy(snn, validation, timesteps)
                    _announce(history[-1], epochs, timesteps, progress)
        finally:
            for module in network.modules():
                if isinstance(module, IFNeuron):
                    module.freeze()
            network.eval()
            functional.reset_net(network)
    after = history[-1].validation_accuracy if validation is not None else _accuracy(snn, measure, timesteps)
    result = FineTuneResult(timesteps, before, after, measured_on, micro, history)
    learned = [name for name, on in (("thresholds", learn_thresholds), ("leaks", learn_leak)) if on]
    snn.report.fine_tuning.append(
        {
            "timesteps": timesteps,
            "epochs": epochs,
            "samples": train.samples,
            "batch_size": train.batch_size,
            "micro_batch": micro,
            "steps_per_epoch": batches,
            "optimizer": optimizer_name,
            "lr": None if callable(optimizer) else float(lr),  # a callable optimiser sets its own
            "weight_decay": None if callable(optimizer) else float(weight_decay),
            "surrogate": _surrogate_name(network),
            "learned": learned,
            "learned_parameters": len(learned_params),
            "seed": seed,
            "accuracy_before": before,
            "accuracy_after": after,
            "measured_on": measured_on,
            "seconds": time.perf_counter() - started,
            "history": [asdict(e) for e in history],
        }
    )
    return result


def _announce(record: EpochRecord, epochs: int, timesteps: int, progress: bool) -> None:
    """Log an epoch's numbers, and print them where progress is shown."""
    logger.info("convert2snn: fine-tuning epoch %d/%d: %s", record.epoch, epochs, record)
    if shown(progress):
        val = (
            ""
            if record.validation_accuracy is None
            else f", accuracy at T={timesteps} {record.validation_accuracy:.2%}"
        )
        print(
            f"convert2snn: epoch {record.epoch}/{epochs}: loss {record.loss:.4f}, train accuracy "
            f"{record.train_accuracy:.2%}{val} ({record.seconds:.0f} s)",
            flush=True,
        )


# -- the epoch ---------------------------------------------------------------------------------
def _epoch(
    snn: SpikingModel,
    train: _TrainingData,
    opt: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    bounds: list[tuple[nn.Parameter, float]],
    epoch: int,
    epochs: int,
    timesteps: int,
    micro: int,
    layout: torch.memory_format,
    generator: torch.Generator,
    batches: int,
    progress: bool,
) -> EpochRecord:
    """One pass over ``batches`` batches: per batch, micro-batches forward and backward (gradients summed as the
    whole batch's mean loss), then one optimiser and schedule step."""
    network, device = snn.network, snn.device
    network.train()
    start = time.perf_counter()
    # summed on the device, read once per epoch (or per batch when the progress bar shows them)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    bar = progress_bar(
        train.iterate(generator, batches), desc=f"fine-tuning epoch {epoch}/{epochs}", enabled=progress, total=batches
    )
    for xb, yb in bar:
        opt.zero_grad(set_to_none=True)
        n = xb.shape[0]
        # Poisson noise is drawn for the whole batch, so the spike trains do not depend on the micro-batch size
        noise = _noise(xb, timesteps, generator) if snn.options.encoding == "poisson" else None
        for i in range(0, n, micro):
            xm = xb[i : i + micro].to(device).contiguous(memory_format=layout)
            ym = torch.as_tensor(yb[i : i + micro], dtype=torch.long, device=device)
            functional.reset_net(network)
            out = network(_encode(xm, timesteps, None if noise is None else noise[:, i : i + micro]))[-1]
            loss = nn.functional.cross_entropy(out, ym)
            (loss * (xm.shape[0] / n)).backward()
            total_loss += loss.detach() * xm.shape[0]
            correct += (out.detach().argmax(1) == ym).sum()
        seen += n
        opt.step()
        schedule.step()
        _keep_in_range(bounds)
        if isinstance(bar, tqdm):  # progress shown
            bar.set_postfix(loss=f"{float(total_loss) / seen:.4f}", acc=f"{int(correct) / seen:.2%}")
    functional.reset_net(network)
    network.eval()
    return EpochRecord(
        epoch, float(total_loss) / max(1, seen), int(correct) / max(1, seen), None, seen, time.perf_counter() - start
    )


def _learn(network: nn.Module, thresholds: bool, leaks: bool) -> list[tuple[nn.Parameter, float]]:
    """Make each IF layer's θ (``thresholds``) and each LIF layer's τ (``leaks``) a parameter (`IFNeuron.learn`);
    returns every new parameter with the smallest value it may take."""
    bounds = []
    for module in network.modules():
        if isinstance(module, IFNeuron):
            for param in module.learn(threshold=thresholds, leak=leaks and module.tau is not None):
                bounds.append((param, MIN_THRESHOLD if param is module.v_threshold else MIN_TAU))
    return bounds


def _keep_in_range(bounds: list[tuple[nn.Parameter, float]]) -> None:
    """Learned θ stays positive and τ above 1 (a leak factor 1 − 1/τ in (0, 1)): an optimiser step may overshoot."""
    with torch.no_grad():
        for param, minimum in bounds:
            param.clamp_(min=minimum)


def _noise(x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform noise [T, B, ...] for Poisson input (drawn on the CPU from the seeded generator)."""
    return torch.rand((steps,) + tuple(x.shape), generator=generator)


def _encode(x: torch.Tensor, steps: int, noise: torch.Tensor | None) -> torch.Tensor:
    """The input sequence [T, B, ...]: ``x`` held for T steps (a stride-0 view: the first layer computes once),
    or, given ``noise``, Bernoulli spikes with probability ``x`` per step."""
    if noise is None:
        return constant_sequence(x, steps)
    return (noise.to(x.device) < x.unsqueeze(0)).to(x.dtype)


@torch.no_grad()
def _accuracy(snn: SpikingModel, data: tuple[torch.Tensor, np.ndarray], timesteps: int) -> float:
    """Accuracy at T of the network as it is now (the inference path, thresholds as numbers)."""
    x, labels = data
    out = snn._simulate(x, [timesteps], count=False).outputs[timesteps]
    return float((out.argmax(1) == labels).mean())


# -- data ----------------------------------------------------------------------------------------
class _TrainingData:
    """Training batches from arrays (shuffled with the seed) or from a DataLoader (its own order)."""

    def __init__(
        self, snn: SpikingModel, classes: int, batch_size: int, arrays=None, loader=None, cap: int | None = None
    ):
        self.snn, self.classes, self.arrays, self.loader = snn, classes, arrays, loader
        if arrays is not None:
            self.samples, self.batch_size = arrays[0].shape[0], min(batch_size, arrays[0].shape[0])
            self.example = arrays[0][:1]
            self.per_epoch = math.ceil(self.samples / self.batch_size)
        else:
            first_x, _ = self._convert(next(iter(loader)))
            self.example = first_x[:1]
            self.batch_size = int(loader.batch_size or first_x.shape[0])
            self.per_epoch = _length(loader, cap)
            if self.per_epoch is None:
                raise InvalidInputError(
                    "this DataLoader has no length (an iterable-style dataset): give steps_per_epoch=... batches"
                )
            self.samples = _length(loader.dataset, self.per_epoch * self.batch_size)

    def batches_per_epoch(self, cap: int | None) -> int:
        return self.per_epoch if cap is None else min(cap, self.per_epoch)

    def _convert(self, batch: Any) -> tuple[torch.Tensor, np.ndarray]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise InvalidInputError(
                "a training DataLoader must yield (inputs, labels) batches; got "
                f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}"
            )
        xb = self.snn._inputs(batch[0], "DataLoader inputs")
        yb = batch[1].detach().cpu().numpy() if isinstance(batch[1], torch.Tensor) else batch[1]
        return xb, labels_to_indices(yb, xb.shape[0], self.classes)

    def iterate(self, generator: torch.Generator, batches: int) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        if self.arrays is not None:
            x, labels = self.arrays
            order = torch.randperm(self.samples, generator=generator)
            for b in range(batches):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield x[idx], labels[idx.numpy()]
            return
        for b, batch in enumerate(self.loader):
            if b >= batches:
                return
            yield self._convert(batch)

    def head(self, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """Up to ``n`` training samples (from the arrays, or the loader's first batches)."""
        if self.arrays is not None:
            return self.arrays[0][:n], self.arrays[1][:n]
        xs, ys, have = [], [], 0
        for batch in self.loader:
            xb, yb = self._convert(batch)
            xs.append(xb)
            ys.append(yb)
            have += xb.shape[0]
            if have >= n:
                break
        return torch.cat(xs)[:n], np.concatenate(ys)[:n]


def _training_data(snn: SpikingModel, x: Any, y: Any, classes: int, batch_size: int, cap: int | None) -> _TrainingData:
    if isinstance(x, DataLoader):
        if y is not None:
            raise InvalidInputError("with a DataLoader the labels come from its batches: leave y out")
        return _TrainingData(snn, classes, batch_size, loader=x, cap=cap)
    if y is None:
        raise InvalidInputError("fine_tune needs labels: fine_tune(x, y, timesteps=...) or a DataLoader of (x, y)")
    xt = snn._inputs(as_tensor(x, "x"), "x")
    return _TrainingData(snn, classes, batch_size, arrays=(xt, labels_to_indices(y, xt.shape[0], classes)))


def _validation_data(snn: SpikingModel, data: Any, classes: int) -> tuple[torch.Tensor, np.ndarray]:
    if isinstance(data, DataLoader):
        loaded = _TrainingData(snn, classes, 1, loader=data, cap=1)  # only read through, never per epoch
        return loaded.head(_length(data.dataset, 1 << 62))
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InvalidInputError("validation_data must be (x, y) or a DataLoader of (inputs, labels) batches")
    xv = snn._inputs(as_tensor(data[0], "validation x"), "validation x")
    return xv, labels_to_indices(data[1], xv.shape[0], classes)


def _length(sized: Any, otherwise: int | None) -> int | None:
    """``len(sized)``, or ``otherwise`` for an iterable-style dataset (or its loader) without a length."""
    try:
        return len(sized)
    except TypeError:
        return otherwise


def _classes(snn: SpikingModel) -> int:
    with torch.no_grad():
        out = snn.ann(torch.zeros((1,) + tuple(snn.bridge_info.input_shape)))
    if out.dim() != 2:
        raise InvalidInputError(
            f"fine_tune trains classifiers (output [N, classes]); this model's output has shape {tuple(out.shape)}"
        )
    return int(out.shape[1])


# -- checks and planning -----------------------------------------------------------------------------
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_trainable(network: nn.Module, conversion_type: str, learn_thresholds: bool, learn_leak: bool) -> None:
    """Refuse, by module name, what backpropagation cannot train or what cannot be learned."""
    for name, module in network.named_modules():
        if isinstance(module, StatefulNode) and not module.differentiable:
            raise InvalidInputError(
                f"module '{name}' ({type(module).__name__}) of this {conversion_type} network has no "
                "surrogate-gradient path: the temporal codes are exact by construction, not trained. Fine-tune the "
                "ANN and convert again, or convert with conversion_type='rate' and fine-tune that"
            )
    if learn_thresholds or learn_leak:
        others = [
            f"'{n}' ({type(m).__name__})"
            for n, m in network.named_modules()
            if is_neuron(m) and not isinstance(m, IFNeuron)
        ]
        if others:
            raise InvalidInputError(
                f"learn_thresholds / learn_leak cover IF and LIF neurons (rate conversion); {others[0]} has its "
                "thresholds set by its code: fine-tune the weights only"
            )
    if learn_leak and not any(isinstance(m, IFNeuron) and m.tau is not None for m in network.modules()):
        raise InvalidInputError(
            "learn_leak: this network's neurons do not leak; convert with neuron='lif', tau=... to learn leaks"
        )


def _micro_batch(
    snn: SpikingModel, timesteps: int, batch_size: int, device: torch.device, memory_bytes: int | None
) -> int:
    """Samples per forward/backward so that the activations kept for backpropagation through ``timesteps`` steps
    fit the budget; `SimulationMemoryError` when one sample cannot fit in the device's free memory."""
    per_sample = max(1, snn._activation_elements) * timesteps * BPTT_BYTES_PER_ELEMENT
    free = available_memory(device)
    if free is not None and per_sample > free:
        raise SimulationMemoryError(
            f"backpropagation through T = {timesteps} steps keeps about {per_sample / 2**20:.0f} MiB of activations "
            f"per sample, but only {free / 2**20:.0f} MiB are free on {device}: fine-tune at fewer timesteps, "
            "on a smaller input, or on a device with more memory"
        )
    if memory_bytes is None:
        memory_bytes = (
            int(free * GPU_MEMORY_SHARE) if device.type == "cuda" and free is not None else DEFAULT_CPU_TRAINING_BYTES
        )
    return int(max(1, min(batch_size, memory_bytes // per_sample)))


def _surrogate_name(network: nn.Module) -> str:
    names = sorted({type(m.surrogate_function).__name__ for m in network.modules() if isinstance(m, BaseNode)})
    return "+".join(names) or "none"


__all__ = ["fine_tune", "FineTuneResult", "EpochRecord", "surrogate_function"]
