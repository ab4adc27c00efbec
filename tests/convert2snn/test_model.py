"""SpikingModel API: consistency of evaluate/predict, save/load, counters, errors, SpikingJelly interop."""

import copy
import os
import stat

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional

import convert2snn
from convert2snn import InvalidInputError, UnsupportedLayerError
from convert2snn.neurons import IFNeuron

from .nets import RandomNet, SmallCNN


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(128, 1, 8, 8, generator=gen), torch.rand(64, 1, 8, 8, generator=gen)


@pytest.fixture(scope="module")
def snn(data):
    return convert2snn.convert(SmallCNN(), calibration_data=data[0], progress=False)


def test_user_model_is_not_modified(data):
    net = SmallCNN()
    before = copy.deepcopy(net.state_dict())
    convert2snn.convert(net, calibration_data=data[0], progress=False)
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_evaluate_matches_predict_at_every_t(snn, data):
    x = data[1].numpy()
    y = snn.ann_predict(x).argmax(1)
    result = snn.evaluate(x, y, timesteps=[3, 8, 20])
    for t in (3, 8, 20):
        assert result.accuracy_at(t) == pytest.approx(float((snn.predict(x, timesteps=t).argmax(1) == y).mean()))
    assert result.ann_accuracy == 1.0
    assert result.spikes_per_neuron[0] < result.spikes_per_neuron[1] < result.spikes_per_neuron[2]


def test_one_hot_labels_equal_indices(snn, data):
    x = data[1].numpy()
    y = snn.ann_predict(x).argmax(1)
    a = snn.evaluate(x, y, timesteps=4)
    b = snn.evaluate(x, np.eye(4)[y], timesteps=4)
    assert a.accuracy == b.accuracy


def test_chunked_simulation_is_identical(snn, data):
    x = snn._inputs(data[1])
    from convert2snn.simulate import simulate

    whole = simulate(snn.network, x, [5, 13, 40], progress=False)
    chunked = simulate(snn.network, x, [5, 13, 40], chunk=7, batch_size=25, progress=False)
    for t in (5, 13, 40):  # the readout's sums are grouped differently: equal up to float rounding
        np.testing.assert_allclose(whole.outputs[t], chunked.outputs[t], rtol=1e-5, atol=1e-6)
    for layer in whole.spikes.per_step:  # spikes are decided identically
        assert np.array_equal(whole.spikes.per_step[layer], chunked.spikes.per_step[layer])


def test_save_load_is_bit_identical(snn, data, tmp_path):
    path = tmp_path / "model.c2s"
    snn.save(path)
    loaded = convert2snn.load(path)
    assert np.array_equal(snn.predict(data[1], timesteps=16), loaded.predict(data[1], timesteps=16))
    assert loaded.neuron_counts() == snn.neuron_counts()
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file


def test_a_saved_model_gets_the_umask_s_mode_not_a_private_one(snn, tmp_path):
    old = os.umask(0o027)
    try:
        snn.save(tmp_path / "a.c2s")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.c2s").stat().st_mode) == 0o640  # 0666 & ~027; mkstemp alone gave 0600


def test_load_refuses_other_versions_and_junk(snn, tmp_path):
    junk = tmp_path / "junk.c2s"
    junk.write_bytes(b"not a model")
    with pytest.raises(InvalidInputError, match="not a convert2snn model file"):
        convert2snn.load(junk)
    path = tmp_path / "m.c2s"
    snn.save(path)
    payload = torch.load(path, weights_only=True)
    payload["meta"] = payload["meta"].replace('"version": 1', '"version": 99')
    torch.save(payload, path)
    with pytest.raises(InvalidInputError, match="format version 99"):
        convert2snn.load(path)


def test_load_takes_files_with_the_folded_scales_buffers_and_refuses_missing_weights(snn, data, tmp_path):
    path = tmp_path / "m.c2s"
    snn.save(path)
    payload = torch.load(path, weights_only=True)
    state = payload["snn_state"]
    payload["snn_state"] = {**state, "relu_in.module.scale": torch.ones(4, 1, 1)}  # as older versions wrote
    torch.save(payload, path)
    assert np.array_equal(convert2snn.load(path).predict(data[1], 8), snn.predict(data[1], 8))
    payload["snn_state"] = {k: v for k, v in state.items() if not k.endswith("weight")}
    torch.save(payload, path)
    with pytest.raises(InvalidInputError, match="lacks the network's .*weight.*truncated or damaged"):
        convert2snn.load(path)


