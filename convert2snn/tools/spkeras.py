"""SpKeras's call style on top of convert2snn's rate conversion (no second implementation).

Code written for SpKeras runs after an import change::

    from convert2snn.spkeras import cnn_to_snn          # was: from spkeras.models import cnn_to_snn
    snn_model = cnn_to_snn(signed_bit=0, amp_factor=100, method=1, epsilon=0.001)(cnn_model, x_train)
    loss, acc = snn_model.evaluate(x_test, y_test, timesteps=256, thresholding=0.5)
    max_spikes, spikes = snn_model.SpikeCounter(x_train[:100], timesteps=256, mode=0)
    weight_shapes, neurons = snn_model.NeuronNumbers(mode=0)

Meanings (SpKeras's) and where convert2snn deliberately differs:

- ``method``: 0 = threshold normalisation (thresholds λ_k/λ_{k−1}), 1 = weight normalisation
  (weights scaled by λ_{k−1}/λ_k). The two are the same network up to float rounding; convert2snn
  always folds the scales into the weights, so both give the same results here.
- λ per layer is the maximum activation on ``x_train`` (SpKeras's max normalisation) unless
  ``percentile`` (convert2snn's option; 99.9 gives fewer timesteps) is passed.
- ``epsilon``: SpKeras folds BatchNormalization with this ε instead of the layer's own; convert2snn
  folds with each layer's own ε (exact), so ``epsilon`` is accepted and has no effect.
- ``amp_factor``: currents and thresholds multiplied by it (no effect on spikes).
- ``signed_bit``: weights quantised to signed integers per layer. SpKeras derives the threshold
  from the largest weight of the layer with the wrong norm, which drops VGG-16 from 78.9 % to
  10 % at ``signed_bit=32`` (SpKeras issue #12); convert2snn scales the threshold by the same
  step as the weights, so accuracy is kept (see `convert2snn.schemes.rate.quantize_weights`).
- ``thresholding``: the initial membrane potential as a fraction of the threshold (0.5 = error
  centering); changing it in ``evaluate``/``SpikeCounter`` re-sets the neurons, no re-conversion.
- Input: SpKeras feeds ⌊x·T⌋ spread over T steps; convert2snn feeds x as a constant current
  (the same total charge, without the rounding).
- ``scaling_factor`` ≠ 1, ``spike_ext`` ≠ 0 and ``noneloss=True`` change SpKeras's spike
  layers in ways convert2snn does not reproduce: they raise `InvalidInputError` instead of being
  ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bridges import ops

from ..errors import InvalidInputError
from ..inputs import as_tensor, labels_to_indices
from ..model import SpikingModel
from ..neurons import IFNeuron
from ..stages import bridge, convert


def _unsupported(scaling_factor: float, spike_ext: int, noneloss: bool) -> None:
    if scaling_factor != 1:
        raise InvalidInputError(
            f"scaling_factor={scaling_factor}: only 1 is supported (SpKeras's output scaling has no equivalent here)"
        )
    if spike_ext:
        raise InvalidInputError(
            f"spike_ext={spike_ext}: extra spike-extension steps are not supported; use more timesteps"
        )
    if noneloss:
        raise InvalidInputError(
            "noneloss=True is not supported: the readout already integrates every input current without loss"
        )


def set_initial_potential(snn: SpikingModel, thresholding: float) -> None:
    """Set every IF neuron's initial membrane potential to ``thresholding`` × its threshold."""
    if not 0.0 <= float(thresholding) < 1.0:
        raise InvalidInputError(f"thresholding (initial potential / threshold) must be in [0, 1), got {thresholding}")
    neurons = [(name, node) for name, node in snn.network.named_modules() if isinstance(node, IFNeuron)]
    tuned = [name for name, node in neurons if not node.uniform_start]
    if tuned:
        raise InvalidInputError(
            f"layer '{tuned[0]}' has per-channel initial potentials tuned for timesteps={snn.options.timesteps} "
            "(recipes with 'potential'); setting one thresholding would undo them: convert without 'potential'"
        )
    for node in snn.network.modules():
        if isinstance(node, IFNeuron):
            node.v_init = float(thresholding)
            node.set_reset_value("v", node.v_init * node.v_threshold)
            node.reset()
    snn.options.v_init = float(thresholding)


