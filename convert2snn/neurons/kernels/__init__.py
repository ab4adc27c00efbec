"""Multi-step kernels for the integrate-and-fire scans, chosen by an explicit ``backend``, with
each node's torch loop as the reference.

Backends (a node's ``backend`` attribute, `convert2snn.neurons.set_backend` for a whole network):

- ``"triton"``: one Triton kernel (`triton_kernel.py`) covers every reset-by-subtraction scan the
  converter builds: `IFNeuron` (rate: one neuron per unit, membrane starting at v_init·θ, optional
  leak), `PopulationIFNode` (n neurons per unit, per-neuron thresholds shared by all units or one
  set per unit, output = spikes / n) and `PhaseNode` (oscillating threshold
  θ0·2^−(1 + (t0 + t) mod K), output = the weighted spike). Each program owns a block of units
  and keeps their membranes in registers for the whole time chunk: the input is read once per
  step (a stride-0 time axis — constant analog input — is read from one row), the output written
  once, the membrane stored at the end. No host↔device traffic and no Python work per step.
- ``"numba"``: the `IFNeuron` and `PopulationIFNode` scans on the CPU (`numba_kernels.py`, ``pip
  install convert2snn[cpu]``): one memory pass per step instead of the torch loops' three to five,
  bit-identical to them, in any memory layout whose steps are dense. A layout a kernel declines
  runs the torch loop.
- ``"torch"``: the nodes' own loops (also the autograd path).
- ``"auto"`` (default): Triton for CUDA tensors when Triton imports, Numba for CPU tensors when
  Numba imports, else torch; ``CONVERT2SNN_NO_KERNELS=1`` makes "auto" mean "torch".

`tests/convert2snn/neurons/test_kernels.py` runs the Triton kernel in Triton's interpreter on the
CPU (``TRITON_INTERPRET=1``, set by the tests' conftest): spikes bit-exact, membranes equal;
`test_cpu_kernels.py` checks the Numba kernels against the torch loops.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np
import torch

from ...errors import InvalidInputError
from ...sequence import memory_order, sequence_buffer

BACKENDS = ("auto", "triton", "numba", "torch")
BLOCK = 128


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when Triton can be imported."""
    return importlib.util.find_spec("triton") is not None


@functools.lru_cache(maxsize=1)
def numba_available() -> bool:
    """True when Numba can be imported (the CPU kernels)."""
    return importlib.util.find_spec("numba") is not None


def check_backend(backend: str) -> None:
    """Raise `InvalidInputError` unless ``backend`` is one of `BACKENDS`."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")


def choose(backend: str, x: torch.Tensor) -> str:
    """The backend a scan of ``x`` runs on: ``"auto"`` resolved (see the module docstring), an explicit
    choice as given after checking that it can run here."""
    check_backend(backend)
    if backend == "auto":
        if os.environ.get("CONVERT2SNN_NO_KERNELS") == "1":
            return "torch"
        if x.is_cuda and triton_available():
            return "triton"
        if x.device.type == "cpu" and numba_available():
            return "numba"
        return "torch"
    if backend == "triton":
        if not triton_available():
            raise InvalidInputError("backend='triton' needs Triton (pip install triton)")
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise InvalidInputError(
                f"backend='triton' runs on CUDA tensors (or in Triton's interpreter, "
                f"TRITON_INTERPRET=1); this simulation runs on {x.device}"
            )
    if backend == "numba":
        if not numba_available():
            raise InvalidInputError("backend='numba' needs Numba: pip install 'convert2snn[cpu]'")
        if x.device.type != "cpu":
            raise InvalidInputError(f"backend='numba' runs on CPU tensors; this simulation runs on {x.device}")
    return backend


# -- the scans each node asks for ------------------------------------------------------------------
def if_scan(
    x_seq: torch.Tensor, v: torch.Tensor, threshold: float, *, decay: float | None = None, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`IFNeuron`'s scan with a kernel: (spikes [T, ...], the updated membrane), or None when the
    chosen backend is "torch" or the kernel declines this layout (the node then runs its loop)."""
    chosen = choose(backend, x_seq)
    if chosen == "triton":
        v = v.contiguous()
        return triton_scan(x_seq, v.unsqueeze(-1), torch.tensor([threshold]), decay=decay), v
    if chosen == "numba":
        spikes = sequence_buffer(x_seq)
        if numba_if_scan(x_seq, v, threshold, spikes, decay=decay):
            return spikes, v
    return None


