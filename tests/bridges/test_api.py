"""`bridges.to_torch` from torch modules and ONNX, and the errors a user sees for bad input.

Torch-only except the last two tests (marked ``tf``), which build their Keras files in a child
process: TensorFlow never enters the test process.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import fx, nn

import bridges
from bridges.modules import OutputSoftmax


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = nn.functional.relu6(self.bn2(self.conv2(x)))
        x = self.drop(torch.flatten(x, 1))
        return torch.softmax(self.fc(x), dim=1)


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = SmallCNN()
    for bn in (model.bn1, model.bn2):  # non-default statistics: a dropped fold cannot hide
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def _relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))


def _check_clean(gm: fx.GraphModule, reference: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert _relative_diff(gm(x), reference(x)) <= 1e-5
    kinds = {type(m) for m in gm.modules()}
    assert not kinds & {nn.BatchNorm2d, nn.Dropout}, kinds  # folded / removed
    assert not [m for m in gm.modules() if type(m).__module__.startswith("onnx2torch")]
    assert OutputSoftmax in kinds and gm.bridge_info.output_softmax
    retraced = fx.symbolic_trace(gm)
    with torch.no_grad():
        assert torch.equal(retraced(x), gm(x))


def test_torch_module_is_cleaned_and_left_untouched(net):
    before = copy.deepcopy(net.state_dict())
    x = torch.rand(4, 3, 12, 12)
    gm = bridges.to_torch(net, example_input=x[:1])
    _check_clean(gm, net, x)
    assert gm.bridge_info.source == "torch" and gm.bridge_info.input_shape == (3, 12, 12)
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(net.bn1, nn.BatchNorm2d) and not net.training


def test_onnx_path_and_proto_give_the_same_clean_graph(net, tmp_path):
    x = torch.rand(4, 3, 12, 12)
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net,
        (x[:1],),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )
    from_path = bridges.to_torch(path)
    from_proto = bridges.to_torch(onnx.load(str(path)))
    _check_clean(from_path, net, x)
    with torch.no_grad():
        assert torch.equal(from_path(x), from_proto(x))


def _onnx_model(op_type: str, node_name: str, spatial=(4, 4)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, *spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, *spatial])
    relu = helper.make_node("Relu", ["x"], ["h"], name="relu_ok")
    odd = helper.make_node(op_type, ["h"], ["y"], name=node_name)
    graph = helper.make_graph([relu, odd], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_op_is_named_before_conversion():
    proto = _onnx_model("Hardmax", "strange_node")
    with pytest.raises(bridges.UnsupportedLayerError) as info:
        bridges.to_torch(proto)
    message = str(info.value)
    assert "ONNX node 'strange_node' (op Hardmax): no converter for ONNX op Hardmax" in message
    assert "convert2snn inspect MODEL" in message
    assert info.value.op == "Hardmax"
    rows = {r.layer: r for r in bridges.inspect_layers(proto)}
    assert rows["relu_ok"].supported and not rows["strange_node"].supported


def test_recurrent_loop_gets_a_hint():
    rows = bridges.inspect_layers(_onnx_model("Loop", "gru_loop"))
    bad = [r for r in rows if not r.supported]
    assert [r.layer for r in bad] == ["gru_loop"] and "use an LSTM layer" in bad[0].reason


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        ("missing.onnx", {}, "model file 'missing.onnx' does not exist"),
        ("README.md", {}, "unknown model format (expected .keras, .h5, a SavedModel directory, .onnx"),
        (42, {}, "cannot convert an object of type int"),
        (SmallCNN(), {}, "a torch.nn.Module needs an example input batch"),
        (SmallCNN(), {"example_input": torch.zeros(3)}, "example_input must be a tensor with a batch dimension"),
    ],
)
def test_bad_input_messages(model, kwargs, message):
    with pytest.raises(bridges.InvalidInputError) as info:
        bridges.to_torch(model, **kwargs)
    assert message in str(info.value)


def test_dynamic_spatial_dimension_is_refused():
    proto = _onnx_model("Relu", "relu2", spatial=("h", 4))
    with pytest.raises(bridges.InvalidInputError, match=r"input 'x' has a dynamic dimension 2 \('h'\)"):
        bridges.to_torch(proto)


def test_truncated_onnx_file(tmp_path):
    path = tmp_path / "cut.onnx"
    data = _onnx_model("Relu", "r").SerializeToString()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(bridges.InvalidInputError, match="not a readable ONNX model"):
        bridges.to_torch(path)


def _build_keras(tmp_path, body: str) -> str:
    script = textwrap.dedent("""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import keras
        keras.utils.set_random_seed(0)
    """) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.tf
def test_keras_gru_is_refused_naming_the_layer(tmp_path):
    path = _build_keras(
        tmp_path,
        """
        inp = keras.Input((5, 3))
        h = keras.layers.GRU(4, name="my_gru")(inp)
        out = keras.layers.Dense(2, name="head")(h)
        keras.Model(inp, out).save(sys.argv[1] + "/gru.keras")
        print(sys.argv[1] + "/gru.keras")
    """,
    )
    with pytest.raises(bridges.UnsupportedLayerError) as info:
        bridges.to_torch(path)
    assert "Keras layer 'my_gru'" in str(info.value) and "use an LSTM layer" in str(info.value)
    assert info.value.layer == "my_gru"


@pytest.mark.tf
def test_inspect_lists_keras_layers_in_the_model_s_order(tmp_path):
    """tf2onnx folds the BatchNormalization into the Conv before it and leaves a Reshape that came
    first in ONNX order ("bn1 Reshape" before "conv1"); rows follow the Keras model instead."""
    path = _build_keras(
        tmp_path,
        """
        inp = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, use_bias=False, name="conv1")(inp)
        h = keras.layers.BatchNormalization(name="bn1")(h)
        h = keras.layers.ReLU(name="relu1")(h)
        out = keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flatten")(h))
        keras.Model(inp, out).save(sys.argv[1] + "/bn.keras")
        print(sys.argv[1] + "/bn.keras")
    """,
    )
    layers = [row.layer for row in bridges.inspect_layers(path, progress=False)]
    named = [name for name in layers if not name.startswith("(")]
    assert named == [name for name in ("conv1", "bn1", "relu1", "flatten", "head") if name in named]
    assert {"relu1", "head"} <= set(named) and len(named) >= 4  # (tf2onnx may give the fused Conv to bn1)
    assert not any("__" in name for name in layers)  # no tf2onnx node names (Transpose__28)


@pytest.mark.tf
def test_keras_child_errors_come_back_as_exceptions(tmp_path):
    """A file TensorFlow cannot load: the child's error is raised here, the caller keeps running."""
    path = tmp_path / "broken.keras"
    path.write_bytes(b"PK\x03\x04 this is not a keras archive")
    with pytest.raises(bridges.ConversionError) as info:
        bridges.to_torch(path)
    assert "broken.keras" in str(info.value)
    assert np.isfinite(float(torch.ones(1).sum()))  # this process is alive and well


