"""PNG plots of evaluation results (matplotlib, Agg canvas: no display and no global backend change).

- `plot_accuracy_vs_t`: SNN accuracy vs T for one or several results, with the ANN's accuracy;
- `plot_layers`: per-layer firing rates and ANN↔SNN correlation (where a conversion breaks);
- `plot_raster`: spike trains of a few neurons per layer (`SpikingModel.spike_trains`);
- `plot_pareto`: accuracy vs energy (or SOPs / spikes) for several configurations, with the Pareto front.

Every ``plot_*`` function writes the file and returns its path; ``*_figure`` returns the figure unwritten.
Legends sit beside the axes, never over data; axis ranges follow the data with a margin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..metrics import EvaluationResult

_DPI = 120


def _save(fig: Figure, path: str | os.PathLike) -> str:
    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return str(path)


def _as_results(results: EvaluationResult | Mapping[str, EvaluationResult]) -> dict[str, EvaluationResult]:
    if isinstance(results, EvaluationResult):
        return {"SNN": results}
    return dict(results)


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _padded(values: list[float], margin: float = 0.08, least: float = 0.5) -> tuple[float, float]:
    """An axis range around ``values``: their span plus ``margin`` of it (at least ``least``) each side."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(least, margin * (high - low))
    return low - pad, high + pad


def _legend_outside(ax) -> None:
    """The legend to the right of the axes, where it covers no data (``bbox_inches="tight"`` keeps it)."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def accuracy_vs_t_figure(
    results: EvaluationResult | Mapping[str, EvaluationResult], *, title: str = "SNN accuracy vs timesteps"
) -> Figure:
    """The figure of `plot_accuracy_vs_t`, not yet written."""
    res = _as_results(results)
    fig = Figure(figsize=(8.5, 4.8))
    ax = fig.add_subplot()
    anns = sorted({round(r.ann_accuracy, 6) for r in res.values()})
    for (name, r), color in zip(res.items(), _colors(len(res))):
        ax.plot(r.timesteps, [100 * a for a in r.accuracy], "o-", color=color, label=name, lw=1.6, ms=4)
    for i, a in enumerate(anns):
        ax.axhline(
            100 * a, color="0.25", ls="--", lw=1.2, label=f"ANN ({100 * a:.2f} %)" if len(anns) == 1 or i == 0 else None
        )
        if len(anns) == 1:
            ax.axhspan(100 * a - 1, 100 * a, color="0.85", alpha=0.5, lw=0, label="within 1 pp of the ANN")
    ts = sorted({t for r in res.values() for t in r.timesteps})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts)
    ax.set_xticklabels([str(t) for t in ts])
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("accuracy (%)")
    values = [100 * a for r in res.values() for a in r.accuracy] + [100 * a for a in anns]
    low, high = _padded(values, least=1.0)
    ax.set_ylim(max(-1.0, low), min(100.5, high))
    samples = next(iter(res.values())).samples
    ax.set_title(f"{title}  ({samples} samples)" if samples else title)
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    return fig


def plot_accuracy_vs_t(
    results: EvaluationResult | Mapping[str, EvaluationResult],
    path: str | os.PathLike,
    *,
    title: str = "SNN accuracy vs timesteps",
) -> str:
    """Accuracy (%) against T (log2 axis) for each result; the ANN's accuracy as a dashed line."""
    return _save(accuracy_vs_t_figure(results, title=title), path)


