"""What the scales λ are measured from: activation statistics of calibration data, or interval bounds.

Statistics: one pass over the data in batches. For a percentile p only the top (100 − p) % of the
values can matter, so each layer keeps just those (a running top-k): memory stays bounded by the
data size times (100 − p) %, and the result is the exact order statistic, not an estimate.

Bounds (no data): per-element [low, high] intervals propagated through the graph by each op's
declared interval rule (`bridges.ops`); an op without one is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn

from bridges import ops

from .errors import ConversionError, SimulationMemoryError, UnsupportedLayerError
from .progress import progress_bar


@dataclass
class LayerStatistics:
    """The largest values of one activation layer over the calibration data (of its output; of its
    input, with the smallest values too, for a layer whose input range is measured)."""

    top: torch.Tensor  # [k] or [C, k], sorted descending
    count: int  # values seen (per channel when per_channel)
    per_channel: bool
    bottom: torch.Tensor | None = None  # the largest values of −x: [k], sorted descending (input ranges)

    def scale(self, percentile: float) -> torch.Tensor:
        """λ: the activation value at ``percentile`` (100 = the maximum); scalar or [C]."""
        return _order_statistic(self.top, self.count, percentile)

    def range(self, percentile: float) -> tuple[float, float]:
        """[low, high]: the values at 100 − ``percentile`` and ``percentile`` (100: the minimum and
        maximum); below 50 the two swap, so low ≤ high always."""
        if self.bottom is None:
            raise ValueError("these statistics kept the largest values only (no input range)")
        low = -float(_order_statistic(self.bottom, self.count, percentile))
        high = float(_order_statistic(self.top, self.count, percentile))
        return min(low, high), max(low, high)


def _order_statistic(top: torch.Tensor, count: int, percentile: float) -> torch.Tensor:
    k = _top_count(count, percentile)
    if k > top.shape[-1]:
        raise ValueError(f"percentile {percentile} needs the top {k} values; only {top.shape[-1]} were kept")
    return top[..., k - 1].clone()


def _top_count(n: int, percentile: float) -> int:
    """How many of the largest values reach down to the ``percentile`` order statistic."""
    rank = max(1, math.ceil(percentile / 100.0 * n))  # 1-based rank from the bottom
    return n - rank + 1


@torch.no_grad()
def collect_statistics(
    ann: fx.GraphModule,
    data: torch.Tensor,
    nodes: list[str],
    *,
    min_percentile: float,
    per_channel: bool = False,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = True,
    input_ranges: Sequence[str] = (),
) -> dict[str, LayerStatistics]:
    """Statistics of the outputs of the call_module ``nodes`` of ``ann`` over ``data``, and of the
    inputs of the call_module nodes ``input_ranges`` (per layer, largest and smallest values).

    ``data`` is in the ANN's (PyTorch) layout. Enough values are kept to read any percentile
    ≥ ``min_percentile`` afterwards.
    """
    wanted = set(nodes) | set(input_ranges)
    modules = {
        n.name: ann.get_submodule(n.target) for n in ann.graph.nodes if n.op == "call_module" and n.name in wanted
    }
    missing = wanted - set(modules)
    if missing:
        raise KeyError(f"no call_module nodes named {sorted(missing)}")
    n_samples = data.shape[0]
    buffers: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    keep: dict[str, int] = {}

    def keep_top(key: str, values: torch.Tensor, batch: int) -> None:
        if key not in keep:
            counts[key] = values.shape[1] // batch * n_samples
            keep[key] = min(_top_count(counts[key], min_percentile), counts[key])
        merged = values if key not in buffers else torch.cat([buffers[key], values], dim=1)
        buffers[key] = torch.topk(merged, min(keep[key], merged.shape[1]), dim=1, sorted=True).values

    def make_hook(name: str):
        def hook(_module: nn.Module, inputs, output: torch.Tensor) -> None:
            if name in nodes:
                out = output.detach().float()
                # per channel: [C, batch·rest]
                values = out.transpose(0, 1).reshape(out.shape[1], -1) if per_channel else out.reshape(1, -1)
                keep_top(name, values, out.shape[0])
            if name in input_ranges:
                x = inputs[0].detach().float()
                keep_top(name + _INPUT_HIGH, x.reshape(1, -1), x.shape[0])
                keep_top(name + _INPUT_LOW, -x.reshape(1, -1), x.shape[0])

        return hook

    nodes, input_ranges = set(nodes), set(input_ranges)
    model = ann.to(device).eval()
    handles = [m.register_forward_hook(make_hook(name)) for name, m in modules.items()]
    try:
        for start in progress_bar(
            range(0, n_samples, batch_size),
            desc="calibrating",
            enabled=progress,
            total=math.ceil(n_samples / batch_size),
        ):
            try:
                model(data[start : start + batch_size].to(device))
            except torch.OutOfMemoryError as exc:
                raise SimulationMemoryError(
                    f"calibration batches of {batch_size} samples do not fit in {device}'s memory; pass a smaller "
                    "batch_size"
                ) from exc
            except RuntimeError as exc:  # the clean ANN ran on these shapes when bridged: a bug
                raise ConversionError(
                    f"internal error: the clean ANN failed on calibration samples {start}…{start + batch_size - 1} "
                    f"({' '.join(str(exc).split())}); please report this model"
                ) from exc
    finally:
        for h in handles:
            h.remove()
        ann.to("cpu")
    result = {
        name: LayerStatistics(
            top=(buffers[name] if per_channel else buffers[name][0]).cpu(), count=counts[name], per_channel=per_channel
        )
        for name in modules
        if name in nodes
    }
    for name in input_ranges:
        result[input_key(name)] = LayerStatistics(
            top=buffers[name + _INPUT_HIGH][0].cpu(),
            count=counts[name + _INPUT_HIGH],
            per_channel=False,
            bottom=buffers[name + _INPUT_LOW][0].cpu(),
        )
    return result


_INPUT_HIGH, _INPUT_LOW = ":input", ":input-low"


def input_key(node: str) -> str:
    """The key under which `collect_statistics` keeps the input range of ``node``."""
    return node + _INPUT_HIGH


# A calibration's per-node tensors (`convert2snn.stages.Calibration.scales`) hold λ under the node's
# name and, for a conversion tuned to a latency (`convert2snn.recipes`), corrections under these keys.
def offset_key(node: str) -> str:
    """The key of ``node``'s tuned bias: a per-channel offset added to its pre-activation (ANN units)."""
    return node + ":offset"


