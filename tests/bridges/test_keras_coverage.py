"""Keras layer-coverage matrix: every configuration of `keras_coverage_models` through the bridge.

All models, their Keras reference outputs and their ONNX exports are built in ONE child
process (TensorFlow never enters this process), by a session fixture that builds only the
configurations this run selected. Each test then bridges the ONNX file in-process and checks:

- the clean torch graph reproduces Keras (input given in Keras layout through
  ``bridge_info.to_model_layout``) to 1e-5 of the output scale;
- for the feed-forward (CNN/MLP) configurations: no onnx2torch module is left and
  ``torch.fx.symbolic_trace`` re-traces the graph to the same output;
- module names are the Keras layer names (no ONNX op names such as ``Conv__45``).

The weights are random everywhere (biases, BatchNorm gamma/beta/moving statistics), so a
dropped bias or a wrongly folded BatchNorm cannot hide.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import fx

import bridges
from tests.bridges.keras_coverage_models import CONFIGS

pytestmark = pytest.mark.tf
SCRIPT = Path(__file__).with_name("keras_coverage_models.py")
TOLERANCE = 1e-5

# Building all configurations takes ~45-65 s on a 2-core machine (TF import included); the
# heavier half (by measured build time) runs with `-m slow` only. See `test_build_budget`.
SLOW = {
    "lstm_sequences",
    "lstm_last",
    "upsampling2d",
    "pooling_1d",
    "dropout_flatten_reshape",
    "bn_after_relu",
    "activations_conv",
    "conv2d_transpose_valid_stride2",
    "conv_bn_relu",
    "activations_dense",
    "pooling_valid",
    "depthwise_bn_relu",
    "reshape_to_image",
    "global_pooling_2d",
}
RECURRENT = {"lstm_sequences", "lstm_last"}
# node names tf2onnx gives to the nodes it creates (Conv__45, Transpose__982): must not survive
ONNX_OP_NAME = re.compile(r"^[A-Z][A-Za-z]+__\d+")


def _params_for(*names):
    return [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in names]


@pytest.fixture(scope="session")
def coverage(request, tmp_path_factory):
    """Build the selected configurations in one child process; returns (directory, index)."""
    selected = sorted(
        {
            item.callspec.params["config"]
            for item in request.session.items
            if getattr(item, "module", None) is sys.modules[__name__]
            and hasattr(item, "callspec")
            and "config" in item.callspec.params
        }
    )
    out = tmp_path_factory.mktemp("keras_coverage")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *selected], capture_output=True, text=True, timeout=1200
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    index = json.loads((out / "index.json").read_text())
    index["__build_seconds__"] = elapsed
    sys.stderr.write(f"\n[keras coverage] built {len(selected)} configurations in {elapsed:.1f} s\n")
    return out, index


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only cost (and on a loaded 2-core runner, a lot)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _load(coverage, config):
    out, index = coverage
    entry = index[config]
    assert entry["ok"], f"{config}: Keras build/export failed: {entry['error']}\n{entry.get('traceback', '')}"
    data = np.load(out / f"{config}.npz")
    return out / f"{config}.onnx", data["x"], data["y"], entry


def _relative_diff(y_torch: np.ndarray, y_keras: np.ndarray) -> float:
    scale = max(float(np.abs(y_keras).max()), 1e-6)
    return float(np.abs(y_torch - y_keras).max()) / scale


def _onnx2torch_modules(gm: fx.GraphModule) -> list[str]:
    return [
        f"{name} ({type(m).__name__})" for name, m in gm.named_modules() if type(m).__module__.startswith("onnx2torch")
    ]


@pytest.mark.parametrize("config", _params_for(*CONFIGS))
def test_keras_layer_coverage(coverage, config):
    onnx_path, x, y_keras, entry = _load(coverage, config)
    gm = bridges.to_torch(onnx_path)
    info = gm.bridge_info
    assert info.source == "keras"
    x_torch = info.to_model_layout(torch.from_numpy(x))
    with torch.no_grad():
        y_torch = gm(x_torch).numpy()
    assert y_torch.shape == y_keras.shape
    diff = _relative_diff(y_torch, y_keras)
    assert diff <= TOLERANCE, f"{config}: clean torch graph differs from Keras by {diff:.2e} of the output scale"

    # module names follow the Keras layers
    keras_layers = {layer["name"] for layer in entry["layers"]}
    modules = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    leftover = [m for m in modules if ONNX_OP_NAME.match(m)]
    assert not leftover, f"modules still named after ONNX ops: {leftover}"
    weighted = [
        n
        for n in gm.graph.nodes
        if n.op == "call_module"
        and isinstance(
            gm.get_submodule(n.target),
            (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.Linear),
        )
    ]
    for n in weighted:  # a SeparableConv2D is two convs: sep1 and sep1_conv2d
        assert info.layers.get(n.name) in keras_layers, (n.name, info.layers.get(n.name), keras_layers)
        assert n.target == info.layers[n.name] or n.target.startswith(info.layers[n.name] + "_"), n.target

    if config in RECURRENT:
        return
    assert not _onnx2torch_modules(gm), f"onnx2torch modules left: {_onnx2torch_modules(gm)}"
    retraced = fx.symbolic_trace(gm)
    with torch.no_grad():
        assert torch.allclose(retraced(x_torch), gm(x_torch), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "config",
    _params_for(
        "mobilenet_block",
        "residual_block",
        "conv2d_transpose_same_stride2",
        "tf_keras_sequential_h5",
        "conv_bn_relu",
        "depthwise_bn_relu",
        "dense_bn",
        "bn_after_relu",
    ),
)
def test_batchnorm_is_folded(coverage, config):
    """BatchNorm after Conv / Dense / DepthwiseConv / ConvTranspose (and after a ReLU, into the next
    layer) leaves no BatchNorm and no affine behind."""
    from bridges.modules import Affine

    onnx_path, *_ = _load(coverage, config)
    gm = bridges.to_torch(onnx_path)
    leftover = [
        f"{n} ({type(m).__name__})"
        for n, m in gm.named_modules()
        if isinstance(m, (Affine, torch.nn.modules.batchnorm._BatchNorm))
    ]
    if config == "bn_after_relu":  # the last BatchNorm follows a ReLU and feeds the output: it stays
        assert leftover == ["bn_last (Affine)"], leftover
    else:
        assert not leftover, leftover


@pytest.mark.parametrize("config", _params_for("conv1d_strides_dilation", "pooling_1d"))
def test_one_dimensional_layers_stay_1d(coverage, config):
    """Conv1D / pooling-1D (exported as 2-D ops on a unit axis) come back as 1-D layers, biases folded."""
    from bridges.modules import Affine

    onnx_path, *_ = _load(coverage, config)
    gm = bridges.to_torch(onnx_path)
    kinds = {type(m) for m in gm.modules()}
    assert torch.nn.Conv1d in kinds, kinds
    assert not kinds & {torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d}, kinds
    convs = [m for m in gm.modules() if isinstance(m, torch.nn.Conv1d)]
    assert all(c.bias is not None for c in convs)
    if config == "conv1d_strides_dilation":
        assert Affine not in kinds


@pytest.mark.parametrize(
    "config", _params_for("upsampling2d", "relu6_variants", "mobilenet_block", "smooth_activations")
)
def test_canonical_modules(coverage, config):
    """UpSampling2D → nn.Upsample; ReLU(max_value) → ReLU6 / Hardtanh; ZeroPadding2D → Pad; swish (written
    out as x · sigmoid(x)), elu, selu, softplus → their modules."""
    onnx_path, *_ = _load(coverage, config)
    gm = bridges.to_torch(onnx_path)
    kinds = {type(m).__name__ for m in gm.modules()}
    expected = {
        "upsampling2d": {"Upsample"},
        "relu6_variants": {"ReLU6", "Hardtanh"},
        "mobilenet_block": {"ReLU6", "Pad"},
        "smooth_activations": {"SiLU", "ELU", "SELU", "Softplus"},
    }[config]
    assert expected <= kinds, kinds
    if config == "relu6_variants":
        clip = gm.get_submodule("relu_max1_5")
        assert isinstance(clip, torch.nn.Hardtanh) and (clip.min_val, clip.max_val) == (0.0, 1.5)


def test_build_budget(coverage):
    """The one child process that builds and exports the default matrix stays within budget."""
    _, index = coverage
    assert index["__build_seconds__"] < 180, index["__build_seconds__"]