def plot_layers(
    result: EvaluationResult, path: str | os.PathLike, *, title: str = "per-layer firing rates and ANN↔SNN correlation"
) -> str:
    """Left: spikes per neuron per step in each layer at each T. Right: Pearson r (ANN vs decoded SNN) per layer."""
    layers = list(result.layer_spikes_per_neuron)
    fig = Figure(figsize=(max(8.0, 1.1 * len(layers) + 5), 4.6))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    x = np.arange(len(layers))
    shown = (
        result.timesteps
        if len(result.timesteps) <= 4
        else [result.timesteps[0], result.timesteps[len(result.timesteps) // 2], result.timesteps[-1]]
    )
    width = 0.8 / len(shown)
    for j, (t, color) in enumerate(zip(shown, _colors(len(shown)))):
        i = result.timesteps.index(t)
        rates = [result.layer_spikes_per_neuron[layer][i] / t for layer in layers]
        ax1.bar(x + (j - (len(shown) - 1) / 2) * width, rates, width, color=color, label=f"T={t}")
    ax1.set_xticks(x)
    ax1.set_xticklabels(layers, rotation=35, ha="right", fontsize=8)
    ax1.set_ylabel("spikes per neuron per step")
    ax1.set_xlabel("neuron layer")
    ax1.set_title("firing rate")
    ax1.legend(fontsize=8)
    ax1.grid(True, axis="y", alpha=0.3)
    corr_layers = [layer for layer in layers if layer in result.layer_correlation]
    if corr_layers:
        for t, color in zip(shown, _colors(len(shown))):
            i = result.timesteps.index(t)
            r = [result.layer_correlation[layer][i] for layer in corr_layers]
            ax2.plot(
                [layers.index(layer) for layer in corr_layers],
                [np.nan if v is None else v for v in r],
                "o-",
                color=color,
                label=f"T={t}",
            )
        values = [np.nan if v is None else v for layer in corr_layers for v in result.layer_correlation[layer]]
        ax2.set_ylim(min(0.0, np.nanmin(values + [1.0])) - 0.02, 1.02)
        ax2.axhline(1.0, color="0.3", ls=":", lw=1)
        ax2.legend(fontsize=8, loc="lower left")
    else:
        ax2.text(0.5, 0.5, "no one-to-one ANN counterpart", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xticks(x)
    ax2.set_xticklabels(layers, rotation=35, ha="right", fontsize=8)
    ax2.set_ylabel("Pearson r (ANN activation vs rate·λ)")
    ax2.set_xlabel("neuron layer")
    ax2.set_title("ANN↔SNN correlation")
    ax2.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_raster(
    trains: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, *, title: str = "spike raster (one sample)"
) -> str:
    """Spike raster from `SpikingModel.spike_trains`: one row per neuron, grouped by layer."""
    layers = [layer for layer in trains if np.asarray(trains[layer]["spikes"]).size]
    rows = sum(np.asarray(trains[layer]["spikes"]).shape[1] for layer in layers)
    fig = Figure(figsize=(8.0, max(3.0, 0.22 * rows + 1.5)))
    ax = fig.add_subplot()
    y, ticks, labels = 0, [], []
    colors = _colors(len(layers))
    steps = 0
    for layer, color in zip(layers, colors):
        spikes = np.asarray(trains[layer]["spikes"])
        steps = max(steps, spikes.shape[0])
        for j in range(spikes.shape[1]):
            times = np.nonzero(spikes[:, j])[0] + 1
            ax.vlines(times, y + 0.1, y + 0.9, color=color, lw=1.2)
            idx = trains[layer]["indices"][j]
            ticks.append(y + 0.5)
            labels.append(f"{layer}[{idx}] ({len(times)})")
            y += 1
        ax.axhline(y, color="0.8", lw=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(0, max(1, y))
    ax.invert_yaxis()
    ax.set_xlim(0.5, steps + 0.5)
    ax.set_xlabel("timestep")
    ax.set_ylabel("neuron (layer[index], spikes)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated by another (lower cost and at least equal accuracy), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_figure(results: Mapping[str, EvaluationResult], *, cost: str = "energy", title: str | None = None) -> Figure:
    """The figure of `plot_pareto`, not yet written."""
    res = _as_results(results)
    if cost == "energy" and not all(r.snn_energy_pj and r.ann_energy_pj for r in res.values()):
        cost = "spikes"
    label = {
        "energy": "energy per inference relative to the ANN (E_SNN / E_ANN)",
        "sops": "synaptic operations per inference",
        "spikes": "spikes per neuron per inference",
    }[cost]
    fig = Figure(figsize=(8.8, 5.0))
    FigureCanvasAgg(fig)  # the labels are placed in display coordinates
    ax = fig.add_subplot()
    points, tags = [], []
    for (name, r), color in zip(res.items(), _colors(len(res))):
        xs = {"energy": r.energy_ratio(), "sops": r.sops, "spikes": r.spikes_per_neuron}[cost]
        ys = [100 * a for a in r.accuracy]
        ax.plot(xs, ys, "o-", color=color, label=name, lw=1.2, ms=4, alpha=0.85)
        for xv, yv, t in zip(xs, ys, r.timesteps):
            points.append((xv, yv))
            tags.append(t)
    front = pareto_front(points)
    fx = [points[i][0] for i in front]
    fy = [points[i][1] for i in front]
    ax.step(fx, fy, where="post", color="k", lw=2.2, alpha=0.35, label="Pareto front", zorder=1)
    ax.scatter(fx, fy, s=70, facecolors="none", edgecolors="k", zorder=5)
    if cost == "energy":
        ax.axvline(1.0, color="0.4", ls=":", lw=1, label="ANN energy")
    anns = sorted({round(r.ann_accuracy, 6) for r in res.values()})
    if len(anns) == 1:
        ax.axhline(100 * anns[0], color="tab:red", ls="--", lw=1, label=f"ANN accuracy ({100 * anns[0]:.2f} %)")
    ax.set_xscale("log")
    # plain numbers at 1, 2, 5 × 10^k, no labels on the minor ticks (they collide: "3×10⁻¹4×10⁻¹")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label + " (log scale)")
    ax.set_ylabel("accuracy (%)")
    low, high = _padded([p[1] for p in points] + [100 * a for a in anns], least=0.3)
    ax.set_ylim(max(-1.0, low), min(100.5, high))
    ax.set_title(title or "accuracy vs cost (each point: one configuration at one T)")
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(ax)
    _label_without_overlap(ax, [points[i] for i in front], [f"T={tags[i]}" for i in front])
    return fig


def _label_without_overlap(ax, points: list[tuple[float, float]], texts: list[str]) -> None:
    """Annotate each point beside it where its label overlaps no earlier label (four places are
    tried); a point with no free place stays unlabelled rather than print over another."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for point, text in zip(points, texts):
        for offset in ((4, -11), (4, 5), (-6, 5), (-6, -11)):
            label = ax.annotate(
                text,
                point,
                textcoords="offset points",
                xytext=offset,
                fontsize=7,
                ha="left" if offset[0] > 0 else "right",
            )
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()


def plot_pareto(
    results: Mapping[str, EvaluationResult], path: str | os.PathLike, *, cost: str = "energy", title: str | None = None
) -> str:
    """Accuracy vs cost for every (configuration, T); ``cost``: "energy" (E_SNN/E_ANN), "sops" or "spikes"."""
    return _save(pareto_figure(results, cost=cost, title=title), path)


__all__ = [
    "plot_accuracy_vs_t",
    "plot_layers",
    "plot_raster",
    "plot_pareto",
    "pareto_front",
    "accuracy_vs_t_figure",
    "pareto_figure",
]