class NewerOpsNet(nn.Module):
    """Ops whose ONNX versions changed in opsets 18-21 (Pad, Reduce*, Resize, AveragePool, Constant)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x):
        x = nn.functional.relu6(self.conv(nn.functional.pad(x, (1, 1, 1, 1))))
        x = nn.functional.avg_pool2d(self.up(x), 2)
        return self.fc(torch.flatten(x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)), 1)).reshape(-1, 3)


@pytest.mark.parametrize("opset", [17, 18, 19, 20, 21])
def test_torch_onnx_export_of_any_recent_opset(opset, tmp_path):
    """torch.onnx.export writes opset 20 by default; onnx2torch alone stops at 17."""
    torch.manual_seed(opset)
    net = NewerOpsNet().eval()
    x = torch.rand(3, 2, 6, 6)
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net, (x[:1],), str(path), dynamo=False, opset_version=opset, input_names=["x"], dynamic_axes={"x": {0: "n"}}
    )
    assert onnx.load(str(path)).opset_import[0].version == opset
    gm = bridges.to_torch(path)
    with torch.no_grad():
        assert _relative_diff(gm(x), net(x)) <= 1e-6
    kinds = {type(m).__name__ for m in gm.modules()}
    assert {"Conv2d", "ReLU6", "Upsample", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Linear"} <= kinds
    assert not [k for k in kinds if k.startswith("Onnx")], kinds


class ActivationForms(nn.Module):
    """Scalar activations in functional and written-out forms (swish as x · sigmoid(x))."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        x = nn.functional.elu(self.a(x), 0.5)
        x = self.b(x)
        x = nn.functional.gelu(x * torch.sigmoid(x), approximate="tanh")
        return self.c(nn.functional.softplus(x, beta=2.0))


def test_functional_and_written_out_activations_become_modules():
    net = ActivationForms().eval()
    gm = bridges.to_torch(net, torch.zeros(1, 5))
    modules = [m for m in gm.modules() if not isinstance(m, (fx.GraphModule, nn.Linear))]
    assert [repr(m) for m in modules] == [
        "ELU(alpha=0.5)",
        "SiLU()",
        "GELU(approximate='tanh')",
        "Softplus(beta=2.0, threshold=20.0)",
    ]
    x = torch.randn(8, 5)
    with torch.no_grad():
        assert _relative_diff(gm(x), net(x)) <= 1e-6


def test_onnx_gelu_of_opset_20_converts(tmp_path):
    net = nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 2)).eval()
    path = tmp_path / "gelu.onnx"
    torch.onnx.export(net, (torch.zeros(1, 4),), str(path), dynamo=False, opset_version=20, input_names=["x"])
    assert "Gelu" in {n.op_type for n in onnx.load(str(path)).graph.node}
    gm = bridges.to_torch(path)
    assert any(isinstance(m, nn.GELU) for m in gm.modules())
    x = torch.randn(1, 4)
    with torch.no_grad():
        assert _relative_diff(gm(x), net(x)) <= 1e-6