class cnn_to_snn:  # noqa: N801  (SpKeras's name)
    """``cnn_to_snn(...)(cnn_model, x_train)`` → this object with SpKeras's methods; see the module doc."""

    def __init__(
        self,
        timesteps: int = 256,
        thresholding: float = 0.5,
        signed_bit: int = 0,
        scaling_factor: float = 1,
        method: int = 1,
        amp_factor: float = 100,
        epsilon: float = 0.001,
        spike_ext: int = 0,
        noneloss: bool = False,
        percentile: float = 100.0,
        **options: Any,
    ):
        if method not in (0, 1):
            raise InvalidInputError(
                f"method must be 0 (threshold normalisation) or 1 (weight normalisation), got {method!r}"
            )
        _unsupported(scaling_factor, spike_ext, noneloss)
        self.timesteps = int(timesteps)
        self.thresholding = float(thresholding)
        self.method = int(method)
        self.epsilon = float(epsilon)
        self.options = {
            "signed_bit": int(signed_bit),
            "amp_factor": float(amp_factor),
            "percentile": float(percentile),
            "v_init": float(thresholding),
            "per_channel": False,
            **options,
        }
        self.snn: SpikingModel | None = None

    def __call__(self, cnn_model: Any, x_train: Any) -> cnn_to_snn:
        """Convert ``cnn_model`` (any model `bridge` takes, or a `SpikingModel`: its ANN) by rate coding, calibrated
        on ``x_train``; returns the converter, whose `model` is then the SNN."""
        x = as_tensor(x_train, "x_train")
        example = x[:1] if isinstance(cnn_model, torch.nn.Module) else None
        ann = cnn_model.ann if isinstance(cnn_model, SpikingModel) else bridge(cnn_model, example)
        self.snn = convert(ann, "rate", x, **self.options)
        self.snn.report.notes.append(
            f"SpKeras style: method={self.method} (scales folded into weights either way), epsilon={self.epsilon} "
            "not used (BatchNorm folded with each layer's own epsilon)"
        )
        return self

    @property
    def model(self) -> SpikingModel:
        """The converted `SpikingModel` (`InvalidInputError` before the converter has been called)."""
        if self.snn is None:
            raise InvalidInputError("call the converter first: cnn_to_snn(...)(cnn_model, x_train)")
        return self.snn

    def _prepare(
        self, timesteps: int, thresholding: float, scaling_factor: float, spike_ext: int, noneloss: bool
    ) -> int:
        _unsupported(scaling_factor, spike_ext, noneloss)
        if float(thresholding) != self.model.options.v_init:
            set_initial_potential(self.model, thresholding)
        self.timesteps, self.thresholding = int(timesteps), float(thresholding)
        return int(timesteps)

    def evaluate(
        self,
        x_test: Any,
        y_test: Any,
        timesteps: int = 256,
        thresholding: float = 0.5,
        scaling_factor: float = 1,
        spike_ext: int = 0,
        noneloss: bool = False,
    ) -> tuple[float, float]:
        """Keras-style ``(loss, accuracy)`` after ``timesteps`` steps: categorical cross-entropy of the
        softmax of the readout (the ANN's logits as T → ∞) against the labels (indices or one-hot)."""
        t = self._prepare(timesteps, thresholding, scaling_factor, spike_ext, noneloss)
        scores = torch.as_tensor(self.model.predict(x_test, timesteps=t), dtype=torch.float64)
        labels = labels_to_indices(y_test, scores.shape[0], scores.shape[1])
        loss = float(torch.nn.functional.cross_entropy(scores, torch.as_tensor(labels)))
        acc = float((scores.argmax(1).numpy() == labels).mean())
        return loss, acc

    def SpikeCounter(  # noqa: N802  (SpKeras's name)
        self,
        x_train: Any,
        timesteps: int = 255,
        thresholding: float = 0.5,
        scaling_factor: float = 1,
        spike_ext: int = 0,
        batch_size: int = 100,
        noneloss: bool = False,
        mode: int = 0,
    ) -> tuple[list[int], list[Any]]:
        """``(max_spikes, counts)`` per spiking layer, in graph order.

        ``max_spikes[k]``: the most spikes any neuron of layer k fired for one input. ``mode=0``:
        ``counts[k]`` = ⌈total spikes of layer k / number of inputs⌉; ``mode=1``: ``counts[k]`` is a
        histogram, ``counts[k][m]`` = how many (input, neuron) pairs fired exactly m spikes.
        SpKeras's own default here is ``thresholding=1``; ours is 0.5 (error centering), as in
        ``evaluate``, so that the counts belong to the network being evaluated.
        """
        t = self._prepare(timesteps, thresholding, scaling_factor, spike_ext, noneloss)
        if mode not in (0, 1):
            raise InvalidInputError(f"mode must be 0 (totals) or 1 (histogram), got {mode!r}")
        previous = self.model.options.batch_size
        self.model.options.batch_size = int(batch_size)
        try:
            hist = [
                np.asarray(h, dtype=np.int64) for h in self.model.spike_counts(x_train, timesteps=t, mode=1).values()
            ]
            max_spikes = [len(h) - 1 for h in hist]
            if mode == 1:
                return max_spikes, [h.tolist() for h in hist]
            n = as_tensor(x_train, "x_train").shape[0]  # totals from the same run: Σ_k k·h[k]
            return max_spikes, [int(np.ceil(int(np.dot(np.arange(len(h)), h)) / n)) for h in hist]
        finally:
            self.model.options.batch_size = previous

    def NeuronNumbers(self, mode: int = 0) -> tuple[list[tuple[int, ...]], list[int]]:  # noqa: N802
        """``(weight_shapes, neurons)``: the weight shape of every Conv/Linear layer and the neurons
        of every spiking layer; ``mode=1`` leaves out layers fed by average pooling."""
        shapes = [
            tuple(m.weight.shape) for m in self.model.network.modules() if isinstance(m, ops.CONV + (torch.nn.Linear,))
        ]
        return shapes, list(self.model.neuron_counts(mode=mode).values())

    def get_config(self) -> dict[str, Any]:
        """The converter's settings (timesteps, thresholding, method, epsilon and the rate options but ``v_init``)."""
        return {
            "timesteps": self.timesteps,
            "thresholding": self.thresholding,
            "method": self.method,
            "epsilon": self.epsilon,
            **{k: v for k, v in self.options.items() if k != "v_init"},
        }


__all__ = ["cnn_to_snn", "set_initial_potential"]
