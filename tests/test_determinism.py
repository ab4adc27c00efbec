"""Same seed → bit-identical conversion and simulation on CPU, for every conversion type."""

import pytest
import torch

import convert2snn

from .convert2snn.nets import RandomNet

CASES = [
    ("rate", {"encoding": "poisson", "seed": 3}),
    ("rate", {"neuron": "lif", "tau": 20.0}),
    ("population", {"mismatch": "threshold", "n": 4, "seed": 3}),
    ("population", {"encoding": "poisson", "n": 4, "seed": 3}),
]


@pytest.mark.parametrize("kind, options", CASES)
def test_same_seed_is_bit_identical(kind, options):
    x = torch.rand(40, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(2):
        torch.manual_seed(1234 + len(runs))  # the global RNG must not matter
        snn = convert2snn.convert(RandomNet(2), kind, calibration_data=x, progress=False, **options)
        state = {k: v.clone() for k, v in snn.network.state_dict().items()}
        buffers = {k: v.clone() for k, v in snn.network.named_buffers()}
        runs.append((state, buffers, snn.predict(x, timesteps=8), snn.spike_counts(x, timesteps=8)))
    (s1, b1, p1, c1), (s2, b2, p2, c2) = runs
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert b1.keys() == b2.keys() and all(torch.equal(b1[k], b2[k]) for k in b1)
    assert (p1 == p2).all() and c1 == c2
