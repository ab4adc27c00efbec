"""Triton multi-step kernels against the nodes' torch loops on the CPU: compiled on CUDA tensors when
a GPU is present (benchmarks/gpu/), else in Triton's interpreter on CPU tensors."""

from __future__ import annotations

import pytest
import torch

from convert2snn.neurons import IFNeuron, kernels, set_backend
from convert2snn.neurons.population import PopulationIFNode
from convert2snn.neurons.temporal import PhaseNode

pytestmark = pytest.mark.skipif(not kernels.triton_available(), reason="triton is not installed")

# where the kernels run; the references (the torch loops) always run on the CPU
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _scan(x, v, thresholds, **kwargs):
    """`kernels.triton_scan` on DEVICE with CPU tensors in and out (``v`` updated in place)."""
    v_device = v.to(DEVICE)
    out = kernels.triton_scan(x.to(DEVICE), v_device, thresholds.to(DEVICE), **kwargs)
    v.copy_(v_device.cpu())
    return out.cpu()


@pytest.fixture(autouse=True)
def torch_loops_as_reference(monkeypatch):
    """The nodes' own torch loops are the reference: "auto" means the torch loops here (no CPU kernel).
    `kernels.triton_scan` is called directly or chosen with backend="triton"."""
    monkeypatch.setenv("CONVERT2SNN_NO_KERNELS", "1")


def test_the_suite_runs_kernels_in_the_interpreter_without_a_gpu():
    import os

    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"  # tests/conftest.py, before triton is imported


# ragged sizes: not multiples of the block, single units, odd n
SHAPES = [(7, 1, 3), (5, 3, 130), (16, 2, 4, 5, 5), (3, 1, 1)]


def _inputs(shape, seed, constant=False):
    g = torch.Generator().manual_seed(seed)
    if constant:
        return (torch.rand(shape[1:], generator=g) * 1.4 - 0.2).unsqueeze(0).expand(shape)
    return torch.rand(shape, generator=g) * 1.4 - 0.2


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tau", [None, 7.0])
@pytest.mark.parametrize("constant", [False, True])
def test_if_kernel_matches_the_torch_loop(shape, tau, constant):
    x = _inputs(shape, seed=len(shape), constant=constant)
    node = IFNeuron(v_threshold=1.0, v_init=0.5, tau=tau)
    with torch.no_grad():
        ref = node(x)
    v = torch.full(shape[1:] + (1,), 0.5)
    out = _scan(x, v, torch.ones(1), decay=None if tau is None else 1 - 1 / tau)
    assert torch.equal(out, ref), "spikes must be bit-exact"
    torch.testing.assert_close(v[..., 0], node.v, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "n, mismatch", [(1, "dither"), (5, "dither"), (16, "dither"), (3, "threshold"), (8, "threshold")]
)
def test_population_kernel_matches_the_torch_loop(shape, n, mismatch):
    x = _inputs(shape, seed=n)
    if mismatch == "dither":
        node = PopulationIFNode.dithered(n)
    else:
        node = PopulationIFNode.mismatched(n, shape[2:], sigma=0.2, seed=3)
    with torch.no_grad():
        ref = node(x)
    v = node.v_init.expand(shape[1:] + (n,)).clone()
    out = _scan(x, v, node.thresholds, out_scale=1.0 / n)
    assert torch.equal(out, ref), "population counts must be bit-exact"
    torch.testing.assert_close(v, node.v, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("period, t0", [(4, 0), (8, 3), (5, 9)])
def test_phase_kernel_matches_the_torch_loop(shape, period, t0):
    x = _inputs(shape, seed=period)
    node = PhaseNode(period)
    node.t = t0  # a chunk that starts inside a cycle
    with torch.no_grad():
        ref = node(x)
    v = torch.zeros(shape[1:] + (1,))
    out = _scan(x, v, torch.ones(1), phase=(period, t0, node.theta0))
    assert torch.equal(out, ref), "weighted spikes must be bit-exact"
    torch.testing.assert_close(v[..., 0], node.v, rtol=0, atol=1e-6)


def test_kernel_state_carries_over_time_chunks():
    x = _inputs((12, 2, 33), seed=1)
    v_whole = torch.full((2, 33, 4), 0.25)
    whole = _scan(x, v_whole, torch.ones(4), out_scale=0.25)
    v = torch.full((2, 33, 4), 0.25)
    parts = [_scan(x[a:b], v, torch.ones(4), out_scale=0.25) for a, b in ((0, 5), (5, 6), (6, 12))]
    assert torch.equal(torch.cat(parts), whole) and torch.equal(v, v_whole)


def test_mismatched_input_shape_is_refused():
    with pytest.raises(ValueError, match="does not match the membrane"):
        kernels.triton_scan(torch.zeros(3, 2, 5), torch.zeros(2, 4, 1), torch.ones(1))


@pytest.mark.parametrize(
    "kind, options",
    [
        ("rate", {}),
        ("rate", {"neuron": "lif", "tau": 9.0}),
        ("population", {"n": 4}),
        ("temporal", {"code": "phase", "period": 4}),
    ],
)
def test_networks_give_the_same_results_with_the_kernels(monkeypatch, kind, options):
    """The nodes' Triton backend (the default on CUDA) chosen explicitly on CPU tensors: the same outputs
    as the torch loops."""
    import warnings

    import numpy as np

    import convert2snn
    from convert2snn.simulate import simulate

    from ..nets import RandomNet

    x = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert2snn.convert(RandomNet(1), kind, x, progress=False, **options)
    reference = simulate(snn.network, x, [3, 10], progress=False, chunk=4).outputs
    calls, scan = [], kernels.triton_scan
    monkeypatch.setattr(kernels, "triton_scan", lambda *a, **k: calls.append(1) or scan(*a, **k))
    assert not calls  # the reference ran the torch loops
    set_backend(snn.network, "triton")
    with_kernels = simulate(snn.network, x, [3, 10], progress=False, chunk=4, device=DEVICE).outputs
    assert len(calls) >= 3  # every neuron layer, every chunk, ran the kernel
    for t in (3, 10):
        np.testing.assert_array_equal(with_kernels[t], reference[t])
