"""The raw Triton kernel behind `convert2snn.neurons.kernels.triton_scan` (jitted there, for the GPU
or the interpreter).

Kept in its own module because Triton's interpreter patches ``triton.language`` in the kernel's
module globals, and importing this module needs Triton.
"""

import triton.language as tl


def if_scan(
    x_ptr,
    v_ptr,
    thr_ptr,
    out_ptr,
    T,
    M,
    U,
    x_stride_t,
    thr_per_unit,
    t0,
    theta0,
    decay,
    out_scale,
    N: tl.constexpr,
    NP: tl.constexpr,
    BLOCK: tl.constexpr,
    PHASE: tl.constexpr,
    PERIOD: tl.constexpr,
    LEAK: tl.constexpr,
):
    """Reset-by-subtraction scan of one block of ``BLOCK`` units (``N`` neurons each) over ``T`` steps.

    Per step: leak (``LEAK``), add the unit's input, fire where v ≥ threshold (with ``PHASE`` the level
    θ0·2^−(1 + (t0 + t) mod PERIOD)), subtract what fired, and write out [T, M] = spikes · ``out_scale``
    (· level with ``PHASE``); the membranes v [M, N] are stored once at the end (see `triton_scan`).
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, NP)
    rmask = rows < M
    mask = rmask[:, None] & (cols < N)[None, :]
    v = tl.load(v_ptr + rows[:, None] * N + cols[None, :], mask=mask, other=0.0)
    thr_rows = (rows % U) * thr_per_unit
    thr = tl.load(thr_ptr + thr_rows[:, None] * N + cols[None, :], mask=mask, other=float("inf"))
    for t in range(T):
        x = tl.load(x_ptr + t * x_stride_t + rows, mask=rmask, other=0.0)
        if LEAK:
            v = v * decay
        v = v + x[:, None]
        if PHASE:
            phase = (t0 + t) % PERIOD
            level = theta0 / (2 << phase).to(tl.float32)  # θ0·2^−(1+phase), exact (no exp2 approximation)
            spike = v >= level
            v = v - tl.where(spike, level, 0.0)
            out = tl.sum(spike.to(tl.float32), axis=1) * (level * out_scale)
        else:
            spike = v >= thr
            v = v - tl.where(spike, thr, 0.0)
            out = tl.sum(spike.to(tl.float32), axis=1) * out_scale
        tl.store(out_ptr + t * M + rows, out, mask=rmask)
    tl.store(v_ptr + rows[:, None] * N + cols[None, :], v, mask=mask)
