"""The raw Numba kernel behind `convert2snn.neurons.kernels.numba_if_scan` (importing this module needs Numba).

One pass over memory per time step: each thread owns a block of membranes and keeps it in L1
for the whole chunk, reading the input and writing the spikes once. The torch loop it replaces
makes three passes per step (add, compare, subtract), which on a CPU costs about as much memory
traffic as the convolution that feeds it. Arithmetic is the torch loop's, operation for
operation, in the arrays' dtype (no fast-math, no fused multiply-add): spikes and membranes are
bit-identical to it.
"""

import numba

# Units per block: 4 KiB of float32 membranes, input and spikes together well inside L1.
BLOCK = 1024


@numba.njit(parallel=True, cache=True, nogil=True)
def if_scan(x, x_step, v, out, threshold, decay, one, leak):  # pragma: no cover - compiled; tested via kernels
    """``x``: [T or 1, U] input currents (row ``t * x_step``: ``x_step = 0`` for a constant input);
    ``v``: [U] membranes, updated in place; ``out``: [T, U] spikes (0/1). ``threshold``, ``decay``
    and ``one`` (1) have the arrays' dtype, so nothing is promoted; ``leak`` selects
    v ← v·decay + x instead of v ← v + x."""
    steps, units = out.shape
    zero = one - one
    for block in numba.prange((units + BLOCK - 1) // BLOCK):
        start = block * BLOCK
        stop = min(units, start + BLOCK)
        vb = v[start:stop]  # slices from 0: indices provably in range, so the inner loops vectorise
        for t in range(steps):
            xb = x[t * x_step, start:stop]
            sb = out[t, start:stop]
            if leak:
                for i in range(vb.shape[0]):
                    vi = vb[i] * decay
                    vi = vi + xb[i]
                    spike = one if vi >= threshold else zero
                    sb[i] = spike
                    vb[i] = vi - spike * threshold
            else:
                for i in range(vb.shape[0]):
                    vi = vb[i] + xb[i]
                    spike = one if vi >= threshold else zero
                    sb[i] = spike
                    vb[i] = vi - spike * threshold


# Units per block of the population scan: 256 units × n membranes stay in L1/L2 for the chunk.
POPULATION_BLOCK = 256


@numba.njit(parallel=True, cache=True, nogil=True)
def population_scan(x, x_step, v, thresholds, out, n, one):  # pragma: no cover - compiled; tested via kernels
    """`PopulationIFNode`'s scan: ``v``: [U, n] membranes (updated in place), ``thresholds``:
    [1, n] (shared) or [S, n] (unit u uses row u mod S: S units per sample, in ``x``'s memory
    order), ``out``: [T, U] spike counts / ``n``. ``n`` and ``one`` have the arrays' dtype."""
    steps, units = out.shape
    neurons = v.shape[1]
    rows = thresholds.shape[0]
    zero = one - one
    for block in numba.prange((units + POPULATION_BLOCK - 1) // POPULATION_BLOCK):
        start = block * POPULATION_BLOCK
        stop = min(units, start + POPULATION_BLOCK)
        for t in range(steps):
            xb = x[t * x_step]
            ob = out[t]
            for u in range(start, stop):
                xu = xb[u]
                vu = v[u]
                theta = thresholds[u % rows]
                count = 0  # an integer sum vectorises (a float one may not be reordered); it is exact
                for j in range(neurons):
                    vj = vu[j] + xu
                    fired = vj >= theta[j]
                    vu[j] = vj - (one if fired else zero) * theta[j]
                    count += fired
                ob[u] = (one * count) / n
