"""What the command line reads: data files, model files, and conversion options as flags.

Conversion options become flags of ``convert2snn convert`` from the schemes' options dataclasses
(`convert2snn.schemes`): every field with its help text and, for strings, its choices, so a new
option is on the command line as soon as it is declared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

import numpy as np

# Options the command line sets in its own way (the progress bars follow --quiet).
_NOT_FLAGS = ("progress",)


class CLIError(Exception):
    """Bad command-line input: one line on stderr, exit status 2."""


def info(args: argparse.Namespace, message: str) -> None:
    """A status line on stderr, unless --quiet."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


# -- data ----------------------------------------------------------------------------------------------
def load_npz(path: str) -> dict[str, Any]:
    """Every array of an .npz file, with a one-line `CLIError` for a missing, unreadable or junk file."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"data file '{path}' does not exist")
    if p.is_dir():
        raise CLIError(f"data file '{path}' is a directory; expected an .npz file")
    try:
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds for junk files
        raise CLIError(
            f"cannot read '{path}' as an .npz file ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from exc


def pick(arrays: dict[str, Any], path: str, split: str, need_labels: bool) -> tuple[Any, Any, str]:
    """(x, y or None, description) for the 'train' or 'test' split of a loaded .npz."""
    candidates = [("x_train", "y_train"), ("x", "y")] if split == "train" else [("x_test", "y_test"), ("x", "y")]
    for xk, yk in candidates:
        if xk in arrays:
            if need_labels and yk not in arrays:
                keys = ", ".join(sorted(arrays)) or "none"
                raise CLIError(f"'{path}' has '{xk}' but no labels '{yk}' (keys: {keys})")
            return arrays[xk], arrays.get(yk), f"{path}['{xk}']"
    keys = ", ".join(sorted(arrays)) or "none"
    want = " or ".join(f"'{xk}'" for xk, _ in candidates)
    raise CLIError(
        f"'{path}' has no {split} inputs: expected {want} (Keras-style x_train/y_train/x_test/y_test, "
        f"or x/y); it has keys: {keys}"
    )


def prepare(
    x: Any,
    expected: tuple[int, ...] | None,
    scale: float | None,
    samples: int | None,
    args: argparse.Namespace,
    what: str,
) -> np.ndarray:
    """The first ``samples`` inputs (times ``scale``, as float32; without it in their own dtype, which
    `convert2snn.convert` checks), with a missing channel axis of size 1 added."""
    x = np.asarray(x)
    if samples is not None:
        if samples < 1:
            raise CLIError(f"--samples must be positive, got {samples}")
        x = x[:samples]
    if scale is not None:  # without a scale the dtype stays: uint8 images still look unscaled to convert
        x = x.astype(np.float32) * np.float32(scale)
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        if tuple(x.shape[1:]) + (1,) == tuple(expected):
            x = x[..., None]
            info(args, f"{what}: added a trailing channel axis: {x.shape[1:]}")
        elif (1,) + tuple(x.shape[1:]) == tuple(expected):
            x = x[:, None]
            info(args, f"{what}: added a leading channel axis: {x.shape[1:]}")
    return x


def split_data(
    args: argparse.Namespace,
    split_default: str,
    need_labels: bool,
    expected: tuple[int, ...] | None,
    what: str,
    path: str | None = None,
    samples: int | None = None,
) -> tuple[np.ndarray, Any]:
    """Inputs (and labels) of one split of an .npz, prepared for the model (see `prepare`)."""
    path = path or args.data
    arrays = load_npz(path)
    split = getattr(args, "split", None) or split_default
    x, y, desc = pick(arrays, path, split, need_labels)
    if samples is None:
        samples = getattr(args, "samples", None)
    x = prepare(x, expected, getattr(args, "scale", None), samples, args, what)
    if y is not None:
        y = y[: len(x)]
    info(args, f"{what}: {len(x)} samples from {desc}")
    return x, y


# -- models --------------------------------------------------------------------------------------------
def is_snn_file(path: str) -> bool:
    """Whether ``path`` names a converted SNN (.c2s, or .pt / .pth as written by `SpikingModel.save`)."""
    return Path(path).suffix.lower() in (".c2s", ".pt", ".pth")


def check_model_path(path: str) -> None:
    """A `CLIError` when the model file does not exist (checked before anything heavy is imported)."""
    if not Path(path).exists():
        raise CLIError(f"model file '{path}' does not exist")


def expected_shape(model_path: str) -> tuple[int, ...] | None:
    """The model's per-sample input shape in its own layout, when it can be read without TensorFlow."""
    import onnx  # noqa: PLC0415  (heavy imports only when a verb runs: see cli.main)

    from bridges.api import onnx_input_shape  # noqa: PLC0415
    from bridges.keras_to_onnx import keras_file_input_shape  # noqa: PLC0415

    from .. import stages  # noqa: PLC0415

    p = Path(model_path)
    if is_snn_file(model_path):
        return tuple(stages.load(p).bridge_info.original_input_shape())
    if p.suffix.lower() == ".onnx":
        return tuple(onnx_input_shape(onnx.load(str(p))))
    try:
        return keras_file_input_shape(p)
    except Exception:  # noqa: BLE001 - unknown: leave the data as it is
        return None


