"""Command line: ``convert2snn {inspect,convert,evaluate,sweep,export}`` (also ``python -m convert2snn``).

Bad input (a missing file, an .npz without the expected arrays, an unknown option) ends with one
line on stderr and exit status 2; ``--debug`` shows the traceback instead.

``--help``, ``--version`` and argument errors answer in a fraction of a second: torch, onnx and the
bridge are imported only when a verb runs (inside the ``cmd_*`` functions), and the conversion
options' flags (declared by the schemes, which need torch) are added only for ``convert``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..defaults import DEFAULT_ENERGY, DEFAULT_TIMESTEPS
from .data import (
    CLIError,
    add_option_flags,
    check_model_path,
    expected_shape,
    info,
    is_snn_file,
    options_from_args,
    split_data,
)

EXIT_BAD_INPUT = 2

EPILOG = """\
data files (.npz): either 'x' (and 'y' for labels) or the Keras layout 'x_train'/'y_train'/'x_test'/'y_test'.
Calibration uses the train split ('x_train', else 'x'); evaluation the test split ('x_test'/'y_test',
else 'x'/'y'); --split overrides. Inputs are in the original model's layout (NHWC for Keras);
--scale multiplies them (--scale 1/255 for uint8 images: the SNN must see the range it was calibrated
on), and a missing channel axis of size 1 is added when the model expects one.

examples:
  convert2snn inspect model.keras
  convert2snn convert model.keras -t rate --calibration mnist.npz --samples 1000 --scale 1/255 -o snn.c2s
  convert2snn convert model.keras -t temporal --period 8 --calibration mnist.npz --scale 1/255 -o ttfs.c2s
  convert2snn evaluate snn.c2s --data mnist.npz --samples 1000 --scale 1/255 -T 8 16 32 --plot acc.png
  convert2snn sweep model.onnx --config examples/sweep.yaml --data mnist.npz --scale 1/255 -o results/
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- verbs ---------------------------------------------------------------------------------------------


def cmd_inspect(args) -> int:
    """``inspect``: the layers of a model (bridge support, or with -t a conversion type's verdict) or of a .c2s."""
    check_model_path(args.model)  # before the heavy imports: a typo fails at once
    import bridges  # noqa: PLC0415  (heavy imports only when a verb runs)

    from .. import stages  # noqa: PLC0415

    if is_snn_file(args.model):
        snn = stages.load(args.model)
        print(
            f"{args.model}: converted SNN ({snn.conversion_type}), "
            f"input shape {snn.bridge_info.original_input_shape()} (source: {snn.bridge_info.source})"
        )
        print(f"{'neuron layer':<32} {'neurons':>10}")
        for layer, n in snn.neuron_counts().items():
            print(f"{layer:<32} {n:>10}")
        print(str(snn.report))
        return 0
    rows = bridges.inspect_layers(args.model, progress=not args.quiet)
    bad = [r for r in rows if not r.supported]
    if args.conversion_type and not bad:
        print(f"{len(rows)} layer(s), 0 unsupported by the bridge")
        return _inspect_conversion(args)
    width = max([len("layer")] + [len(r.layer) for r in rows])
    ops_width = max([len("ONNX ops")] + [len(", ".join(r.op_types)) for r in rows])
    print(f"{'layer':<{width}}  {'ONNX ops':<{ops_width}}  status")
    for r in rows:
        status = "ok" if r.supported else f"UNSUPPORTED: {r.reason}"
        print(f"{r.layer:<{width}}  {', '.join(r.op_types):<{ops_width}}  {status}")
    print(f"{len(rows)} layer(s), {len(bad)} unsupported by the bridge")
    return 1 if bad else 0


