"""Plots: written as PNGs, axis ranges that follow the data, legends and labels that cover nothing."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from convert2snn.metrics import EvaluationResult
from convert2snn.tools import plots


def _result(accuracy, energy, ann=0.982, timesteps=(1, 2, 4, 8, 16, 32)) -> EvaluationResult:
    return EvaluationResult(
        timesteps=list(timesteps),
        accuracy=list(accuracy),
        ann_accuracy=ann,
        spikes_per_neuron=[0.1 * t for t in timesteps],
        samples=1000,
        snn_energy_pj=[e * 100.0 for e in energy],
        ann_energy_pj=100.0,
    )


@pytest.fixture
def close_results():
    """The issue's case: every point between 97.9 and 98.4 %, temporal points at nearly equal cost."""
    return {
        "rate p=99.9": _result([0.979, 0.980, 0.981, 0.982, 0.983, 0.984], [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]),
        "rate p=100": _result([0.979, 0.9795, 0.980, 0.981, 0.982, 0.983], [0.04, 0.09, 0.18, 0.36, 0.7, 1.4]),
        "ttfs K=4": _result([0.981, 0.981], [0.101, 0.102], timesteps=(64, 4)),
        "ttfs K=8": _result([0.982, 0.9821], [0.103, 0.104], timesteps=(128, 8)),
    }


def _data_y(ax) -> list[float]:
    return [float(y) for line in ax.get_lines() for y in np.atleast_1d(line.get_ydata()) if np.isfinite(y)]


def _extents(fig):
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    return renderer, ax, ax.get_window_extent(renderer), ax.get_legend().get_window_extent(renderer)


@pytest.mark.parametrize("figure", ["accuracy", "pareto"])
def test_axis_ranges_follow_the_data_with_a_margin(close_results, figure):
    fig = plots.accuracy_vs_t_figure(close_results) if figure == "accuracy" else plots.pareto_figure(close_results)
    ax = fig.axes[0]
    values = [v for v in _data_y(ax) if 50 < v <= 100]
    low, high = ax.get_ylim()
    span = max(values) - min(values)
    assert low < min(values) and high > max(values)  # every point inside, off the frame
    assert (high - low) <= span + 2 * max(1.0, 0.08 * span) + 1e-9  # not 74–100 for points in 97.9–98.4


@pytest.mark.parametrize("figure", ["accuracy", "pareto"])
def test_the_legend_covers_no_data(close_results, figure):
    fig = plots.accuracy_vs_t_figure(close_results) if figure == "accuracy" else plots.pareto_figure(close_results)
    _renderer, _ax, axes_box, legend_box = _extents(fig)
    assert legend_box.x0 >= axes_box.x1  # beside the axes


def test_pareto_labels_never_overlap_and_the_front_differs_from_the_ann_line(close_results):
    fig = plots.pareto_figure(close_results)
    renderer, ax, _axes_box, _legend = _extents(fig)
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert boxes  # front points are labelled
    assert all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    lines = {line.get_label(): line for line in ax.get_lines()}
    front = lines["Pareto front"]
    ann = next(line for label, line in lines.items() if label.startswith("ANN accuracy"))
    assert (front.get_color(), front.get_linestyle()) != (ann.get_color(), ann.get_linestyle())


def test_plots_are_written_as_png(close_results, tmp_path):
    for path in (
        plots.plot_accuracy_vs_t(close_results, tmp_path / "acc.png"),
        plots.plot_pareto(close_results, tmp_path / "sub" / "pareto.png"),
    ):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
