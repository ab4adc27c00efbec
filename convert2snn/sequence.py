"""Stateless layers applied to sequences [T, B, ...] (multi-step mode).

A stateless layer runs once on time folded into the batch. When its input does not change
over time (an expanded view with stride 0 on the time axis, as the simulator passes for
analog input), it runs once on one step and the result is expanded again: the first
layer's current for a constant input is computed once, not T times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.base import StepModule
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp


def is_time_constant(x: torch.Tensor) -> bool:
    """True for a sequence whose steps are one tensor repeated (a stride-0 time axis)."""
    return x.dim() > 0 and (x.shape[0] == 1 or x.stride(0) == 0)


def silent(like: torch.Tensor) -> torch.Tensor:
    """An all-zero tensor shaped like ``like`` that occupies one element (every stride 0): a node's
    way of saying "no spikes this chunk" that the layers after it recognise without reading it
    (a stateless layer then computes one sample of one step, see `SeqModule`)."""
    return like.new_zeros(()).expand(like.shape)


def is_silent(x: torch.Tensor) -> bool:
    """True for a `silent` tensor (checked on CPU tensors only: on CUDA it would cost a host sync)."""
    return (
        x.dim() > 0
        and not x.is_cuda
        and all(s == 0 for s in x.stride())
        and x.numel() > 0
        and float(x[(0,) * x.dim()]) == 0.0
    )


def constant_sequence(x: torch.Tensor, steps: int) -> torch.Tensor:
    """``x`` (one step) as a [steps, ...] sequence without copying."""
    return x.unsqueeze(0).expand((steps,) + tuple(x.shape))


def memory_order(t: torch.Tensor, first: int = 0) -> list[int]:
    """``t``'s dims from ``first`` on, outermost in memory first (for channels-last N, C, H, W:
    N, H, W, C): permuting a dense tensor by them gives a contiguous view."""
    return sorted(range(first, t.dim()), key=lambda d: (-t.stride(d), d))


def sequence_buffer(x_seq: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor shaped like ``x_seq`` [T, ...] whose steps are contiguous blocks laid out
    like ``x_seq[0]`` (channels-last stays channels-last; a stride-0 time axis gets real storage)."""
    step = torch.empty_like(x_seq[0])
    return torch.empty_strided(x_seq.shape, (step.numel(),) + step.stride(), dtype=x_seq.dtype, device=x_seq.device)


class SeqModule(nn.Module, StepModule):
    """Apply a stateless module to every time step of a sequence (once, when the steps are all the
    same; on one sample, when the samples are all the same as well). In single-step mode
    (SpikingJelly's ``step_mode = "s"``, set by `functional.set_step_mode`) it is the module itself."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Input [T, B, ...] → [T, B, ...]: the module on time folded into the batch; a time-constant input runs
        one step (one sample when the samples are constant too) and is expanded back. Single-step mode:
        [B, ...] → the module's output."""
        if self.step_mode == "s":
            return self.module(x_seq)
        steps = x_seq.shape[0]
        if is_time_constant(x_seq):
            step = x_seq[0]
            if step.dim() > 1 and step.shape[0] > 1 and step.stride(0) == 0:  # every sample the same too
                one = self.module(step[:1])  # (silent input, e.g.): samples are independent here
                return constant_sequence(one.expand((step.shape[0],) + tuple(one.shape[1:])), steps)
            return constant_sequence(self.module(step), steps)
        y = self.module(x_seq.flatten(0, 1))
        return y.reshape((steps, x_seq.shape[1]) + tuple(y.shape[1:]))


class SeqAdd(nn.Module, StepModule):
    """Elementwise sum (or difference, ``sign=-1`` on the second input) of sequences."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = float(sign)
        self.step_mode = "m"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a + sign·b`` for sequences [T, B, ...] (time-constant, without copies, when both inputs are), or for
        one step [B, ...] in single-step mode."""
        if self.step_mode == "s":
            return a + self.sign * b
        steps = max(a.shape[0], b.shape[0])
        if is_time_constant(a) and is_time_constant(b):
            return constant_sequence(a[0] + self.sign * b[0], steps)
        return a + self.sign * b


class SeqCat(nn.Module, StepModule):
    """Concatenate sequences along a per-sample axis (``dim`` counts the batch axis as 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.step_mode = "m"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """The sequences [T, B, ...] concatenated along per-sample axis ``dim`` (time-constant ones expanded to T;
        the result is time-constant when all inputs are); in single-step mode, steps [B, ...] along ``dim``."""
        if self.step_mode == "s":
            return torch.cat(xs, dim=self.dim)
        steps = max(x.shape[0] for x in xs)
        if all(is_time_constant(x) for x in xs):
            return constant_sequence(torch.cat([x[0] for x in xs], dim=self.dim), steps)
        return torch.cat([x.expand((steps,) + tuple(x.shape[1:])) for x in xs], dim=self.dim + 1)


@torch.no_grad()
def propagate_shapes(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Record every node's output shape in ``node.meta["tensor_meta"]`` (in multi-step mode, whatever mode the
    user left the network in); neuron state is reset after."""
    with multi_step_mode(gm):
        ShapeProp(gm).propagate(example)
    functional.reset_net(gm)


@contextlib.contextmanager
def multi_step_mode(network: nn.Module) -> Iterator[nn.Module]:
    """Run ``network`` in multi-step mode for the block (simulation and fine-tuning feed [T, B, ...]), and give
    every module its own step mode back after: a user who set single-step mode with SpikingJelly's
    `functional.set_step_mode(network, "s")` keeps it."""
    modes = {m: m.step_mode for m in network.modules() if isinstance(m, StepModule) and m.step_mode != "m"}
    for module in modes:
        module.step_mode = "m"
    try:
        yield network
    finally:
        for module, mode in modes.items():
            module.step_mode = mode