def _inspect_conversion(args) -> int:
    """Every layer of the clean ANN (the model's own layer names) and whether the conversion type takes it."""
    from bridges import ops  # noqa: PLC0415

    from .. import schemes, stages  # noqa: PLC0415
    from ..errors import UnsupportedLayerError  # noqa: PLC0415

    scheme = schemes.create(args.conversion_type)
    ann = stages.bridge(args.model, progress=not args.quiet)
    names = ann.bridge_info.layers
    problems: dict[str, str] = {}
    for layer, (what, _hint, _op) in scheme.problems(ann, names):
        problems.setdefault(layer, what)
    layers: dict[str, list[str]] = {}
    for node in ann.graph.nodes:
        if node.op in ("call_module", "call_function", "call_method"):
            op = ann.get_submodule(node.target) if node.op == "call_module" else node.target
            kinds = layers.setdefault(names.get(node.name, node.name), [])
            if ops.op_name(op) not in kinds:
                kinds.append(ops.op_name(op))
    width = max([len("layer")] + [len(layer) for layer in layers])
    ops_width = max([len("ops (clean graph)")] + [len(", ".join(kinds)) for kinds in layers.values()])
    print(f"{'layer':<{width}}  {'ops (clean graph)':<{ops_width}}  {args.conversion_type}")
    for layer, kinds in layers.items():
        print(f"{layer:<{width}}  {', '.join(kinds):<{ops_width}}  {problems.get(layer, 'ok')}")
    print(
        f"{len(layers)} layer(s); {sum(layer not in problems for layer in layers)} convert with "
        f"conversion_type={args.conversion_type!r}"
    )
    try:
        scheme.check(ann, names)
    except UnsupportedLayerError as exc:
        print(str(exc))  # grouped, with what to do
        return 1
    print(f"conversion_type={args.conversion_type!r}: every layer can be converted")
    return 0


def cmd_convert(args) -> int:
    """``convert``: bridge, calibrate and build an SNN from the model and the calibration split; save it."""
    check_model_path(args.model)  # before the heavy imports: a typo fails at once
    from .. import schemes, stages  # noqa: PLC0415

    options = options_from_args(args)
    options["progress"] = not args.quiet
    schemes.create(args.conversion_type, options)  # bad options fail before any data is read
    expected = expected_shape(args.model)
    x, _ = split_data(args, "train", False, expected, "calibration", path=args.calibration)
    t0 = time.perf_counter()
    model = stages.load(args.model).ann if is_snn_file(args.model) else args.model
    snn = stages.convert(model, args.conversion_type, calibration_data=x, **options)
    info(args, f"converted in {time.perf_counter() - t0:.1f} s")
    out = Path(args.output)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    snn.save(out)
    neurons = snn.neuron_counts()
    print(
        f"{args.conversion_type} SNN with {sum(neurons.values())} neurons in {len(neurons)} layer(s) written to {out}"
        + (f"; its output is complete after {snn.latency} steps" if snn.latency else "")
    )
    print(str(snn.report))
    return 0


def cmd_evaluate(args) -> int:
    """``evaluate``: simulate a .c2s on the test split; print the metrics, write JSON / CSV / plots if asked."""
    check_model_path(args.snn)  # before the heavy imports: a typo fails at once
    from .. import distributed, stages  # noqa: PLC0415

    if not is_snn_file(args.snn):
        raise CLIError(
            f"'{args.snn}' is not a converted SNN (.c2s); convert it first: convert2snn convert {args.snn} ..."
        )
    snn = stages.load(args.snn)
    snn.options.progress = not args.quiet
    if args.device:
        snn.to(args.device)
    x, y = split_data(args, "test", True, tuple(snn.bridge_info.original_input_shape()), "evaluation")
    result = snn.evaluate(x, y, timesteps=args.timesteps, batch_size=args.batch_size, energy=args.energy)
    if distributed.context()[0] != 0:  # under torchrun every rank has the merged result; rank 0 reports it
        return 0
    print(result)
    written = []
    if args.json:
        result.to_json(args.json)
        written.append(args.json)
    if args.csv:
        result.to_csv(args.csv)
        written.append(args.csv)
    if args.plot or args.layers_plot or args.raster:
        from ..tools import plots  # noqa: PLC0415  (matplotlib only when plotting)

        if args.plot:
            written.append(
                plots.plot_accuracy_vs_t(
                    {Path(args.snn).stem: result}, args.plot, title=f"{Path(args.snn).name}: accuracy vs T"
                )
            )
        if args.layers_plot:
            written.append(
                plots.plot_layers(result, args.layers_plot, title=f"{Path(args.snn).name}: per-layer metrics")
            )
        if args.raster:
            trains = snn.spike_trains(x[:1], timesteps=min(max(result.timesteps), 256), neurons=args.raster_neurons)
            written.append(
                plots.plot_raster(trains, args.raster, title=f"{Path(args.snn).name}: spike raster of sample 0")
            )
    for path in written:
        info(args, f"wrote {path}")
    return 0


