"""bench_nir's tables and --merge of separate runs, from results dicts."""

from __future__ import annotations


def _row(mode, accuracy):
    return {"mode": mode, "options": {}, "accuracy": accuracy, "seconds": 1.0}


def test_accuracy_table_shows_each_mode_against_the_default(bench_nir):
    results = {
        "title": "t",
        "samples": 100,
        "timesteps": [8, 16],
        "ann_accuracy": 0.9,
        "rows": [_row("default", [0.8, 0.85]), _row("nir", [0.5, 0.875])],
    }
    lines = bench_nir.accuracy_table(results).splitlines()
    assert lines[0] == "t: accuracy (%) on 100 test images; ANN 90.00 %"
    assert lines[2] == "| neurons | T=8 | T=16 |"
    assert lines[4] == "| default | 80.00 | 85.00 |"
    assert lines[5] == "| nir | 50.00 (-30.00) | 87.50 (+2.50) |"


def test_merge_replaces_equal_modes_and_keeps_table_order(bench_nir):
    earlier = [_row("default", [0.1]), _row("nir", [0.2]), _row("sinabs tuned", [0.3])]
    new = [_row("nir", [0.4]), _row("default tuned", [0.5])]
    merged = bench_nir.merge_rows(earlier, new)
    assert [(r["mode"], r["accuracy"]) for r in merged] == [
        ("default", [0.1]),
        ("default tuned", [0.5]),
        ("nir", [0.4]),
        ("sinabs tuned", [0.3]),
    ]


def test_interop_merge_and_table_tell_consumers_apart(bench_nir):
    def run(consumer, own, exact, mismatch=0.0):
        return {
            "mode": "default",
            "consumer": consumer,
            "own_neurons": own,
            "argmax_agreement": 1.0 if exact else 0.97,
            "relative_error_max": 5e-8 if exact else 0.6,
            "spikes_exact": exact,
            "spike_mismatch_max": mismatch,
            "accuracy_ours": 0.99,
            "accuracy_consumer": 0.99 if exact else 0.975,
            "seconds": 1.0,
        }

    earlier = [run("snntorch", False, False, 0.15), run("snntorch", True, False, 1e-5)]
    merged = bench_nir.merge_rows(earlier, [run("snntorch", True, True)])
    assert [(r["own_neurons"], r["spikes_exact"]) for r in merged] == [(False, False), (True, True)]
    table = bench_nir.interop_table({"title": "t", "samples": 10, "timesteps": [32], "rows": merged}).splitlines()
    assert table[4] == "| default | snntorch | no (15 % differ) | 97.00 % | 6.00e-01 | 99.00 | 97.50 |"
    assert table[5] == "| default | snntorch (own neurons) | yes | 100.00 % | 5.00e-08 | 99.00 | 99.00 |"
