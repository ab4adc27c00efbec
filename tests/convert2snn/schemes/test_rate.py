"""Property: rate-converted random networks converge to their ANN as T grows (max normalisation)."""

import pytest
import torch

import convert2snn

from ..nets import RandomNet

SEEDS = list(range(8))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_converges(seed):
    net = RandomNet(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    x_cal = torch.rand(256, 2, 8, 8, generator=gen)
    x = torch.rand(200, 2, 8, 8, generator=gen)
    snn = convert2snn.convert(net, calibration_data=x_cal, percentile=100, progress=False, batch_size=200)
    with torch.no_grad():
        ann = net(x)
    steps = [16, 128, 1024]
    result = snn._simulate(snn._inputs(x), steps)
    errors = []
    for t in steps:
        out = torch.from_numpy(result.outputs[t])
        errors.append(float((out - ann).norm() / ann.norm()))
    agree = float((torch.from_numpy(result.outputs[1024]).argmax(1) == ann.argmax(1)).float().mean())
    # inputs outside the calibration range clip a little; max normalisation over 256 samples
    assert agree >= 0.99, (agree, errors)
    assert errors[-1] <= 0.02, errors
    assert errors[0] > errors[1] > errors[2], errors