def _read_config(path: str) -> Any:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"config file '{path}' does not exist")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml  # noqa: PLC0415  (only YAML configs need it)

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CLIError(f"'{path}' is not valid YAML: {' '.join(str(exc).split())}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"'{path}' is not valid JSON: {exc}") from exc


def cmd_sweep(args) -> int:
    """``sweep``: convert the model with every configuration of the config file and compare them."""
    check_model_path(args.model)  # before the heavy imports: a typo fails at once
    from .. import stages  # noqa: PLC0415
    from ..tools.sweep import bridge_once, sweep  # noqa: PLC0415

    config = _read_config(args.config)
    timesteps = args.timesteps or (config.get("timesteps") if isinstance(config, dict) else None) or DEFAULT_TIMESTEPS
    energy = args.energy or (config.get("energy") if isinstance(config, dict) else None) or DEFAULT_ENERGY
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in ("timesteps", "energy")}
    expected = expected_shape(args.model)
    x_cal, y_cal = split_data(
        args,
        "train",
        False,
        expected,
        "calibration",
        path=args.calibration or args.data,
        samples=args.calibration_samples,
    )
    x, y = split_data(args, "test", True, expected, "evaluation")
    model = bridge_once(stages.load(args.model)) if is_snn_file(args.model) else args.model
    result = sweep(
        model,
        config,
        data=(x_cal, x, y, y_cal),
        timesteps=timesteps,
        energy=energy,
        output_dir=args.output,
        plots=not args.no_plots,
        progress=not args.quiet,
    )
    print(result.to_markdown())
    for path in result.files.values():
        info(args, f"wrote {path}")
    failed = [r for r in result.rows if r.error]
    return 1 if failed and len(failed) == len(result.rows) else 0


# -- parser --------------------------------------------------------------------------------------------


def _factor(text: str) -> float:
    """A number, or a fraction such as 1/255."""
    numerator, _, denominator = text.partition("/")
    try:
        value = float(numerator) / (float(denominator) if denominator else 1.0)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction such as 1/255, got '{text}'") from None
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_export(args) -> int:
    """``export``: write a converted SNN as a NIR graph."""
    check_model_path(args.snn)  # before the heavy imports: a typo fails at once
    from .. import stages  # noqa: PLC0415

    if not is_snn_file(args.snn):
        raise CLIError(
            f"'{args.snn}' is not a converted SNN (.c2s); convert it first: convert2snn convert {args.snn} ..."
        )
    snn = stages.load(args.snn)
    out = Path(args.output)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the note below says it once, with the fix
        warnings.simplefilter("ignore", UserWarning)
        graph = snn.to_nir(out, consumer=args.consumer)
    consumer = graph.metadata["convert2snn.consumer"]
    print(f"NIR graph for {consumer} with {len(graph.nodes)} nodes written to {out}")
    exact = graph.metadata["convert2snn.exact"]
    if exact == "no":
        print(
            f"note: {consumer} runs other neurons than this SNN's ({graph.metadata['convert2snn.differences']}); "
            f"convert with --option nir_target={consumer} for an exact export"
        )
    elif exact != "yes":
        print(f"note: {consumer} runs this SNN's neurons; its spikes equal ours {exact} (a residual block rescaled)")
    return 0