# -- conversion options as flags -------------------------------------------------------------------
def _option_fields() -> dict[str, tuple[dataclasses.Field, Any, list[str]]]:
    """Every option of every scheme: its field and type (the first scheme's declaration) and the schemes taking it."""
    from .. import schemes  # noqa: PLC0415  (torch: only for convert, see cli.main)

    found: dict[str, tuple[dataclasses.Field, Any, list[str]]] = {}
    for name in schemes.available():
        options = schemes.scheme_class(name).Options
        hints = typing.get_type_hints(options)  # the evaluated annotations (fields hold strings)
        for f in dataclasses.fields(options):
            if f.name not in _NOT_FLAGS:
                found.setdefault(f.name, (f, hints[f.name], []))[2].append(name)
    return found


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per conversion option (``--v-init`` for ``v_init``), default None: options left unset
    keep the scheme's default."""
    group = parser.add_argument_group("conversion options (each conversion type takes those marked with its name)")
    fields = _option_fields()
    every = {name for _f, _hint, takers in fields.values() for name in takers}
    for name, (f, hint, takers) in fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = str(f.metadata.get("help", ""))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text += f" (default {default!r}" + ("" if set(takers) == every else f"; {', '.join(takers)}") + ")"
        kind = typing.get_origin(hint) or hint
        args = typing.get_args(hint)
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif f.metadata.get("choices"):
            group.add_argument(flag, choices=f.metadata["choices"], default=None, help=help_text)
        elif kind is tuple:
            group.add_argument(flag, type=args[0], nargs=len(args), default=None, metavar=name.upper(), help=help_text)
        elif kind is dict:
            group.add_argument(flag, type=_json_object(flag), default=None, metavar="JSON", help=help_text)
        else:
            scalar = next((a for a in args if a is not type(None)), hint) if args else hint
            group.add_argument(flag, type=scalar, default=None, help=help_text)
    parser.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="any conversion option (value parsed as JSON, e.g. --option signed_bit=8); repeatable",
    )


def _json_object(flag: str):
    def parse(text: str) -> dict:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{flag} takes a JSON object, got '{text}' ({exc.msg})") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag} takes a JSON object, got '{text}'")
        return value

    return parse


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The conversion options set on the command line (flags and --option KEY=VALUE)."""
    options = {name: getattr(args, name) for name in _option_fields() if getattr(args, name, None) is not None}
    for item in getattr(args, "option", None) or []:
        if "=" not in item:
            raise CLIError(f"--option takes key=value, got '{item}'")
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options