def test_spike_counts_agree_with_brute_force(snn, data):
    x = data[1][:10]
    counts = snn.spike_counts(x, timesteps=12)
    per_neuron = snn.spike_counts(x, timesteps=12, per_neuron=True)
    # brute force: run the network step by step and count the neuron outputs
    brute = {}
    functional.reset_net(snn.network)
    hooks = []
    for name, m in snn.network.named_modules():
        if isinstance(m, IFNeuron):
            hooks.append(
                m.register_forward_hook(
                    lambda mod, i, o, name=name: brute.__setitem__(name, brute.get(name, 0) + o.sum().item())
                )
            )
    with torch.no_grad():
        xs = snn._inputs(x)
        snn.network(xs.unsqueeze(0).repeat(12, 1, 1, 1, 1))
    for h in hooks:
        h.remove()
    functional.reset_net(snn.network)
    assert counts == {k: int(v) for k, v in brute.items()}
    assert {k: int(v.sum()) for k, v in per_neuron.items()} == counts
    assert {k: v.size for k, v in per_neuron.items()} == snn.neuron_counts() == {"relu": 6 * 8 * 8}


def test_final_softmax_is_dropped_and_reported(snn):
    assert any("softmax" in n for n in snn.report.notes)
    assert "Softmax" not in str(snn.network)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"percentil": 99.9}, "Did you mean 'percentile'"),
        ({"percentile": 0}, "percentile must be in"),
        ({"v_init": 1.5}, "v_init"),
        ({"neuron": "izhikevich"}, "neuron must be"),
        ({"encoding": "temporal"}, "encoding must be"),
    ],
)
def test_bad_options(data, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        convert2snn.convert(SmallCNN(), calibration_data=data[0], **kwargs)


def test_bad_conversion_type(data):
    with pytest.raises(InvalidInputError, match="Did you mean 'rate'"):
        convert2snn.convert(SmallCNN(), conversion_type="rat", calibration_data=data[0])


def test_bad_calibration_data(data):
    with pytest.raises(InvalidInputError, match=r"per-sample shape \(1, 9, 9\).*expects \(1, 8, 8\)"):
        convert2snn.convert(SmallCNN(), calibration_data=torch.rand(4, 1, 9, 9), example_input=torch.rand(1, 1, 8, 8))
    bad = data[0].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN"):
        convert2snn.convert(SmallCNN(), calibration_data=bad)
    with pytest.raises(InvalidInputError, match="empty"):
        convert2snn.convert(SmallCNN(), calibration_data=np.zeros((0, 1, 8, 8)))
    with pytest.raises(InvalidInputError, match="example input"):
        convert2snn.convert(SmallCNN())  # data-free needs the input shape of a torch module


def test_bad_evaluate_arguments(snn, data):
    x = data[1].numpy()
    with pytest.raises(InvalidInputError, match="64 inputs"):
        snn.evaluate(x, np.zeros(10, dtype=int))
    with pytest.raises(InvalidInputError, match="timesteps must be a positive integer"):
        snn.evaluate(x, np.zeros(64, dtype=int), timesteps=[0, 8])
    with pytest.raises(InvalidInputError, match=r"labels must lie in \[0, 3\]"):
        snn.evaluate(x, np.full(64, 7))


def test_sigmoid_is_refused_with_population_hint(data):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2))
    with pytest.raises(UnsupportedLayerError, match="population") as info:
        convert2snn.convert(net, calibration_data=data[0])
    assert info.value.op == "Sigmoid"


def test_reset_net_and_surrogate_fine_tuning(data):
    net = RandomNet(3, channels=1)
    x = data[0][:64]
    snn = convert2snn.convert(net, calibration_data=x, progress=False)
    network = snn.network
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(0))  # something left to learn
    steps = 8
    x_seq = snn._inputs(x).unsqueeze(0).repeat(steps, 1, 1, 1, 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
    losses = []
    network.train()
    for _ in range(6):
        functional.reset_net(network)
        out = network(x_seq)[-1]
        loss = torch.nn.functional.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    network.eval()
    functional.reset_net(network)
    assert all(m.v == m.v_init * m.v_threshold for m in network.modules() if isinstance(m, IFNeuron))
    assert losses[-1] < losses[0], losses


def test_a_deep_copy_of_a_model_simulates_like_the_original(snn, data):
    x = data[1][:16]
    y = snn.ann_predict(x).argmax(1)
    twin = copy.deepcopy(snn)
    np.testing.assert_array_equal(twin.predict(x, 8), snn.predict(x, 8))
    a, b = snn.evaluate(x, y, timesteps=[4, 8]), twin.evaluate(x, y, timesteps=[4, 8])
    assert a.as_dict() == b.as_dict() and a.layer_correlation  # the copy keeps the ANN ↔ SNN pairs