def measured_key(node: str) -> str:
    """The key of ``node``'s λ as calibration measured it, kept where tuning changed λ (to tune again from)."""
    return node + ":measured"


def potential_key(node: str) -> str:
    """The key of ``node``'s tuned initial membrane potential (a fraction of the threshold, per channel)."""
    return node + ":v_init"


# -- data-free bounds --------------------------------------------------------------------------
class _IntervalInterpreter(fx.Interpreter):
    """Propagates elementwise [low, high] bounds through a clean graph (interval arithmetic): every
    value is a pair (low, high) of per-sample tensors, every op applies its declared rule."""

    def run_node(self, n: fx.Node):
        if n.op in ("placeholder", "output"):
            return super().run_node(n)
        args = self.map_nodes_to_values(n.args, n)
        kwargs = self.map_nodes_to_values(n.kwargs, n)
        op = self.module.get_submodule(n.target) if n.op == "call_module" else n.target
        spec = ops.spec(op) if n.op in ("call_module", "call_function") else None
        if spec is None:
            name = ops.op_name(op)
            raise UnsupportedLayerError(
                f"node '{n.name}' ({name}): no interval bounds are declared for it, so the data-free scales cannot be "
                "computed; pass calibration_data",
                layer=n.name,
                op=name,
            )
        return spec.bounds(op, tuple(args), dict(kwargs))


@torch.no_grad()
def interval_maxima(
    ann: fx.GraphModule,
    input_shape: tuple[int, ...],
    input_range: tuple[float, float],
    nodes: list[str],
    per_channel: bool = False,
    input_ranges: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """Upper bounds of the outputs of ``nodes`` over all inputs in ``input_range`` (data-free).

    Each node's maximum is the largest activation any input in the box can produce, so a scale set
    to it never clips; being a worst case it is larger than what real data reaches. With
    ``per_channel`` the bound is per channel (axis 1 of the activation). For the nodes
    ``input_ranges``: the [low, high] bounds of their input, as a tensor of two values under
    `input_key` (node).
    """
    low = torch.full((1,) + tuple(input_shape), float(input_range[0]))
    high = torch.full((1,) + tuple(input_shape), float(input_range[1]))
    interp = _IntervalInterpreter(ann)
    seen: dict[str, torch.Tensor] = {}
    original = interp.run_node

    def record(n: fx.Node):
        if n.name in input_ranges:
            lo, hi = interp.env[n.args[0]]
            seen[input_key(n.name)] = torch.stack([lo.min(), hi.max()]).float()
        out = original(n)
        if n.name in nodes:
            upper = out[1][0]
            if per_channel and upper.dim() >= 1:  # channel axis first (batch removed)
                seen[n.name] = upper.reshape(upper.shape[0], -1).amax(dim=1).clamp(min=0.0)
            else:
                seen[n.name] = upper.reshape(-1).max().clamp(min=0.0)
        return out

    interp.run_node = record
    interp.run((low, high))
    return seen