def population_scan(
    x_seq: torch.Tensor, v: torch.Tensor, thresholds: torch.Tensor, *, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`PopulationIFNode`'s scan with a kernel: (spike counts / n [T, ...], the updated membranes), or
    None (see `if_scan`)."""
    chosen = choose(backend, x_seq)
    if chosen == "triton":
        v = v.contiguous()
        return triton_scan(x_seq, v, thresholds, out_scale=1.0 / v.shape[-1]), v
    if chosen == "numba":
        out = sequence_buffer(x_seq)
        if numba_population_scan(x_seq, v, thresholds, out):
            return out, v
    return None


def phase_scan(
    x_seq: torch.Tensor,
    v: torch.Tensor,
    period: int,
    t0: int,
    theta0: float,
    out_scale: float,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`PhaseNode`'s scan with the Triton kernel (weighted spikes, the updated membrane), or None (no
    CPU kernel: the node runs its loop)."""
    if choose(backend, x_seq) != "triton":
        return None
    v = v.contiguous()
    return triton_scan(x_seq, v.unsqueeze(-1), torch.ones(1), phase=(period, t0, theta0), out_scale=out_scale), v


# -- Numba (CPU) ----------------------------------------------------------------------------------------
def _dense(t: torch.Tensor) -> bool:
    """True when ``t``'s elements fill one block of memory without gaps, in any dimension order
    (contiguous, channels-last, ...)."""
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _memory_order(t: torch.Tensor, rows: int, units: int) -> Any:
    """[rows, units] NumPy view of the memory behind ``t`` (rows ``units`` elements apart)."""
    return torch.as_strided(t, (rows, units), (units, 1), t.storage_offset()).detach().numpy()


def _cpu_usable(x_seq: torch.Tensor) -> bool:
    return numba_available() and x_seq.device.type == "cpu" and x_seq.dtype in (torch.float32, torch.float64)


def _input_rows(x_seq: torch.Tensor, units: int) -> tuple[Any, int] | None:
    """``x_seq``'s steps as NumPy rows for a CPU kernel, and the row step (0: one row for a
    constant input); None when its steps are not ``units`` elements apart."""
    steps = x_seq.shape[0]
    if steps == 1 or x_seq.stride(0) == 0:
        return _memory_order(x_seq, 1, units), 0
    if x_seq.stride(0) != units:
        return None
    return _memory_order(x_seq, steps, units), 1


def _scalar(dtype: torch.dtype) -> Any:
    """The NumPy scalar type of ``dtype``: kernel constants in the arrays' dtype, so nothing is promoted."""
    return np.dtype(str(dtype).removeprefix("torch.")).type


def _numba_kernel(name: str) -> Any:
    """A compiled Numba kernel of `numba_kernels` (imported on first use: importing it needs Numba)."""
    import numba  # noqa: PLC0415  (optional: the cpu extra)

    from . import numba_kernels  # noqa: PLC0415  (needs Numba)

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return getattr(numba_kernels, name)


def population_membranes(step: torch.Tensor, n: int) -> torch.Tensor:
    """An uninitialised [*step.shape, n] membrane tensor: the n membranes of a unit side by side,
    units in ``step``'s memory order (what `numba_population_scan` reads)."""
    unit_strides = torch.empty_like(step).stride()  # dense, in step's layout (as `sequence_buffer`)
    return torch.empty_strided(
        tuple(step.shape) + (n,), tuple(s * n for s in unit_strides) + (1,), dtype=step.dtype, device=step.device
    )


def numba_population_scan(x_seq: torch.Tensor, v: torch.Tensor, thresholds: torch.Tensor, out: torch.Tensor) -> bool:
    """`PopulationIFNode`'s scan on the CPU with Numba: ``out`` [T, ...] (spike counts / n)
    written, ``v`` [..., n] updated in place, bit-identical to the node's torch loop.
    ``thresholds``: [n] or [*unit_shape, n] (one set per unit, broadcast over the batch). Returns
    False, touching nothing, when it cannot run (see `numba_if_scan`; ``v`` must be laid out as
    `population_membranes` makes it)."""
    if not _cpu_usable(x_seq):
        return False
    step, n = x_seq[0], v.shape[-1]
    if (
        v.dtype != x_seq.dtype
        or out.dtype != x_seq.dtype
        or tuple(v.shape) != tuple(step.shape) + (n,)
        or out.shape != x_seq.shape
    ):
        return False
    units, steps = step.numel(), x_seq.shape[0]
    if not (
        _dense(step)
        and _dense(out[0])
        and out[0].stride() == step.stride()
        and out.stride(0) == units
        and v.stride() == tuple(s * n for s in step.stride()) + (1,)
    ):
        return False
    rows_in = _input_rows(x_seq, units)
    if rows_in is None:
        return False
    if thresholds.dim() == 1:
        rows = thresholds.reshape(1, n)
    else:
        if tuple(thresholds.shape) != tuple(step.shape[1:]) + (n,):
            return False
        if step.shape[0] > 1 and step.stride(0) != units // step.shape[0]:  # each sample one block
            return False
        # the per-sample units in the input's memory order (e.g. H, W, C for channels-last)
        order = memory_order(step, first=1)
        rows = thresholds.permute([d - 1 for d in order] + [step.dim() - 1]).reshape(-1, n)
    scalar = _scalar(x_seq.dtype)
    _numba_kernel("population_scan")(
        *rows_in,
        _memory_order(v, units, n),
        rows.to(x_seq.dtype).contiguous().numpy(),
        _memory_order(out, steps, units),
        scalar(n),
        scalar(1.0),
    )
    return True


def numba_if_scan(
    x_seq: torch.Tensor, v: torch.Tensor, threshold: float, spikes: torch.Tensor, decay: float | None = None
) -> bool:
    """The rate IF/LIF scan (reset by subtraction) of ``x_seq`` [T, ...] on the CPU with Numba:
    ``spikes`` [T, ...] (0/1) written, ``v`` updated in place — bit-identical to `IFNeuron`'s torch
    loop. Returns False, touching nothing, when it cannot run: Numba missing, a
    dtype other than float32/float64, or ``v``, the steps of ``x_seq`` and of ``spikes`` not all
    one dense block in the same layout (the caller then runs its loop)."""
    if not _cpu_usable(x_seq):
        return False
    step = x_seq[0]
    if v.dtype != x_seq.dtype or spikes.dtype != x_seq.dtype or v.shape != step.shape or spikes.shape != x_seq.shape:
        return False
    if not (_dense(v) and _dense(step) and _dense(spikes[0]) and v.stride() == step.stride() == spikes[0].stride()):
        return False
    units, steps = v.numel(), x_seq.shape[0]
    rows_in = _input_rows(x_seq, units)
    if rows_in is None or spikes.stride(0) != units:
        return False
    scalar = _scalar(x_seq.dtype)
    _numba_kernel("if_scan")(
        *rows_in,
        _memory_order(v, 1, units)[0],
        _memory_order(spikes, steps, units),
        scalar(threshold),
        scalar(1.0 if decay is None else decay),
        scalar(1.0),
        decay is not None,
    )
    return True


# -- Triton (CUDA, or its interpreter) -----------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    """The jitted kernel. Under ``TRITON_INTERPRET=1`` (set before Triton is first imported, as the
    test suite's conftest does) it runs in Triton's interpreter, on CPU tensors too."""
    import triton  # noqa: PLC0415  (optional; and it must not be imported beside TensorFlow)

    from .triton_kernel import if_scan  # noqa: PLC0415  (imports triton.language)

    return triton.jit(if_scan)


def triton_scan(
    x_seq: torch.Tensor,
    v: torch.Tensor,
    thresholds: torch.Tensor,
    *,
    decay: float | None = None,
    phase: tuple[int, int, float] | None = None,
    out_scale: float = 1.0,
) -> torch.Tensor:
    """Run the reset-by-subtraction scan over ``x_seq`` [T, *units] in place on ``v`` [*units, n].

    ``thresholds``: [n] (shared by all units) or [*unit_shape, n] (per unit; broadcast over the
    batch, which must be the leading unit axis). ``decay``: membrane leak factor per step (LIF).
    ``phase = (K, t0, θ0)``: the phase code's oscillating threshold instead of ``thresholds``.
    Returns [T, *units]: (spikes / n)·``out_scale``, or for the phase code the weighted spike.
    """
    steps = x_seq.shape[0]
    n = v.shape[-1]
    units = v.numel() // n
    if steps == 0:
        return torch.empty_like(x_seq)
    if x_seq.stride(0) == 0 or steps == 1:
        x_flat, x_stride = x_seq[0].reshape(-1).contiguous(), 0
    else:
        x_flat, x_stride = x_seq.reshape(steps, -1).contiguous(), units
    if (x_flat.numel() if x_stride == 0 else x_flat.numel() // steps) != units:
        raise ValueError(f"input {tuple(x_seq.shape)} does not match the membrane {tuple(v.shape)}")
    thr = thresholds.to(device=v.device, dtype=v.dtype).contiguous()
    per_unit = int(thr.dim() > 1)
    unit_block = thr.numel() // n if per_unit else 1
    if not v.is_contiguous():
        raise ValueError("the membrane must be contiguous")
    out = torch.empty((steps, units), dtype=x_seq.dtype, device=x_seq.device)
    period, t0, theta0 = phase if phase is not None else (1, 0, 0.0)
    grid = ((units + BLOCK - 1) // BLOCK,)
    _kernel()[grid](
        x_flat,
        v,
        thr,
        out,
        steps,
        units,
        unit_block,
        x_stride,
        per_unit,
        int(t0) % int(period),
        float(theta0),
        float(decay if decay is not None else 1.0),
        float(out_scale),
        N=n,
        NP=max(1, 1 << (n - 1).bit_length()),
        BLOCK=BLOCK,
        PHASE=phase is not None,
        PERIOD=int(period),
        LEAK=decay is not None,
    )
    return out.reshape(x_seq.shape)
