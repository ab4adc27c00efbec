"""Fuzz: seeded random Keras CNNs through the whole pipeline (export → bridge → rate SNN).

For every model: the bridged torch graph reproduces Keras (≤ 1e-4 of the output scale), and
the rate-converted SNN (max normalisation) converges to the ANN as T grows. 25 models run by
default; ``pytest -m slow`` adds 200 more.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bridges
import convert2snn

pytestmark = pytest.mark.tf
SCRIPT = Path(__file__).with_name("fuzz_keras_models.py")
DEFAULT, SLOW = (0, 25), (1000, 200)


def _build(tmp_path_factory, first: int, count: int) -> Path:
    d = tmp_path_factory.mktemp(f"fuzz{first}")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(d), str(first), str(count)], capture_output=True, text=True, timeout=3000
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return d


@pytest.fixture(scope="module")
def default_models(tmp_path_factory):
    return _build(tmp_path_factory, *DEFAULT)


@pytest.fixture(scope="module")
def slow_models(tmp_path_factory):
    return _build(tmp_path_factory, *SLOW)


def _check(directory: Path, seed: int) -> None:
    described = json.loads((directory / "index.json").read_text())[str(seed)]
    data = np.load(directory / f"data_{seed}.npz")
    x, y_keras = data["x"], data["y"]
    ann = bridges.to_torch(directory / f"model_{seed}.onnx")
    with torch.no_grad():
        y_torch = ann(ann.bridge_info.to_model_layout(torch.from_numpy(x))).numpy()
    scale = max(float(np.abs(y_keras).max()), 1e-6)
    assert np.abs(y_torch - y_keras).max() / scale <= 1e-4, described
    snn = convert2snn.convert(directory / f"model_{seed}.onnx", calibration_data=x, percentile=100, progress=False)
    logits = snn.ann_predict(x)
    if snn.bridge_info.output_softmax:
        logits = np.log(np.clip(logits, 1e-30, None))  # compare in logit space up to a constant
    result = snn._simulate(snn._inputs(x), [32, 256, 2048])
    errors = []
    for t in (32, 256, 2048):
        out = result.outputs[t]
        if snn.bridge_info.output_softmax:
            out = out - out.mean(1, keepdims=True)
            ref = logits - logits.mean(1, keepdims=True)
        else:
            ref = logits
        errors.append(float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-6)))
    agree = float((result.outputs[2048].argmax(1) == logits.argmax(1)).mean())
    # the error shrinks with T, unless the SNN is exact from the start (float rounding only)
    assert errors[-1] <= 0.05 and (errors[-1] < errors[0] or errors[0] <= 1e-5), (described, errors)
    assert agree >= 0.9, (described, agree, errors)


@pytest.mark.parametrize("seed", range(DEFAULT[0], DEFAULT[0] + DEFAULT[1]))
def test_random_keras_model(default_models, seed):
    _check(default_models, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SLOW[0], SLOW[0] + SLOW[1]))
def test_random_keras_model_slow(slow_models, seed):
    _check(slow_models, seed)
