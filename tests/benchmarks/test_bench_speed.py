"""benchmarks/bench_speed.py runs end to end (tiny sizes) and reports what it claims to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench_speed(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_speed

    yield bench_speed
    for name in ("bench_speed", "bench_accuracy", "train_models"):
        sys.modules.pop(name, None)


def _row_is_consistent(row: dict) -> None:
    assert row["t_ann_s"] == min(row["t_ann_nchw_s"], row["t_ann_channels_last_s"])
    assert row["ours_ratio"] == pytest.approx(row["t_ours_s"] / (row["T"] * row["t_ann_s"]))
    assert row["ours_images_per_s"] == pytest.approx(row["batch"] / row["t_ours_s"])


def test_speed_benchmark_on_a_random_vgg(bench_speed, tmp_path, capsys):
    out = tmp_path / "speed.json"
    saved = tmp_path / "vgg.c2s"
    assert (
        bench_speed.main(
            [
                "--random",
                "--timesteps",
                "3",
                "--batches",
                "2",
                "--main-batch",
                "4",
                "--main-T",
                "3",
                "--repeat",
                "1",
                "--json",
                str(out),
                "--save",
                str(saved),
                "--population",
                "2",
                "--ttfs",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert [(r["T"], r["batch"]) for r in result["rows"]] == [(3, 4), (3, 2)]
    for row in result["rows"]:
        _row_is_consistent(row)
        assert row["ours_vs_sj"] == pytest.approx(row["t_sj_s"] / row["t_ours_s"])
    pop, ttfs = result["other_codes"]
    assert pop["code"] == "population n=16" and pop["T"] == 2 and pop["images_per_s"] == pytest.approx(4 / pop["t_s"])
    assert pop["ratio"] == pytest.approx(pop["t_s"] / (2 * pop["t_ann_s"]))
    assert ttfs["code"] == "temporal code=ttfs period=16" and ttfs["T"] == 16 * 8  # 7 neuron layers + the readout
    printed = capsys.readouterr().out
    assert "| 3 | 4 |" in printed and "| population n=16 | 2 | 4 |" in printed
    assert saved.exists()


@pytest.mark.slow
def test_speed_ablation_runs_every_engine_configuration(bench_speed, tmp_path):
    saved = tmp_path / "vgg.c2s"
    bench_speed.main(
        [
            "--random",
            "--timesteps",
            "2",
            "--batches",
            "2",
            "--main-batch",
            "2",
            "--repeat",
            "1",
            "--skip-sj",
            "--json",
            str(tmp_path / "s.json"),
            "--save",
            str(saved),
        ]
    )
    assert (
        bench_speed.main(
            [
                "--snn",
                str(saved),
                "--ablation",
                "--main-T",
                "3",
                "--main-batch",
                "2",
                "--repeat",
                "1",
                "--json",
                str(tmp_path / "speed.json"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "speed_ablation.json").read_text())["rows"]
    assert [r["engine"] for r in rows] == [label for label, _, _ in bench_speed.ABLATION]
    for row in rows:
        _row_is_consistent(row)
