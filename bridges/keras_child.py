"""Child-process side of `bridges.to_onnx`: the only module that imports TensorFlow.

Run by `bridges.keras_to_onnx.to_onnx` as a script (not through the `bridges` package, whose
import would load torch and onnx2torch here) with one argument, REQUEST.json (``python -m
bridges.keras_child REQUEST.json`` works too, only slower). The request names the model file,
the output path and the options; the child writes a JSON reply next to it (``ok``, the
Keras layer table, timings, or the error with the Keras layer it concerns). TensorFlow is
never imported into the caller's process: TF and triton (SpikingJelly's GPU kernels)
abort when they share one (LLVM option registered twice).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback

# tf2onnx's transpose optimiser and constant folding are what turn Keras' NHWC graph into
# a clean NCHW one; the rest of its optimiser list mostly costs time (each optimiser
# deep-copies the whole graph, weights included, before it runs).
FAST_OPTIMIZERS = (
    "optimize_transpose",
    "fold_constants",
    "remove_identity",
    "remove_back_to_back",
    "global_pool_optimizer",
)


def silence_tensorflow() -> None:
    """Quieten TensorFlow's C++ logging, turn oneDNN off and hide the GPUs (env defaults, before TF loads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # The export needs no GPU; leaving it to TF would reserve device memory for nothing.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def _flat_layers(model) -> list:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def _layer_table(model) -> list[dict]:
    table = []
    for layer in _flat_layers(model):
        try:
            config = layer.get_config()
        except Exception:  # noqa: BLE001 - a custom layer without get_config still gets listed
            config = {}
        entry = {"name": layer.name, "class": type(layer).__name__}
        act = config.get("activation")
        if isinstance(act, str):
            entry["activation"] = act
        table.append(entry)
    return table


def _load_model(path: str, flavour: str):
    if flavour == "tf_keras" or (os.path.isdir(path) and os.path.exists(os.path.join(path, "keras_metadata.pb"))):
        import tf_keras

        return tf_keras.models.load_model(path, compile=False), "tf_keras"
    import keras

    try:
        return keras.models.load_model(path, compile=False), "keras"
    except Exception:
        if path.endswith((".h5", ".hdf5")):
            import tf_keras

            return tf_keras.models.load_model(path, compile=False), "tf_keras"
        raise


def _guess_layer(message: str, layers: list[dict]) -> str | None:
    best = None
    for entry in layers:
        name = entry["name"]
        if re.search(r"(?<![A-Za-z0-9])" + re.escape(name) + r"(_\d+)?(?![A-Za-z0-9])", message):
            if best is None or len(name) > len(best):
                best = name
    return best


def skip_optional_imports() -> None:
    """Keep Keras from importing scikit-learn and matplotlib, which the export never uses.

    Keras imports both at start-up when they are installed (its scikit-learn wrappers and
    `plot_image_gallery`), each guarded by ``try: import … except ImportError``; a ``None``
    entry in `sys.modules` makes that import fail at once. Saves about a third of the
    child's TensorFlow import time (2 s of CPU on a 2-core machine; see
    benchmarks/RESULTS.md). Only this child process is affected.
    """
    for name in ("sklearn", "matplotlib"):
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


class _Clock:
    """Wall and CPU seconds per stage, for the reply's ``timings``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.timings[stage] = wall - self._wall
        self.timings["cpu_" + stage] = cpu - self._cpu
        self._wall, self._cpu = wall, cpu


def export(request: dict) -> dict:
    """Load the Keras model, export it with tf2onnx and save the ONNX file with the bridge metadata; the
    reply: ``ok``, the Keras layer table and per-stage wall/CPU ``timings``."""
    silence_tensorflow()
    skip_optional_imports()
    clock = _Clock()
    import tensorflow as tf
    import tf2onnx

    clock.lap("import_tf")
    model, flavour = _load_model(request["model_path"], request.get("flavour", "keras"))
    layers = _layer_table(model)
    clock.lap("load")

    if flavour == "keras":
        import keras

        # tf2onnx cannot walk a Keras 3 Sequential (KeyError 'keras_tensor_…'): wrap it.
        model = keras.Model(model.inputs, model.outputs)
    input_names, specs, nchw = [], [], []
    for i, tensor in enumerate(model.inputs):
        name = f"input_{i}" if len(model.inputs) > 1 else "input"
        shape = tuple(tensor.shape)
        dtype = tf.as_dtype(getattr(tensor, "dtype", "float32"))
        specs.append(tf.TensorSpec((None,) + tuple(shape[1:]), dtype, name=name))
        input_names.append(name)
        if len(shape) == 4 and request.get("nchw", True):
            nchw.append(name)
    optimizers = None
    if request.get("optimizers", "fast") == "fast":
        from tf2onnx import optimizer as tf2onnx_optimizer

        optimizers = {k: v for k, v in tf2onnx_optimizer._get_optimizers().items() if k in FAST_OPTIMIZERS}

    def export(catch_errors: bool):
        # tf2onnx deep-copies the whole graph, weights included, before every optimiser run
        # so that it can roll a failing optimiser back (~1 s on a VGG-16). Our optimiser subset
        # is first run without that safety net; only if it raises is the safe mode used.
        # tf2onnx 1.17 reads TF2ONNX_CATCH_ERRORS set to anything as "do not catch" (it compares the
        # variable's name, not its value, with "TRUE"): its rollback needs the variable unset.
        if catch_errors:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
        return tf2onnx.convert.from_keras(
            model,
            input_signature=tuple(specs),
            opset=request.get("opset", 17),
            inputs_as_nchw=nchw or None,
            optimizers=optimizers,
        )[0]

    try:
        try:
            model_proto = export(catch_errors=optimizers is None)
        except Exception:  # noqa: BLE001 - retried below with tf2onnx's own rollback
            if optimizers is None:
                raise
            model_proto = export(catch_errors=True)
    except Exception as exc:  # noqa: BLE001 - reported to the parent with the layer name
        raise RuntimeError(f"tf2onnx could not export the model: {exc}") from exc
    clock.lap("export")

    import onnx

    meta = {
        "source": "keras",
        "keras_flavour": flavour,
        "keras_layers": layers,
        "inputs_as_nchw": nchw,
        "input_shapes": [list(s.shape[1:]) for s in specs],
    }
    entry = model_proto.metadata_props.add()
    entry.key = "convert2snn.bridge"
    entry.value = json.dumps(meta)
    onnx.save(model_proto, request["out_path"])
    clock.lap("save")
    # Seconds: import_tf, load, export (tf2onnx), save; cpu_<stage>: the CPU time of each.
    return {"ok": True, "layers": layers, "timings": clock.timings}


def main(argv: list[str]) -> int:
    """The child's entry point: run the request in ``argv[1]`` and write the JSON reply (on failure: the error
    and the Keras layer it concerns); returns the exit status, 0 on success."""
    request_path = argv[1]
    with open(request_path) as f:
        request = json.load(f)
    reply_path = request["reply_path"]
    try:
        reply = export(request)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        message = f"{type(exc).__name__}: {exc}"
        layers = []
        try:
            layers = _layer_table(_load_model(request["model_path"], request.get("flavour", "keras"))[0])
        except BaseException:  # noqa: BLE001
            pass
        reply = {
            "ok": False,
            "error": type(exc).__name__,
            "message": message,
            "layer": _guess_layer(message + traceback.format_exc(), layers),
            "traceback": traceback.format_exc(),
        }
    with open(reply_path, "w") as f:
        json.dump(reply, f)
    return 0 if reply["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
