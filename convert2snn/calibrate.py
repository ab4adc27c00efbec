"""Activation statistics from calibration data: the per-layer (or per-channel) scales λ.

One pass over the data in batches. For a percentile p only the top (100 − p) % of the values
can matter, so each layer keeps just those (a running top-k): memory stays bounded by the
data size times (100 − p) %, and the result is the exact order statistic, not an estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import fx, nn

from .progress import progress_bar


@dataclass
class LayerStatistics:
    """The largest values of one activation layer over the calibration data."""

    top: torch.Tensor  # [k] or [C, k], sorted descending
    count: int  # values seen (per channel when per_channel)
    per_channel: bool

    def scale(self, percentile: float) -> torch.Tensor:
        """λ: the activation value at ``percentile`` (100 = the maximum); scalar or [C]."""
        k = _top_count(self.count, percentile)
        if k > self.top.shape[-1]:
            raise ValueError(f"percentile {percentile} needs the top {k} values; only {self.top.shape[-1]} were kept")
        return self.top[..., k - 1].clone()


def _top_count(n: int, percentile: float) -> int:
    """How many of the largest values reach down to the ``percentile`` order statistic."""
    rank = max(1, math.ceil(percentile / 100.0 * n))  # 1-based rank from the bottom
    return n - rank + 1


@torch.no_grad()
def collect_statistics(ann: fx.GraphModule, data: torch.Tensor, nodes: list[str], *, min_percentile: float,
                       per_channel: bool = False, batch_size: int = 256, device: torch.device | str = "cpu",
                       progress: bool = True) -> dict[str, LayerStatistics]:
    """Statistics of the outputs of the call_module ``nodes`` of ``ann`` over ``data``.

    ``data`` is in the ANN's (PyTorch) layout. Enough values are kept to read any percentile
    ≥ ``min_percentile`` afterwards.
    """
    modules = {n.name: ann.get_submodule(n.target) for n in ann.graph.nodes if n.op == "call_module" and n.name in nodes}
    missing = set(nodes) - set(modules)
    if missing:
        raise KeyError(f"no call_module nodes named {sorted(missing)}")
    n_samples = data.shape[0]
    buffers: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    keep: dict[str, int] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            out = output.detach().float()
            if per_channel:
                values = out.transpose(0, 1).reshape(out.shape[1], -1)  # [C, batch·rest]
            else:
                values = out.reshape(1, -1)
            if name not in keep:
                per_sample = values.shape[1] // out.shape[0]
                counts[name] = per_sample * n_samples
                keep[name] = min(_top_count(counts[name], min_percentile), counts[name])
            merged = values if name not in buffers else torch.cat([buffers[name], values], dim=1)
            k = min(keep[name], merged.shape[1])
            buffers[name] = torch.topk(merged, k, dim=1, sorted=True).values
        return hook

    model = ann.to(device).eval()
    handles = [m.register_forward_hook(make_hook(name)) for name, m in modules.items()]
    try:
        for start in progress_bar(range(0, n_samples, batch_size), desc="calibrating", enabled=progress,
                                  total=math.ceil(n_samples / batch_size)):
            model(data[start:start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        ann.to("cpu")
    return {
        name: LayerStatistics(top=(buffers[name] if per_channel else buffers[name][0]).cpu(), count=counts[name],
                              per_channel=per_channel)
        for name in modules
    }


# -- data-free bounds --------------------------------------------------------------------------
class _IntervalInterpreter(fx.Interpreter):
    """Propagates elementwise [low, high] bounds through a clean graph (interval arithmetic).

    Each value is a pair (low, high) of per-sample tensors. Weighted layers split their weights by
    sign; monotone maps (pooling, reshapes, padding, activations) apply to both ends.
    """

    def run_node(self, n: fx.Node):
        if n.op == "placeholder":
            return super().run_node(n)
        if n.op == "output":
            return super().run_node(n)
        args = self.map_nodes_to_values(n.args, n)
        if n.op == "call_module":
            return _interval_module(self.module.get_submodule(n.target), args[0])
        if n.op == "call_function":
            return _interval_function(n.target, args, n.kwargs)
        raise TypeError(f"cannot bound node {n.name} ({n.op})")


def _interval_module(m: nn.Module, x: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    from bridges.fold import WEIGHTED_TYPES
    from bridges.modules import Affine

    from bridges.converters.lstm import LSTM

    if isinstance(m, LSTM):
        # y and h = o·tanh(c) lie in [−1, 1]; |c_t| ≤ t since c_t = f·c_{t−1} + i·g with |i·g| ≤ 1
        y, y_h, y_c = m(x[0])
        steps = float(x[0].shape[1] if getattr(m, "layout", 1) == 1 else x[0].shape[0])
        return tuple((torch.full_like(v, -b), torch.full_like(v, b)) for v, b in ((y, 1.0), (y_h, 1.0), (y_c, steps)))
    low, high = x
    if isinstance(m, WEIGHTED_TYPES):
        pos, neg = m.weight.clamp(min=0), m.weight.clamp(max=0)

        def call(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return _apply_weight(m, t, w)

        bias = 0.0 if m.bias is None else m.bias.reshape((-1,) + (1,) * (low.dim() - 2))
        return call(low, pos) + call(high, neg) + bias, call(high, pos) + call(low, neg) + bias
    if isinstance(m, Affine):
        scale = m.scale if m.scale is not None else torch.tensor(1.0)
        bias = m.bias if m.bias is not None else torch.tensor(0.0)
        a, b = low * scale + bias, high * scale + bias
        return torch.minimum(a, b), torch.maximum(a, b)
    # monotone non-decreasing maps: pooling, activations, reshapes, padding, upsampling, softmax-free heads
    return m(low), m(high)


def _apply_weight(m: nn.Module, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``m``'s linear map with weight ``w`` and no bias."""
    from bridges.fold import CONV_TYPES

    if isinstance(m, nn.Linear):
        return torch.nn.functional.linear(t, w)
    if isinstance(m, CONV_TYPES):
        return m._conv_forward(t, w, None)
    fn = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
          3: torch.nn.functional.conv_transpose3d}[w.dim() - 2]
    return fn(t, w, None, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


def _interval_function(fn, args, kwargs):
    import operator

    if fn is operator.add:
        return args[0][0] + args[1][0], args[0][1] + args[1][1]
    if fn is operator.sub:
        return args[0][0] - args[1][1], args[0][1] - args[1][0]
    if fn is operator.getitem:
        value, index = args
        if isinstance(value[0], torch.Tensor):  # an interval: index both ends
            return value[0][index], value[1][index]
        return value[index]  # a tuple of intervals (a module with several outputs)
    if fn is torch.cat:
        parts = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return torch.cat([p[0] for p in parts], dim=dim), torch.cat([p[1] for p in parts], dim=dim)
    raise TypeError(f"cannot bound {getattr(fn, '__name__', fn)}")


@torch.no_grad()
def interval_maxima(ann: fx.GraphModule, input_shape: tuple[int, ...], input_range: tuple[float, float],
                    nodes: list[str], per_channel: bool = False) -> dict[str, torch.Tensor]:
    """Upper bounds of the outputs of ``nodes`` over all inputs in ``input_range`` (data-free).

    Each node's maximum is the largest activation any input in the box can produce, so a scale set
    to it never clips; being a worst case it is larger than what real data reaches. With
    ``per_channel`` the bound is per channel (axis 1 of the activation).
    """
    low = torch.full((1,) + tuple(input_shape), float(input_range[0]))
    high = torch.full((1,) + tuple(input_shape), float(input_range[1]))
    interp = _IntervalInterpreter(ann)
    seen: dict[str, torch.Tensor] = {}
    original = interp.run_node

    def record(n: fx.Node):
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
