"""SpKeras call style: results equal convert2snn's own API; counters agree with a brute-force count."""

import importlib

import numpy as np
import pytest
import torch
from torch import nn

import convert2snn
from convert2snn import InvalidInputError
from convert2snn.neurons import IFNeuron
from convert2snn.spkeras import cnn_to_snn

from ..nets import digits_arrays, train_classifier


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.eval()

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x)))
        return self.fc(torch.relu(self.conv2(h)).flatten(1))


@pytest.fixture(scope="module")
def setup():
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    net = TinyCNN()
    with torch.no_grad():
        y = net(x).argmax(1).numpy()
    return net, x, y


def test_readme_snippet_matches_our_api(setup):
    net, x, y = setup
    snn_model = cnn_to_snn(signed_bit=0, amp_factor=100, method=1, epsilon=0.001)(net, x)
    loss, acc = snn_model.evaluate(x, y, timesteps=64, thresholding=0.5)
    ours = convert2snn.convert(
        net, calibration_data=x, percentile=100, per_channel=False, amp_factor=100, progress=False
    )
    scores = torch.as_tensor(ours.predict(x, timesteps=64), dtype=torch.float64)
    assert acc == pytest.approx(float((scores.argmax(1).numpy() == y).mean()))
    assert loss == pytest.approx(float(nn.functional.cross_entropy(scores, torch.as_tensor(y))))
    one_hot = np.eye(3)[y]
    assert snn_model.evaluate(x, one_hot, timesteps=64) == (loss, acc)
    assert acc >= 0.9


def test_method_0_and_1_are_the_same_network(setup):
    net, x, y = setup
    a = cnn_to_snn(method=0)(net, x).evaluate(x, y, timesteps=32)
    b = cnn_to_snn(method=1)(net, x).evaluate(x, y, timesteps=32)
    assert a == b


def test_thresholding_resets_the_neurons_without_reconverting(setup):
    net, x, y = setup
    conv = cnn_to_snn()(net, x)
    conv.evaluate(x, y, timesteps=16, thresholding=0.0)
    assert all(m.v_init == 0.0 for m in conv.model.network.modules() if isinstance(m, IFNeuron))
    direct = convert2snn.convert(
        net, calibration_data=x, percentile=100, per_channel=False, amp_factor=100, v_init=0.0, progress=False
    )
    assert np.array_equal(conv.model.predict(x, timesteps=16), direct.predict(x, timesteps=16))


def test_spike_counter_and_neuron_numbers_agree_with_brute_force(setup):
    net, x, _ = setup
    conv = cnn_to_snn()(net, x)
    t = 20
    # brute force: run the network step by step and count each IF neuron's spikes per input
    counts = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, name=name: counts.__setitem__(name, counts.get(name, 0) + out.detach())
        )
        for name, m in conv.model.network.named_modules()
        if isinstance(m, IFNeuron)
    ]
    from spikingjelly.activation_based import functional

    with torch.no_grad():
        functional.reset_net(conv.model.network)
        conv.model.network(x.unsqueeze(0).expand(t, *x.shape).contiguous())
        functional.reset_net(conv.model.network)
    for h in hooks:
        h.remove()
    per_input = [c.sum(0).reshape(x.shape[0], -1) for c in counts.values()]  # [N, neurons] spike counts
    max_spikes, totals = conv.SpikeCounter(x, timesteps=t, mode=0)
    assert max_spikes == [int(c.max()) for c in per_input]
    assert totals == [int(np.ceil(float(c.sum()) / x.shape[0])) for c in per_input]
    _, hist = conv.SpikeCounter(x, timesteps=t, mode=1)
    for h, c in zip(hist, per_input):
        assert h == np.bincount(c.reshape(-1).long().numpy()).tolist()
    shapes, neurons = conv.NeuronNumbers(mode=0)
    assert shapes[0] == (4, 1, 3, 3) and shapes[-1] == (3, 64)
    assert neurons == [c.shape[1] for c in per_input] == [256, 64]
    # mode 1 drops SpKeras's spike layers right after average pooling; our pooling is linear (no
    # neurons of its own), so it is the same count as our neuron_counts(mode=1)
    assert conv.NeuronNumbers(mode=1)[1] == list(conv.model.neuron_counts(mode=1).values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": 2}, "method must be 0"),
        ({"scaling_factor": 2}, "scaling_factor=2"),
        ({"spike_ext": 1}, "spike_ext=1"),
        ({"noneloss": True}, "noneloss=True"),
    ],
)
def test_what_we_do_not_reproduce_is_refused(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        cnn_to_snn(**kwargs)


def test_convert2snn_style_without_calibration_data(setup):
    """The original Convert2SNN README: ``convert(model, conversion_type='rate')`` and nothing else."""
    net, x, y = setup
    from convert2snn import convert

    importlib.import_module("convert2snn.stages")._warned_data_free = False  # the module, not the function
    with pytest.warns(UserWarning, match="no calibration_data"):
        snn_model = convert(net, conversion_type="rate", example_input=x[:1])
    assert any("data-free" in a for a in snn_model.report.approximations)
    assert snn_model.evaluate(x, y, timesteps=256).accuracy[0] >= 0.9


@pytest.fixture(scope="module")
def digits_cnn():
    """A small CNN trained on scikit-learn's bundled digits (seeded, a few seconds)."""
    xs, ys = digits_arrays()
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    train_classifier(net, x[:1400], y[:1400], epochs=25, lr=3e-3)
    net.eval()
    with torch.no_grad():
        ann_acc = float((net(x[1400:]).argmax(1) == y[1400:]).float().mean())
    return net, x[:1400], x[1400:], y[1400:].numpy(), ann_acc


def test_both_readme_styles_on_a_digits_model(digits_cnn):
    net, x_train, x_test, y_test, ann_acc = digits_cnn
    assert ann_acc > 0.9
    from convert2snn import convert

    importlib.import_module("convert2snn.stages")._warned_data_free = False
    with pytest.warns(UserWarning, match="no calibration_data"):
        snn_model = convert(net, conversion_type="rate", example_input=x_train[:1])  # Convert2SNN style
    data_free = snn_model.evaluate(x_test, y_test, timesteps=256)
    assert data_free.accuracy[0] >= ann_acc - 0.02

    snn_model = cnn_to_snn(signed_bit=0, amp_factor=100, method=1, epsilon=0.001)(net, x_train)  # SpKeras style
    loss, acc = snn_model.evaluate(x_test, y_test, timesteps=64, thresholding=0.5)
    assert acc >= ann_acc - 0.01 and np.isfinite(loss)
    _, neurons = snn_model.NeuronNumbers(mode=0)
    assert neurons == [8 * 8 * 8, 32]
