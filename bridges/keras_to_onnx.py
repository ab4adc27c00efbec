"""Keras → ONNX, with TensorFlow confined to a child process.

The caller's process never imports TensorFlow (TF and triton abort when they share a
process). A Keras model *object* is saved to a temporary file first; the user's object and
files are only read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from .errors import ExportError, InvalidInputError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")

# Runs ``keras_child.py`` as ``__main__`` with argv ``[script, request]``. Unlike
# ``python script.py`` this does not put bridges/ on sys.path (where `errors.py`, `modules.py`…
# could shadow top-level modules TensorFlow imports).
_RUN_CHILD = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


# TensorFlow's start-up lines on stderr that say nothing to a user: absl's notice, oneDNN's, and
# those about a missing GPU (printed by its C++ runtime before TF_CPP_MIN_LOG_LEVEL takes effect).
_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ (port|cudart_stub|cuda_platform|cuda_dnn|cuda_fft|cuda_blas|node_def_util"
    r"|cpu_feature_guard|computation_placer)\.cc:\d+\])"
)


def run_tensorflow_child(cmd: list[str], *, timeout: float | None = None) -> None:
    """Run a command that imports TensorFlow (training a model in a child process): its stdout passes
    through, its stderr too except TensorFlow's start-up noise; `subprocess.CalledProcessError` on failure."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) as proc:
        pump = threading.Thread(target=_forward_stderr, args=(proc.stderr,), daemon=True)
        pump.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            pump.join(timeout=5)
        if returncode:
            raise subprocess.CalledProcessError(returncode, cmd)


def _forward_stderr(stream) -> None:
    for line in stream:
        if not _TF_NOISE.match(line):
            sys.stderr.write(line)


def is_keras_model(obj: Any) -> bool:
    """True for a Keras 3 or tf.keras (tf_keras) model object, without importing either."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module.startswith(("keras", "tf_keras", "tensorflow")) and cls.__name__ in (
            "Model",
            "Functional",
            "Sequential",
        ):
            return True
    return False


def is_keras_path(path: Path) -> bool:
    """True for a `.keras`/`.h5` file or a SavedModel directory."""
    if path.is_dir():
        return (path / "saved_model.pb").exists() or (path / "keras_metadata.pb").exists()
    return path.suffix.lower() in KERAS_SUFFIXES


def _keras_flavour(model: Any) -> str:
    # Keras 3 models also inherit TensorFlow's trackable classes: decide by the Model class itself
    for cls in type(model).__mro__:
        if cls.__name__ in ("Model", "Functional", "Sequential"):
            return "keras" if (cls.__module__ or "").startswith("keras") else "tf_keras"
    return "keras"


def keras_file_input_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The per-sample input shape recorded in a `.keras` file, read without TensorFlow.

    Lets callers check their data against the model before the (slow) export starts.
    None when the file is not a `.keras` archive, has several inputs, or records no shape.
    """
    path = Path(path)
    if path.suffix.lower() != ".keras" or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, OSError):
        return None
    shapes = []

    def visit(cfg: dict) -> None:
        for layer in cfg.get("config", {}).get("layers", []) or []:
            if layer.get("class_name") == "InputLayer":
                inner = layer.get("config", {})
                shape = inner.get("batch_shape") or inner.get("batch_input_shape")
                if shape:
                    shapes.append(tuple(shape[1:]))
            elif isinstance(layer.get("config"), dict) and "layers" in layer["config"]:
                visit(layer)

    visit(config)
    if len(shapes) != 1 or any(d is None for d in shapes[0]):
        return None
    return tuple(int(d) for d in shapes[0])


def _check_model_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInputError(f"model file '{path}' does not exist")
    if path.is_dir():
        if not is_keras_path(path):
            raise InvalidInputError(f"'{path}' is a directory but not a SavedModel (no saved_model.pb inside)")
        return
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"model file '{path}' is not readable")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix.lower() == ".keras" and not head.startswith(b"PK"):
        raise InvalidInputError(
            f"'{path}' is not a Keras v3 file (a .keras file is a zip archive); "
            "it may be truncated or of another format"
        )
    if path.suffix.lower() in (".h5", ".hdf5") and not head.startswith(b"\x89HDF"):
        raise InvalidInputError(f"'{path}' is not an HDF5 file; it may be truncated or of another format")


