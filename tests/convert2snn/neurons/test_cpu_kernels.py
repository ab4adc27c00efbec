"""The CPU simulation engine: the Numba scan of the rate IF/LIF neuron against the neuron's torch
loop; the channels-last layout, short chunks, malloc tuning and spike-counter reductions against
the default layout and plain torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convert2snn
from convert2snn import simulate as simulate_module
from convert2snn.neurons import IFNeuron, kernels
from convert2snn.neurons.population import PopulationIFNode
from convert2snn.sequence import sequence_buffer
from convert2snn.simulate import chunk_length, memory_format_for, simulate

needs_numba = pytest.mark.skipif(
    not kernels.numba_available(), reason="numba is not installed (pip install convert2snn[cpu])"
)


def _sequence(shape, seed, *, channels_last=False, constant=False, dtype=torch.float32):
    """[T, *shape] currents in [-0.3, 1.2); steps channels-last when asked; a stride-0 time axis for ``constant``."""
    g = torch.Generator().manual_seed(seed)
    step_fmt = torch.channels_last if channels_last else torch.contiguous_format
    first = torch.empty(shape[1:], dtype=dtype).contiguous(memory_format=step_fmt)
    if constant:
        return first.copy_(torch.rand(shape[1:], generator=g, dtype=dtype) * 1.5 - 0.3).unsqueeze(0).expand(shape)
    x = sequence_buffer(first.unsqueeze(0).expand(shape))
    x.copy_(torch.rand(shape, generator=g, dtype=dtype) * 1.5 - 0.3)
    return x


def _run(x, make_node, *, kernel: bool, monkeypatch, chunks=None):
    """A fresh ``make_node()`` over ``x`` (in ``chunks``, state carried), with or without the CPU kernels."""
    monkeypatch.setenv("CONVERT2SNN_NO_KERNELS", "0" if kernel else "1")
    node = make_node()
    with torch.no_grad():
        parts = [node(x[a:b]) for a, b in (chunks or [(0, x.shape[0])])]
    return torch.cat(parts), node.v


# ragged sizes around the kernel's block (1024 units) and thread split, images in both layouts
CASES = [
    ((9, 1), False),
    ((6, 1023), False),
    ((6, 1025), False),
    ((5, 3, 7, 11), False),
    ((4, 3, 5, 9, 9), False),
    ((4, 3, 5, 9, 9), True),
    ((3, 16, 16, 8, 8), True),
    ((7, 1, 1, 1, 1), True),
]


@needs_numba
@pytest.mark.parametrize("shape, channels_last", CASES)
@pytest.mark.parametrize("tau", [None, 5.0])
@pytest.mark.parametrize("constant", [False, True])
def test_cpu_kernel_is_bit_identical_to_the_torch_loop(monkeypatch, shape, channels_last, tau, constant):
    x = _sequence(shape, seed=sum(shape), channels_last=channels_last, constant=constant)
    calls, scan = [], kernels.numba_if_scan
    monkeypatch.setattr(kernels, "numba_if_scan", lambda *a, **k: calls.append(scan(*a, **k)) or calls[-1])
    make = lambda: IFNeuron(v_threshold=0.9, tau=tau)  # noqa: E731
    spikes, v = _run(x, make, kernel=True, monkeypatch=monkeypatch)
    assert calls == [True], "the Numba kernel must have run"
    ref_spikes, ref_v = _run(x, make, kernel=False, monkeypatch=monkeypatch)
    assert torch.equal(spikes, ref_spikes) and torch.equal(v, ref_v), "spikes and membranes must be bit-identical"
    assert spikes.stride() == ref_spikes.stride()
    assert x[0].numel() == 1 or 0 < spikes.mean() < 1  # something to compare: neither silent nor saturated


@needs_numba
def test_cpu_kernel_in_float64_and_across_time_chunks(monkeypatch):
    x = _sequence((13, 2, 3, 5, 5), seed=3, channels_last=True, dtype=torch.float64)
    make = lambda: IFNeuron(v_threshold=1.3)  # noqa: E731
    whole, v_whole = _run(x, make, kernel=False, monkeypatch=monkeypatch)
    parts, v_parts = _run(x, make, kernel=True, monkeypatch=monkeypatch, chunks=[(0, 5), (5, 6), (6, 13)])
    assert parts.dtype == torch.float64
    assert torch.equal(parts, whole) and torch.equal(v_parts, v_whole)


@needs_numba
def test_cpu_kernel_declines_layouts_it_cannot_scan_and_leaves_them_untouched():
    x = torch.rand(4, 3, 5)
    spikes = torch.full((4, 3, 5), -1.0)
    v = torch.zeros(5, 3).t()  # the membrane transposed against the input: not the same layout
    assert kernels.numba_if_scan(x, v, 1.0, spikes) is False
    assert (spikes == -1).all() and (v == 0).all()
    assert kernels.numba_if_scan(x[:, :, ::2], torch.zeros(3, 3), 1.0, torch.empty(4, 3, 3)) is False  # gaps
    assert kernels.numba_if_scan(x.half(), torch.zeros(3, 5).half(), 1.0, torch.empty(4, 3, 5).half()) is False
    assert kernels.numba_if_scan(x, torch.zeros(3, 5), 1.0, torch.empty(4, 3, 5)) is True


def _population(n, mismatch, unit_shape):
    if mismatch == "dither":
        return PopulationIFNode.dithered(n, threshold=0.9)
    return PopulationIFNode.mismatched(n, unit_shape, sigma=0.3, seed=n, threshold=0.9)


@needs_numba
@pytest.mark.parametrize(
    "shape, channels_last",
    [
        ((5, 3, 7), False),
        ((4, 2, 300), False),
        ((3, 3, 5, 9, 9), False),
        ((3, 3, 5, 9, 9), True),
        ((2, 1, 1, 1, 1), True),
    ],
)
@pytest.mark.parametrize(
    "n, mismatch", [(1, "dither"), (5, "dither"), (16, "dither"), (3, "threshold"), (16, "threshold")]
)
@pytest.mark.parametrize("constant", [False, True])
def test_cpu_population_kernel_is_bit_identical_to_the_torch_loop(
    monkeypatch, shape, channels_last, n, mismatch, constant
):
    x = _sequence(shape, seed=n + len(shape), channels_last=channels_last, constant=constant)
    calls, scan = [], kernels.numba_population_scan
    monkeypatch.setattr(kernels, "numba_population_scan", lambda *a, **k: calls.append(scan(*a, **k)) or calls[-1])
    make = lambda: _population(n, mismatch, shape[2:])  # noqa: E731
    chunks = [(0, 1), (1, shape[0])]  # state carried across chunks
    out, v = _run(x, make, kernel=True, monkeypatch=monkeypatch, chunks=chunks)
    assert calls == [True, True], "the Numba kernel must have run"
    ref, ref_v = _run(x, make, kernel=False, monkeypatch=monkeypatch, chunks=chunks)
    assert torch.equal(out, ref) and torch.equal(v, ref_v), "counts and membranes must be bit-identical"
    assert x[0].numel() == 1 or 0 < out.mean() < 1


@needs_numba
def test_cpu_population_kernel_declines_foreign_membrane_layouts():
    x = torch.rand(2, 3, 4)
    out = torch.full((2, 3, 4), -1.0)
    v = torch.zeros(3, 5, 4).transpose(1, 2)  # [3, 4, 5] but n not innermost
    assert kernels.numba_population_scan(x, v, torch.ones(5), out) is False and (out == -1).all()
    wrong_units = torch.ones(5, 5)  # per-unit thresholds for 5 units, the input has 4
    assert kernels.numba_population_scan(x, torch.zeros(3, 4, 5), wrong_units, out) is False
    assert kernels.numba_population_scan(x, torch.zeros(3, 4, 5), torch.ones(4, 5), out) is True


def test_no_kernels_switch_turns_the_cpu_kernel_off(monkeypatch):
    monkeypatch.setenv("CONVERT2SNN_NO_KERNELS", "1")
    x = torch.ones(2, 4)
    assert kernels.choose("auto", x) == "torch"
    assert kernels.if_scan(x, torch.zeros(4), 1.0) is None  # the node runs its torch loop
    calls = []
    monkeypatch.setattr(kernels, "numba_if_scan", lambda *a, **k: calls.append(1))
    with torch.no_grad():
        IFNeuron()(x)
    assert calls == []


@needs_numba
def test_explicit_backends_are_honoured_and_checked(monkeypatch):
    monkeypatch.setenv("CONVERT2SNN_NO_KERNELS", "1")  # governs "auto" only
    x = torch.rand(5, 3, 7)
    assert kernels.choose("numba", x) == "numba" and kernels.choose("torch", x) == "torch"
    node = IFNeuron(v_threshold=0.7)
    node.backend = "numba"
    calls, scan = [], kernels.numba_if_scan
    monkeypatch.setattr(kernels, "numba_if_scan", lambda *a, **k: calls.append(scan(*a, **k)) or calls[-1])
    with torch.no_grad():
        spikes = node(x)
    reference = IFNeuron(v_threshold=0.7)
    with torch.no_grad():
        assert calls == [True] and torch.equal(spikes, reference(x))
    with pytest.raises(
        convert2snn.InvalidInputError, match="backend must be one of 'auto', 'triton', 'numba', 'torch'"
    ):
        kernels.choose("cuda", x)


def test_channels_last_simulation_counts_like_the_default_layout(monkeypatch):
    from ..nets import RandomNet

    x = torch.randint(0, 9, (6, 2, 8, 8), generator=torch.Generator().manual_seed(1)).float() / 8
    snn = convert2snn.convert(RandomNet(2), "rate", x, progress=False)
    # weights in 1/4 steps, inputs in 1/8 steps: every sum is exact in float32, in any order, so
    # both layouts must produce the very same spikes (the layout may only change summation order)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in snn.network.parameters():
            p.copy_(torch.randint(-3, 4, p.shape, generator=g).float() / 4)
    assert memory_format_for(x, "cpu") == torch.channels_last

    def run(layout):
        monkeypatch.setattr(simulate_module, "memory_format_for", lambda _x, _d: layout)
        layers = snn._layer_names
        return simulate(
            snn.network,
            x,
            [3, 7],
            progress=False,
            per_neuron=True,
            layer_names=layers,
            fan_out=snn._fan_out_tensors(),
            trace={k: torch.tensor([0, 5, 11]) for k in layers},
        )

    cl = run(torch.channels_last)
    convs = [m.weight for m in snn.network.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # (1×1 kernels are both)
    default = run(torch.contiguous_format)
    assert all(p.is_contiguous() for p in snn.network.parameters())  # the last run put the weights back
    for t in (3, 7):
        np.testing.assert_array_equal(cl.outputs[t], default.outputs[t])
    for field in ("per_step", "per_neuron", "sops_per_step", "traces"):
        a, b = getattr(cl.spikes, field), getattr(default.spikes, field)
        assert a.keys() == b.keys() and a
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{field}[{k}]")
    assert sum(v.sum() for v in cl.spikes.per_neuron.values()) > 0


def test_cpu_chunks_keep_the_largest_layer_output_within_budget():
    # CIFAR-sized VGG: 16×32×32 floats per sample and step are 64 KiB; at batch 128 one step is 8 MiB
    assert chunk_length(126_238, 128, 32, largest_elements=16 * 32 * 32, device="cpu") == 2
    assert chunk_length(126_238, 512, 32, largest_elements=16 * 32 * 32, device="cpu") == 1
    assert chunk_length(126_238, 128, 32, largest_elements=16 * 32 * 32, device="cuda") == 8  # the 1 GiB budget only
    assert chunk_length(100, 4, 32, largest_elements=50, device="cpu") == 32
    assert memory_format_for(torch.zeros(2, 3, 4), "cpu") == torch.contiguous_format
    assert memory_format_for(torch.zeros(2, 3, 4, 4), "cuda") == torch.contiguous_format


def test_allocator_tuning_sets_both_thresholds_once_and_can_be_turned_off(monkeypatch):
    import ctypes
    import platform

    tune = simulate_module.tune_cpu_allocator
    calls = []

    class FakeLibc:
        @staticmethod
        def mallopt(param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda _name: FakeLibc)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    tune.cache_clear()
    monkeypatch.setenv("CONVERT2SNN_NO_MALLOC_TUNING", "1")
    assert tune() is False and calls == []
    tune.cache_clear()
    monkeypatch.delenv("CONVERT2SNN_NO_MALLOC_TUNING")
    assert tune() is True and tune() is True  # once per process
    assert calls == [(-3, 64 << 20), (-1, 256 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    tune.cache_clear()  # the next caller talks to the real libc again


def test_a_cpu_simulation_tunes_the_allocator(monkeypatch):
    called = []
    monkeypatch.setattr(simulate_module, "tune_cpu_allocator", lambda: called.append(1))
    simulate(nn.Sequential(IFNeuron()), torch.rand(3, 4), [2], progress=False)
    assert called == [1]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "constant"])
def test_counter_reductions_in_memory_order_equal_torch_sum(layout):
    step = torch.empty(3, 4, 5, 6).contiguous(
        memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format
    )
    x = sequence_buffer(step.unsqueeze(0).expand(7, 3, 4, 5, 6))
    x.copy_((torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < 0.3).float())
    if layout == "constant":
        x = x[0].unsqueeze(0).expand_as(x)
    for dim in range(x.dim()):
        out = simulate_module._sum(x, dim)
        assert out.shape == x.sum(dim).shape and torch.equal(out, x.sum(dim)), dim