VERBS = ("inspect", "convert", "evaluate", "sweep", "export")


def build_parser(option_flags: bool = True) -> argparse.ArgumentParser:
    """The command line's parser; ``option_flags=False`` leaves out ``convert``'s conversion-option
    flags, which need the schemes (and so torch) to be declared."""
    parser = _Parser(
        prog="convert2snn",
        description="Convert trained Keras / ONNX networks into spiking neural "
        "networks (PyTorch, SpikingJelly-compatible), evaluate them and sweep conversion settings.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convert2snn {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    common.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--split", choices=("train", "test"), help="which split of the .npz to read (default: see below)")
    data.add_argument("--samples", type=_positive_int, help="use only the first N samples")
    data.add_argument(
        "--scale", type=_factor, help="multiply the inputs by this factor, a number or a fraction (1/255 for uint8)"
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(VERBS) + "}", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="list a model's layers and whether they are supported",
        description="List the layers of a Keras (.keras/.h5/SavedModel) or ONNX model with their ONNX ops "
        "and bridge support status, before any conversion (Keras runs TensorFlow in a child process). "
        "For a converted .c2s file: its neuron layers and conversion report. Exit status 1 if a "
        "layer is unsupported.",
    )
    p.add_argument("model", help="model file (.keras, .h5, SavedModel directory, .onnx, or a converted .c2s)")
    p.add_argument("-t", "--conversion-type", help="also check every layer against this conversion type (e.g. rate)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "convert",
        parents=[common, data],
        help="convert a model into an SNN file (.c2s)",
        description="Convert a model into a spiking network and save it (load it with convert2snn.load). "
        "Calibration data: the train split of the .npz ('x_train', else 'x').",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model file (.keras, .h5, SavedModel, .onnx; or a .c2s to convert its ANN again)")
    p.add_argument("-t", "--type", dest="conversion_type", default="rate", help="conversion type (default: rate)")
    p.add_argument(
        "--calibration", required=True, metavar="DATA.npz", help="calibration inputs (a few hundred to a few thousand)"
    )
    p.add_argument("-o", "--output", required=True, metavar="SNN.c2s", help="where to write the converted model")
    if option_flags:
        add_option_flags(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "evaluate",
        parents=[common, data],
        help="accuracy, spikes, SOPs and energy of an SNN vs T",
        description="Simulate a converted SNN on labelled data (the test split: 'x_test'/'y_test', else "
        "'x'/'y') and print accuracy per T with the ANN's, spikes per neuron, synaptic operations, "
        "energy estimates, time-to-accuracy and per-layer ANN↔SNN correlation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("snn", help="a converted model (.c2s)")
    p.add_argument("--data", required=True, metavar="DATA.npz", help="labelled evaluation data")
    p.add_argument(
        "-T",
        "--timesteps",
        type=_positive_int,
        nargs="+",
        default=None,
        help="timesteps to report (one simulation serves all; default "
        f"{' '.join(map(str, DEFAULT_TIMESTEPS))}, or the latency of a single-spike temporal SNN)",
    )
    p.add_argument(
        "--energy",
        default=DEFAULT_ENERGY,
        help=f"energy model: {DEFAULT_ENERGY} (default), fp16, int8, or 'E_MAC,E_AC' in pJ",
    )
    p.add_argument("--batch-size", type=_positive_int, help="simulation batch size")
    p.add_argument("--device", help="torch device, e.g. cuda")
    p.add_argument("--json", metavar="OUT.json", help="write the full result as JSON")
    p.add_argument("--csv", metavar="OUT.csv", help="write accuracy/spikes/SOPs/energy per T as CSV")
    p.add_argument("--plot", metavar="OUT.png", help="plot accuracy vs T (with the ANN's accuracy)")
    p.add_argument("--layers-plot", metavar="OUT.png", help="plot per-layer firing rates and ANN↔SNN correlation")
    p.add_argument("--raster", metavar="OUT.png", help="plot a spike raster of a few neurons per layer (first sample)")
    p.add_argument(
        "--raster-neurons", type=_positive_int, default=6, help="neurons per layer in the raster (default 6)"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "sweep",
        parents=[common, data],
        help="convert with many settings and compare them",
        description="Bridge the model once, convert it with every configuration of the config file "
        "and evaluate each SNN on the test split. Writes results.csv, results.md, results.json, "
        "accuracy_vs_T.png and pareto.png to the output directory. Config (YAML or JSON; "
        'shown as JSON): {"timesteps": [...], "energy": "fp32", "configs": [{"name": ..., '
        '"conversion_type": "rate", "percentile": 99.9, ...}, {"name": "search", "search": '
        '{"target_T": 16, "per_layer": true}}], "grid": {"percentile": [99.9, 100], '
        '"neuron": ["if", "lif"]}}.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model file (.keras, .h5, SavedModel, .onnx, or a .c2s whose ANN is converted again)")
    p.add_argument("--config", required=True, metavar="SWEEP.json|yaml", help="the configurations to run")
    p.add_argument(
        "--data", required=True, metavar="DATA.npz", help="calibration (train split) and evaluation (test split) data"
    )
    p.add_argument("--calibration", metavar="CAL.npz", help="take calibration inputs from this file instead")
    p.add_argument("--calibration-samples", type=_positive_int, default=None, help="use the first N calibration inputs")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "-T",
        "--timesteps",
        type=_positive_int,
        nargs="+",
        help=f"timesteps (default: from the config, else {' '.join(map(str, DEFAULT_TIMESTEPS))})",
    )
    p.add_argument("--energy", help="energy model (default: from the config, else 45nm-fp32)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "export",
        parents=[common],
        help="export a converted SNN to another format (NIR)",
        description="Write a rate-converted SNN (.c2s) as a NIR graph for one consumer (Conv2d, Linear, "
        "AvgPool2d, Flatten, scales, residual Add, IF/LIF neurons). Needs the 'nir' package.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("snn", help="converted SNN file (.c2s)")
    p.add_argument("--format", choices=["nir"], default="nir", help="output format (default nir)")
    p.add_argument(
        "--consumer",
        choices=["nir", "norse", "snntorch", "sinabs"],
        default=None,
        help="the simulator that will read the file (default: the conversion's nir_target, else nir)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.nir", help="output file")
    p.set_defaults(func=cmd_export)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Warnings on the command line: one line each, without the source line that Python shows."""
    text = " ".join(str(message).split()).removeprefix("convert2snn: ")
    print(f"convert2snn: warning: {text}", file=sys.stderr)


def _conversion_errors() -> tuple[type[Exception], ...]:
    """`ConversionError` if a verb got as far as importing it (importing it here would cost seconds)."""
    errors = sys.modules.get("bridges.errors")
    return (errors.ConversionError,) if errors is not None else ()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: parse ``argv`` (default sys.argv), run the verb; exit status 0, 1 (unsupported) or 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)  # flags before the verb take no values
    parser = build_parser(option_flags=False)
    if verb == "convert":
        if not {"-h", "--help"} & set(argv):
            # missing arguments and a missing model file fail here, before torch is imported
            known, _ = parser.parse_known_args(argv)
            try:
                check_model_path(known.model)
            except CLIError as exc:
                print(f"convert2snn convert: error: {exc}", file=sys.stderr)
                return EXIT_BAD_INPUT
        parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ["CONVERT2SNN_QUIET"] = "1"
    shown, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        try:
            return int(args.func(args) or 0)
        except Exception as exc:
            if args.debug or not isinstance(exc, (CLIError, OSError, *_conversion_errors())):
                raise
            print(f"convert2snn {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
