"""The IF neuron's other simulators' semantics: reset to zero (fire above θ), a membrane floor computed as
Sinabs computes it, unbounded bursts — each against a plain per-element reference, in every code path."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional

from convert2snn.neurons import IFNeuron


def reference(x_seq, theta, v0, reset, max_spikes, v_min, decay=None):
    """The neuron written out step by step, one scalar at a time (float32, as the tensors)."""
    flat = x_seq.reshape(x_seq.shape[0], -1)
    out = torch.zeros_like(flat)
    f32 = lambda value: torch.tensor(value, dtype=torch.float32)  # noqa: E731
    for i in range(flat.shape[1]):
        v = f32(v0 * theta)
        for t in range(flat.shape[0]):
            if decay is not None:
                v = v * f32(decay)
            v = v + flat[t, i]
            if reset == "zero":
                s = f32(1.0) if v > theta else f32(0.0)
                v = f32(0.0) if s else v
            else:
                s = torch.clamp(torch.floor(v / theta), 0.0, float("inf") if max_spikes is None else max_spikes)
                v = v - s * theta
            if v_min is not None:
                low = f32(v_min * theta)
                v = torch.relu(v - low) + low
            out[t, i] = s
    return out.reshape(x_seq.shape)


CASES = [
    {"reset": "zero", "max_spikes": 1, "v_min": None, "v_init": 0.0},
    {"reset": "zero", "max_spikes": 1, "v_min": -1.0, "v_init": 0.25},
    {"reset": "subtract", "max_spikes": None, "v_min": -1.0, "v_init": 0.0},
    {"reset": "subtract", "max_spikes": None, "v_min": None, "v_init": 0.5},
    {"reset": "subtract", "max_spikes": 1, "v_min": -0.5, "v_init": 0.5},
]


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), theta=st.sampled_from([1.0, 0.7, 2.5]), leak=st.booleans())
def test_scan_matches_the_reference(case, seed, theta, leak):
    x = torch.randn(12, 3, 5, generator=torch.Generator().manual_seed(seed)) * 1.5 * theta
    tau = 7.0 if leak else None
    neuron = IFNeuron(
        v_threshold=theta, v_init=case["v_init"], tau=tau, **{k: case[k] for k in ("reset", "max_spikes", "v_min")}
    )
    with torch.no_grad():
        got = neuron(x)
    want = reference(
        x, theta, case["v_init"], case["reset"], case["max_spikes"], case["v_min"], 1 - 1 / tau if leak else None
    )
    assert torch.equal(got, want)


@pytest.mark.parametrize("case", CASES)
def test_surrogate_path_fires_the_same_spikes_and_has_gradients(case):
    x = (torch.randn(10, 4, 6, generator=torch.Generator().manual_seed(3)) * 1.5).requires_grad_()
    kwargs = {k: case[k] for k in ("reset", "max_spikes", "v_min")}
    fast = IFNeuron(v_init=case["v_init"], **kwargs)
    with torch.no_grad():
        want = fast(x)
    slow = IFNeuron(v_init=case["v_init"], **kwargs).train()
    got = slow(x)
    assert torch.equal(got.detach(), want)
    got.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    functional.reset_net(slow)
    functional.set_step_mode(slow, "s")
    with torch.no_grad():
        steps = torch.stack([slow(x[t]) for t in range(x.shape[0])])
    assert torch.equal(steps, want)


def test_hard_reset_fires_strictly_above_the_threshold():
    neuron = IFNeuron(v_threshold=1.0, v_init=0.0, reset="zero")
    with torch.no_grad():
        spikes = neuron(torch.tensor([[1.0], [0.5], [0.5], [0.75]]))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]  # v = 1 does not fire; 1.5 fires and v → 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="reset must be one of"):
        IFNeuron(reset="half")
    with pytest.raises(ValueError, match="a neuron reset to zero fires one spike a step"):
        IFNeuron(reset="zero", max_spikes=2)
    with pytest.raises(ValueError, match=r"max_spikes must be ≥ 1 or None"):
        IFNeuron(max_spikes=0)
    with pytest.raises(NotImplementedError, match="loses the charge above θ"):
        IFNeuron(reset="zero").limit_module()