def test_behaviour_added_in_newer_opsets_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 6, 6])
    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    pad = helper.make_node("Pad", ["x", "pads"], ["y"], name="wrap_pad", mode="wrap")
    proto = helper.make_model(
        helper.make_graph([pad], "g", [x], [y], [pads]), opset_imports=[helper.make_opsetid("", 19)]
    )
    with pytest.raises(bridges.UnsupportedLayerError, match="Pad node 'wrap_pad': mode='wrap' is not supported"):
        bridges.to_torch(proto)


@pytest.mark.tf
def test_keras_model_object_and_savedmodel_directory(tmp_path):
    """A keras.Model object (exported from a process that imported Keras BEFORE bridges: the torchvision
    guard must keep it alive) and a tf.keras
    SavedModel directory both bridge to the Keras outputs."""
    _build_keras(
        tmp_path,
        """
        import numpy as np
        import tf_keras
        import bridges
        out = sys.argv[1]
        rng = np.random.default_rng(0)
        x = rng.random((4, 6, 6, 2), dtype=np.float32)
        inp = keras.Input((6, 6, 2))
        h = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inp)
        y = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(h))
        model = keras.Model(inp, y)
        model.get_layer("conv").bias.assign(rng.normal(size=3).astype("float32"))
        bridges.to_onnx(model, out + "/from_object.onnx")
        legacy = tf_keras.Sequential([tf_keras.Input((6, 6, 2)), tf_keras.layers.Conv2D(3, 3, activation="relu"),
                                      tf_keras.layers.Flatten(), tf_keras.layers.Dense(2)])
        legacy.save(out + "/saved_model_dir")
        np.savez(out + "/ref.npz", x=x, y_object=model(x).numpy(), y_saved=legacy(x).numpy())
        print("ok")
    """,
    )
    ref = np.load(tmp_path / "ref.npz")
    for source, key in ((tmp_path / "from_object.onnx", "y_object"), (tmp_path / "saved_model_dir", "y_saved")):
        gm = bridges.to_torch(source)
        assert gm.bridge_info.source == "keras"
        with torch.no_grad():
            y = gm(gm.bridge_info.to_model_layout(torch.from_numpy(ref["x"]))).numpy()
        assert np.abs(y - ref[key]).max() <= 1e-5 * max(np.abs(ref[key]).max(), 1e-6), source


def test_a_failing_clean_up_rule_is_named_not_raised_raw(monkeypatch):
    from bridges.passes import core

    def broken(ctx, node):
        raise KeyError("boom")

    monkeypatch.setitem(core._RULES, torch.nn.ReLU, [(-100, broken)])
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval()
    with pytest.raises(bridges.ConversionError, match=r"the clean-up rule broken failed on node .*KeyError.*report"):
        bridges.to_torch(net, example_input=torch.zeros(1, 4))


def test_a_model_that_fails_on_its_inputs_is_named():
    class Picky(torch.nn.Module):
        def forward(self, x):
            return x.view(4)  # one sample only: fails on a batch

    with pytest.raises(bridges.InvalidInputError, match="the imported model fails on inputs of shape"):
        bridges.to_torch(Picky(), example_input=torch.zeros(1, 4))


def test_onnx2torch_noise_does_not_reach_the_user(tmp_path):
    """onnx2torch's Slice indexes with a list: torch's deprecation warning is about its code, not
    the user's, and the clean graph replaces that module; the bridge keeps it quiet."""

    class Crop(nn.Module):
        def forward(self, x):
            return torch.relu(x[:, 1:3, 1:-1])

    path = tmp_path / "crop.onnx"
    torch.onnx.export(Crop(), (torch.zeros(1, 4, 5),), str(path), dynamo=False, input_names=["x"])
    assert "Slice" in {n.op_type for n in onnx.load(str(path)).graph.node}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = bridges.to_torch(path)
    assert [str(w.message) for w in caught] == []
    x = torch.randn(2, 4, 5)
    assert torch.equal(gm(x), Crop()(x))


def test_tensorflow_children_keep_their_output_but_not_tensorflow_s_start_up_noise(capfd):
    from bridges.keras_to_onnx import run_tensorflow_child

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796105039.403272   30948 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796105039.403628   30948 cudart_stub.cc:31] Could not find cuda drivers on your machine",
        "E0000 00:00:1796105048.319979   30948 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
    ]
    script = "import sys\n" + "".join(f"print({line!r}, file=sys.stderr)\n" for line in noise)
    script += "print('Epoch 1/3', flush=True)\nprint('ValueError: a real problem', file=sys.stderr)\n"
    run_tensorflow_child([sys.executable, "-c", script])
    out, err = capfd.readouterr()
    assert "Epoch 1/3" in out
    assert err.strip() == "ValueError: a real problem"
    with pytest.raises(subprocess.CalledProcessError):
        run_tensorflow_child([sys.executable, "-c", "raise SystemExit(3)"])


def test_a_tensorflow_child_past_its_timeout_is_killed():
    import time

    from bridges.keras_to_onnx import run_tensorflow_child

    start = time.perf_counter()
    with pytest.raises(subprocess.TimeoutExpired):
        run_tensorflow_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert time.perf_counter() - start < 15
