"""Any scalar activation as populations: monotone pieces cut at the extrema, each piece's dithered
population exact in the mean, static thresholds drawn from the piece, neurons split by variation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convert2snn.neurons.population import PiecePopulationNode, monotone_pieces, split_population

# where each activation has its minimum (solved to float precision elsewhere: f'(x) = 0)
MINIMA = {
    "SiLU": -1.2784645427610738,
    "GELU": -0.7517915246935645,
    "Mish": -1.1924311518,
    "Hardswish": -1.5,
}


@pytest.mark.parametrize("activation", [nn.SiLU(), nn.GELU(), nn.Mish(), nn.Hardswish()])
def test_dipping_activations_are_cut_at_their_minimum_into_monotone_pieces(activation):
    pieces = monotone_pieces(activation, -5.0, 4.0)
    assert len(pieces) == 2 and pieces[0][0] == -5.0 and pieces[1][1] == 4.0
    assert pieces[0][1] == pieces[1][0] == pytest.approx(MINIMA[type(activation).__name__], abs=1e-6)
    for (a, b), direction in zip(pieces, (-1, 1)):
        z = torch.linspace(a, b, 20_001, dtype=torch.float64)
        steps = activation(z).diff() * direction
        assert float(steps.min()) >= -1e-12, (a, b)


def test_rising_constant_and_empty_ranges():
    assert monotone_pieces(nn.ELU(), -3.0, 2.0) == [(-3.0, 2.0)]
    assert monotone_pieces(nn.Hardshrink(0.5), -2.0, 2.0) == [(-2.0, 2.0)]  # rising with jumps: one piece
    assert monotone_pieces(nn.Hardswish(), -6.0, -3.5) == []  # constant (0) there
    assert monotone_pieces(nn.SiLU(), 1.0, 1.0) == []
    assert monotone_pieces(nn.SiLU(), 0.0, 3.0) == [(0.0, 3.0)]  # the minimum lies outside


@pytest.mark.parametrize("n, variations", [(16, [0.2, 3.0]), (1, [0.2, 3.0]), (7, [1.0, 1.0, 1.0]), (5, [4.0])])
def test_neurons_are_split_by_variation_with_at_least_one_per_piece(n, variations):
    sizes = split_population(n, variations)
    assert sum(sizes) == max(n, len(variations)) and min(sizes) >= 1
    total = sum(variations)
    for size, v in zip(sizes, variations):  # proportional up to the one-per-piece floor and rounding
        assert abs(size - 1 - (max(n, len(variations)) - len(variations)) * v / total) <= 1.0


def _constant(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.unsqueeze(0).expand((steps,) + tuple(x.shape)).contiguous()


@pytest.mark.parametrize("activation", [nn.SiLU(), nn.ELU(0.5), nn.GELU("tanh"), nn.Softplus()])
@pytest.mark.parametrize("n, steps", [(1, 8), (4, 16), (16, 64)])
def test_a_dithered_piece_is_its_rescaled_activation_within_one_over_n_t(activation, n, steps):
    """Mean firing fraction over T steps vs F(z) = (f(clamp(z, a, b)) − f(a)) / (f(b) − f(a)), for z
    inside and outside the piece."""
    a, b = monotone_pieces(activation, -4.0, 3.0)[-1]
    node = PiecePopulationNode(activation, a, b, n)
    z = torch.linspace(-6.0, 5.0, 501)
    with torch.no_grad():
        out = node(_constant(z.unsqueeze(0), steps)).mean(0)[0]
        target = (activation(z.clamp(a, b)) - activation(torch.tensor(a))) / (
            activation(torch.tensor(b)) - activation(torch.tensor(a))
        )
    assert float((out - target).abs().max()) <= 1.0 / (n * steps) + 1e-5
    assert set((out * steps * n).round().tolist()) <= set(range(steps * n + 1))  # whole spikes


def test_static_thresholds_are_drawn_from_the_piece():
    """mismatch='threshold': the empirical CDF of n thresholds per unit approaches F (DKW: 2/√n)."""
    activation = nn.SiLU()
    a, b = -1.2784645427610738, 3.0
    z = torch.linspace(-2.0, 4.0, 121)
    f_a, f_b = float(activation(torch.tensor(a))), float(activation(torch.tensor(b)))
    target = (activation(z.clamp(a, b)) - f_a) / (f_b - f_a)
    errors = []
    for n in (64, 4096):
        node = PiecePopulationNode.mismatched(activation, a, b, n, (z.numel(),), seed=3)
        assert node.mismatch == "threshold" and float(node.thresholds.min()) >= a - 1e-6
        with torch.no_grad():
            out = node(z.reshape(1, 1, -1))[0, 0]
        errors.append(float((out - target).abs().max()))
        assert errors[-1] <= 2.0 / n**0.5
    assert errors[1] < errors[0]


def test_a_piece_trains_through_its_surrogate_and_matches_the_fast_path():
    node = PiecePopulationNode(nn.GELU(), -0.75, 3.0, 8)
    z = _constant(torch.linspace(-1.0, 3.5, 40).unsqueeze(0), 6)
    with torch.no_grad():
        fast = node(z)
    node.reset()
    zz = z.clone().requires_grad_(True)
    slow = node(zz)
    assert torch.allclose(fast, slow.detach(), atol=1e-6)
    slow.sum().backward()
    assert zz.grad is not None and bool(torch.isfinite(zz.grad).all()) and float(zz.grad.abs().sum()) > 0


def test_a_piece_needs_a_range_on_which_the_activation_moves():
    with pytest.raises(ValueError, match="low < high"):
        PiecePopulationNode(nn.SiLU(), 1.0, 1.0, 4)
    with pytest.raises(ValueError, match="constant on"):
        PiecePopulationNode(nn.Hardswish(), -6.0, -4.0, 4)
