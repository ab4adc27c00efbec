"""The command line end to end on a tiny ONNX model, in a temporary directory, plus its error handling."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from convert2snn.__main__ import main


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.eval()

    def forward(self, x):
        return torch.softmax(self.fc(self.pool(torch.relu(self.conv(x))).flatten(1)), dim=1)


def run(*args, cwd, show_warnings=False):
    env = dict(os.environ, PYTHONWARNINGS="default" if show_warnings else "ignore")
    return subprocess.run(
        [sys.executable, "-m", "convert2snn", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    net = Tiny()
    torch.onnx.export(
        net,
        (torch.rand(1, 1, 8, 8),),
        str(d / "model.onnx"),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
    )
    g = np.random.default_rng(0)
    x_train = g.random((96, 1, 8, 8), dtype=np.float32)
    x_test = g.random((40, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        y_train = net(torch.from_numpy(x_train)).argmax(1).numpy()
        y_test = net(torch.from_numpy(x_test)).argmax(1).numpy()
    np.savez(d / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    np.savez(d / "wrong.npz", images=x_test, labels=y_test)
    (d / "sweep.json").write_text(
        json.dumps(
            {
                "timesteps": [4, 16],
                "configs": [{"name": "max", "percentile": 100}],
                "grid": {"percentile": [99.9], "neuron": ["if", "lif"]},
            }
        )
    )
    # the README's sweep config is YAML: pyyaml is a dependency, so it works as installed
    (d / "sweep.yaml").write_text(
        "timesteps: [4, 16]\nconfigs:\n  - {name: max, percentile: 100}\n"
        "grid:\n  percentile: [99.9]\n  neuron: [if, lif]\n"
    )
    return d


def test_inspect_convert_evaluate_sweep(workdir):
    r = run("inspect", "model.onnx", "-t", "rate", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "Conv" in r.stdout and "0 unsupported" in r.stdout and "every layer can be converted" in r.stdout

    r = run(
        "convert",
        "model.onnx",
        "-t",
        "rate",
        "--calibration",
        "data.npz",
        "-o",
        "snn.c2s",
        "--percentile",
        "99.9",
        "--option",
        "v_init=0.5",
        cwd=workdir,
    )
    assert r.returncode == 0, r.stderr
    assert (workdir / "snn.c2s").exists() and "written to snn.c2s" in r.stdout
    assert "96 samples from data.npz['x_train']" in r.stderr

    r = run(
        "evaluate",
        "snn.c2s",
        "--data",
        "data.npz",
        "-T",
        "4",
        "16",
        "--plot",
        "acc.png",
        "--json",
        "r.json",
        "--csv",
        "r.csv",
        "--layers-plot",
        "layers.png",
        "--raster",
        "raster.png",
        "--energy",
        "int8",
        cwd=workdir,
    )
    assert r.returncode == 0, r.stderr
    assert "40 samples from data.npz['x_test']" in r.stderr and "E_SNN/E_ANN" in r.stdout
    result = json.loads((workdir / "r.json").read_text())
    assert result["timesteps"] == [4, 16] and result["energy_model"]["name"] == "45nm-int8"
    assert result["ann_accuracy"] == 1.0 and len(result["sops"]) == 2
    assert (workdir / "r.csv").read_text().startswith("T,accuracy")
    for png in ("acc.png", "layers.png", "raster.png"):
        assert (workdir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    r = run("sweep", "model.onnx", "--config", "sweep.yaml", "--data", "data.npz", "-o", "results", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    out = workdir / "results"
    for name in ("results.csv", "results.md", "results.json", "accuracy_vs_T.png", "pareto.png"):
        assert (out / name).exists(), name
    table = (out / "results.md").read_text()
    assert "| max |" in table and "T=16" in table and table.count("\n| ") == 3  # header + 3 configurations
    assert r.stderr == ""  # --quiet


def test_reconvert_from_c2s_and_inspect_it(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert main(["convert", "model.onnx", "--calibration", "data.npz", "-o", "a.c2s", "-q"]) == 0
    assert (
        main(
            [
                "convert",
                "a.c2s",
                "--calibration",
                "data.npz",
                "-o",
                "b.c2s",
                "--percentile",
                "100",
                "-q",
                "--samples",
                "50",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["inspect", "b.c2s"]) == 0
    out = capsys.readouterr().out
    assert "neuron layer" in out and "λ[" in out and "input shape (1, 8, 8)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "missing.c2s", "--data", "data.npz"], "model file 'missing.c2s' does not exist"),
        (
            ["convert", "model.onnx", "--calibration", "nothere.npz", "-o", "x.c2s"],
            "data file 'nothere.npz' does not exist",
        ),
        (
            ["convert", "model.onnx", "--calibration", "wrong.npz", "-o", "x.c2s"],
            "has no train inputs: expected 'x_train' or 'x'",
        ),
        (
            ["convert", "model.onnx", "--calibration", "sweep.json", "-o", "x.c2s"],
            "cannot read 'sweep.json' as an .npz file",
        ),
        (
            ["convert", "model.onnx", "--calibration", "data.npz", "-o", "x.c2s", "--option", "percentil=99"],
            "Did you mean 'percentile'",
        ),
        (
            ["convert", "model.onnx", "--calibration", "data.npz", "-o", "x.c2s", "--percentile", "0"],
            "percentile must be in",
        ),
        (
            ["convert", "model.onnx", "-t", "rat", "--calibration", "data.npz", "-o", "x.c2s"],
            "unknown conversion_type 'rat'",
        ),
        (
            ["sweep", "model.onnx", "--config", "nothere.yaml", "--data", "data.npz", "-o", "r"],
            "config file 'nothere.yaml' does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_argparse_errors_are_one_line_and_exit_2(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    for argv in (["evaluate", "snn.c2s"], ["convert", "model.onnx", "--percentile", "high"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "--help" in err


def test_bad_input_in_a_subprocess(workdir):
    r = run("convert", "model.onnx", "--calibration", "wrong.npz", "-o", "x.c2s", cwd=workdir)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "expected 'x_train' or 'x'" in r.stderr


def test_help_describes_every_verb(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in ("inspect", "convert", "evaluate", "sweep", "x_train"):
        assert verb in out
    for verb in ("convert", "evaluate", "sweep"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "--data" in capsys.readouterr().out or verb == "convert"


def test_temporal_convert_and_evaluate_at_its_latency(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    assert (
        main(
            [
                "convert",
                "model.onnx",
                "-t",
                "temporal",
                "--period",
                "16",
                "--calibration",
                "data.npz",
                "-o",
                "ttfs.c2s",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "complete after 32 steps" in out  # one neuron layer and the readout: 2 cycles of K = 16
    assert main(["evaluate", "ttfs.c2s", "--data", "data.npz", "--json", "ttfs.json", "--quiet"]) == 0
    result = json.loads((workdir / "ttfs.json").read_text())
    assert result["timesteps"] == [32] and result["accuracy"][0] >= 0.9
    assert 0 < result["spikes_per_neuron"][0] <= 1.0


def test_every_conversion_option_is_a_flag_of_convert(workdir, monkeypatch, capsys):
    import dataclasses

    from convert2snn import schemes

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    for name in schemes.available():
        for field in dataclasses.fields(schemes.scheme_class(name).Options):
            if field.name != "progress":  # follows --quiet
                assert "--" + field.name.replace("_", "-") in out, field.name
    monkeypatch.chdir(workdir)
    assert (
        main(
            [
                "convert",
                "model.onnx",
                "--calibration",
                "data.npz",
                "-o",
                "q.c2s",
                "--signed-bit",
                "8",
                "--input-range",
                "0",
                "1",
                "--no-per-channel",
                "-q",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "weights quantised to 8-bit" in out and "λ[" in out and "min=" not in out  # one λ per layer
    assert (
        main(
            [
                "convert",
                "model.onnx",
                "-t",
                "population",
                "--calibration",
                "data.npz",
                "-o",
                "p.c2s",
                "--layer-n",
                '{"nothere": 4}',
                "-q",
            ]
        )
        == 2
    )
    assert "layer_n names 'nothere'" in capsys.readouterr().err


def test_inspect_lists_every_layer_with_the_conversion_types_verdict(tmp_path, monkeypatch, capsys):
    class Squash(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(torch.sigmoid(torch.relu(self.conv(x))).flatten(1))

    torch.onnx.export(
        Squash().eval(),
        (torch.rand(1, 1, 8, 8),),
        str(tmp_path / "squash.onnx"),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
    )
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "squash.onnx", "-t", "rate"]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith((" ", "-"))}
    conv = next(line for name, line in rows.items() if "Conv2d" in line)
    assert conv.rstrip().endswith("ok")
    assert any("Sigmoid" in line and "a sigmoid cannot be represented" in line for line in rows.values())
    assert "cannot be converted with conversion_type='rate'" in out and "conversion_type='population'" in out
    assert main(["inspect", "squash.onnx", "-t", "population"]) == 0


def test_help_version_and_argument_errors_do_not_import_torch(tmp_path):
    """They answer before torch, onnx or the bridge are imported (it took 7–15 s to import them first)."""
    code = (
        "import sys\n"
        "from convert2snn.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['convert', 'm.onnx'], ['convert', '--help'],\n"
        "             ['evaluate', 'missing.c2s', '--data', 'd.npz'], ['inspect', 'missing.keras'], ['frobnicate'],\n"
        "             ['convert', 'missing.onnx', '--calibration', 'c.npz', '-o', 'x.c2s', '--percentile', '99']):\n"
        "    if argv == ['convert', '--help']:\n"
        "        continue  # lists the schemes' option flags: needs them imported\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'onnx', 'onnx2torch', 'tensorflow', 'bridges') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr
    assert "missing.c2s' does not exist" in r.stderr and "missing.keras' does not exist" in r.stderr
    assert "convert2snn convert: error: model file 'missing.onnx' does not exist" in r.stderr


def test_convert_help_lists_the_option_flags(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    assert "--percentile" in out and "--period" in out and "--n " in out.replace("--n N", "--n ")


def test_scale_takes_a_number_or_a_fraction(capsys):
    from convert2snn.cli.main import build_parser

    parser = build_parser(option_flags=False)
    for text, value in (("1/255", 1 / 255), ("0.5", 0.5), ("2", 2.0)):
        assert parser.parse_args(["evaluate", "s.c2s", "--data", "d.npz", "--scale", text]).scale == value
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "s.c2s", "--data", "d.npz", "--scale", "1/0"])
    assert "expected a number or a fraction such as 1/255, got '1/0'" in capsys.readouterr().err


def test_unscaled_uint8_calibration_data_is_warned_about_in_one_line(workdir, tmp_path):
    with np.load(workdir / "data.npz") as f:
        np.savez(tmp_path / "raw.npz", x_train=(f["x_train"] * 255).astype(np.uint8))
    r = run(
        "convert",
        "model.onnx",
        "--calibration",
        str(tmp_path / "raw.npz"),
        "-o",
        str(tmp_path / "s.c2s"),
        "-q",
        cwd=workdir,
        show_warnings=True,
    )
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("convert2snn: warning: calibration_data is uint8")
    r = run(
        "convert",
        "model.onnx",
        "--calibration",
        str(tmp_path / "raw.npz"),
        "--scale",
        "1/255",
        "-o",
        str(tmp_path / "s.c2s"),
        "-q",
        cwd=workdir,
        show_warnings=True,
    )
    assert r.returncode == 0 and "warning" not in r.stderr