def to_onnx(
    model: Any,
    out_path: str | os.PathLike,
    *,
    opset: int = 17,
    optimizers: str = "fast",
    nchw: bool = True,
    timeout: float | None = 1800,
) -> dict:
    """Export a Keras model (object, `.keras`, `.h5` or SavedModel directory) to ONNX.

    TensorFlow and tf2onnx run in a child process. The ONNX model has a dynamic batch
    dimension and, for rank-4 inputs, NCHW layout (``nchw=True``). ``optimizers="fast"``
    runs the subset of tf2onnx's optimisers this project needs; ``"all"`` runs them all.

    Returns the child's report: the Keras layer table and ``timings`` (seconds: ``import_tf``,
    ``load``, ``export``, ``save`` with their ``cpu_…`` CPU times, and ``process``, the child's
    wall time from start to exit).
    Raises `InvalidInputError` for a missing or malformed file and `ExportError` (naming the
    Keras layer where it can) when the export fails.
    """
    out_path = Path(out_path)
    if optimizers not in ("fast", "all"):
        raise InvalidInputError(f"optimizers must be 'fast' or 'all', not {optimizers!r}")
    with tempfile.TemporaryDirectory(prefix="convert2snn_") as tmp:
        tmp = Path(tmp)
        if is_keras_model(model):
            flavour = _keras_flavour(model)
            model_path = tmp / ("model.h5" if flavour == "tf_keras" else "model.keras")
            try:
                model.save(model_path)
            except Exception as exc:  # noqa: BLE001
                raise ExportError(f"could not save the Keras model to hand it to the export process: {exc}") from exc
        elif isinstance(model, (str, os.PathLike)):
            model_path = Path(model)
            _check_model_file(model_path)
            if not is_keras_path(model_path):
                raise InvalidInputError(
                    f"'{model_path}' is not a Keras model file: expected .keras, .h5 or a SavedModel directory"
                )
            flavour = "keras"
        else:
            raise InvalidInputError(f"to_onnx expects a Keras model or a path to one, got {type(model).__name__}")
        request = {
            "model_path": str(model_path.resolve()),
            "out_path": str(out_path.resolve()),
            "reply_path": str(tmp / "reply.json"),
            "flavour": flavour,
            "opset": opset,
            "optimizers": optimizers,
            "nchw": nchw,
        }
        (tmp / "request.json").write_text(json.dumps(request))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Run the child script by its path, not as ``-m bridges.keras_child``: ``-m`` would
        # first import the `bridges` package, i.e. torch, onnx2torch and torchvision, into the
        # TensorFlow process (seconds of start-up, and torch next to TF is what we avoid).
        child = Path(__file__).resolve().with_name("keras_child.py")
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _RUN_CHILD, str(child), str(tmp / "request.json")],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ExportError(f"the Keras → ONNX export did not finish within {timeout} s") from exc
        reply_file = tmp / "reply.json"
        if not reply_file.exists():
            tail = (proc.stderr or "").strip().splitlines()[-15:]
            hint = ""
            if "No module named 'tensorflow'" in (proc.stderr or "") or "No module named 'tf2onnx'" in (
                proc.stderr or ""
            ):
                hint = " Install the TensorFlow extra: pip install 'convert2snn[tf]'."
            raise ExportError(
                f"the Keras → ONNX export process died (exit code {proc.returncode}).{hint}\n" + "\n".join(tail)
            )
        reply = json.loads(reply_file.read_text())
        # The child's whole life (interpreter start-up and exit included), next to its stages.
        reply.setdefault("timings", {})["process"] = time.perf_counter() - started
    if not reply["ok"]:
        layer = reply.get("layer")
        where = f" at Keras layer '{layer}'" if layer else ""
        hint = ""
        if "No module named" in reply["message"]:
            hint = " Install the TensorFlow extra: pip install 'convert2snn[tf]'."
        raise ExportError(f"Keras → ONNX export failed{where}: {reply['message']}{hint}", layer=layer)
    return reply
