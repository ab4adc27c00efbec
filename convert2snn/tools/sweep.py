"""Batch conversion: many conversions of one model, evaluated on the same data, as one table.

    result = convert2snn.sweep("model.keras", [
        {"percentile": 100}, {"percentile": 99.99}, {"percentile": 99.9, "neuron": "lif"},
        {"name": "search", "search": {"target_T": 16, "per_layer": True}},
    ], data=(x_train[:2000], x_test, y_test), timesteps=[4, 8, 16, 32, 64])
    print(result.to_markdown()); result.save("results/")   # CSV, Markdown, JSON and plots

The model is bridged once (`convert2snn.stages.bridge`: for Keras one TensorFlow export in a
child process); every configuration converts the same clean graph. A configuration is a dict of
`convert` options plus ``conversion_type`` (default "rate") and an optional ``name``; a
``{"grid": {option: [values, …]}}`` entry expands to the cartesian product. A ``search``
entry runs Mueller et al.'s normalisation hyperparameter search: the activation percentile
(global, and with ``per_layer`` greedily layer by layer) that maximises accuracy at a target T
on a held-out part of the calibration data.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx

from .. import schemes
from ..defaults import DEFAULT_TIMESTEPS
from ..errors import ConversionError, InvalidInputError
from ..inputs import as_tensor, check_input_shape, check_timesteps, labels_to_indices
from ..metrics import EvaluationResult, energy_model
from ..model import SpikingModel
from ..progress import progress_bar
from ..report import ConversionReport
from ..stages import Calibration, bridge, build, calibrate, convert

DEFAULT_PERCENTILES = (99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0)
_RESERVED = ("name", "conversion_type", "search")


# -- data ------------------------------------------------------------------------------------------------


@dataclass
class SweepData:
    """Calibration inputs (with optional labels, used by the search's held-out split) and evaluation data."""

    x_calib: Any
    x_eval: Any
    y_eval: Any
    y_calib: Any = None

    @classmethod
    def coerce(cls, data: Any) -> SweepData:
        """``data`` as `SweepData`: a SweepData, a tuple (x_calib, x_eval, y_eval[, y_calib]) or a dict with those
        keys (or aliases such as x_train / x_test / y_test)."""
        if isinstance(data, SweepData):
            return data
        if isinstance(data, dict):

            def pick(*keys, required=True):
                for k in keys:
                    if k in data and data[k] is not None:
                        return data[k]
                if required:
                    raise InvalidInputError(
                        f"sweep data needs one of the keys {', '.join(keys)}; got {', '.join(data)}"
                    )
                return None

            return cls(
                pick("x_calib", "calibration", "x_train", "x"),
                pick("x_eval", "x_test", "x"),
                pick("y_eval", "y_test", "y"),
                pick("y_calib", "y_train", required=False),
            )
        if isinstance(data, (tuple, list)) and len(data) in (3, 4):
            return cls(*data)
        raise InvalidInputError(
            "sweep data must be (x_calib, x_eval, y_eval[, y_calib]), a dict with those keys, or a SweepData"
        )


# -- configurations --------------------------------------------------------------------------------------


def expand_configs(configs: Any) -> list[dict[str, Any]]:
    """A list of configuration dicts from a list (with ``{"grid": {...}}`` entries) or a dict with
    ``configs`` and/or ``grid`` keys. Every configuration gets a unique ``name``."""
    if isinstance(configs, dict):
        unknown = set(configs) - {"configs", "grid", "timesteps", "energy", "search", "samples", "calibration_samples"}
        if unknown:
            raise InvalidInputError(
                f"unknown sweep keys {sorted(unknown)}: use 'configs', 'grid' (and 'timesteps', 'energy')"
            )
        items = list(configs.get("configs", []))
        if "grid" in configs:
            items.append({"grid": configs["grid"]})
        if "search" in configs:
            items.append({"name": "search", "search": configs["search"]})
    elif isinstance(configs, (list, tuple)):
        items = list(configs)
    else:
        raise InvalidInputError(
            f"configs must be a list of dicts (or a dict with 'configs'/'grid'), got {type(configs).__name__}"
        )
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInputError(f"each sweep configuration must be a dict of options, got {item!r}")
        if "grid" in item:
            grid = item["grid"]
            if not isinstance(grid, dict) or not grid:
                raise InvalidInputError("'grid' must map option names to lists of values")
            base = {k: v for k, v in item.items() if k != "grid"}
            keys = list(grid)
            values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
            for combo in itertools.product(*values):
                out.append({**base, **dict(zip(keys, combo))})
        else:
            out.append(dict(item))
    if not out:
        raise InvalidInputError("the sweep has no configurations")
    names: dict[str, int] = {}
    for cfg in out:
        name = str(cfg.get("name") or _auto_name(cfg))
        names[name] = names.get(name, 0) + 1
        cfg["name"] = name if names[name] == 1 else f"{name} #{names[name]}"
        cfg.setdefault("conversion_type", "rate")
    return out


def _auto_name(cfg: dict[str, Any]) -> str:
    parts = [str(cfg.get("conversion_type", "rate"))]
    parts += [f"{k}={v}" for k, v in cfg.items() if k not in _RESERVED]
    if cfg.get("search"):
        parts.append("search")
    return " ".join(parts)


# -- bridging once ---------------------------------------------------------------------------------------


def bridge_once(model: Any, example_input: Any = None) -> fx.GraphModule:
    """The clean ANN of ``model`` (with ``.bridge_info``): the only framework crossing a sweep does.
    A `SpikingModel` gives its ANN (`convert2snn.stages.bridge` otherwise)."""
    if isinstance(model, SpikingModel):
        return model.ann
    return bridge(model, example_input)


# -- Mueller's normalisation search ----------------------------------------------------------------------


@dataclass
class SearchResult:
    """Outcome of the percentile search: the chosen percentile(s) and the held-out accuracy on the way."""

    target_T: int
    global_percentile: float
    global_accuracy: float
    layer_percentiles: dict[str, float] = field(default_factory=dict)  # empty unless per_layer
    accuracy: float = 0.0  # held-out accuracy at target_T of the final choice
    history: list[dict[str, Any]] = field(default_factory=list)
    holdout_samples: int = 0
    labels: str = "labels"  # "labels" or "ANN predictions"

    def as_dict(self) -> dict[str, Any]:
        """The search result as a JSON-ready dict."""
        return {
            "target_T": self.target_T,
            "global_percentile": self.global_percentile,
            "global_accuracy": self.global_accuracy,
            "layer_percentiles": self.layer_percentiles,
            "accuracy": self.accuracy,
            "history": self.history,
            "holdout_samples": self.holdout_samples,
            "labels": self.labels,
        }


def search_normalization(
    ann: fx.GraphModule,
    calibration_data: Any,
    calibration_labels: Any = None,
    *,
    conversion_type: str = "rate",
    target_T: int = 16,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    per_layer: bool = False,
    holdout: float = 0.25,
    seed: int = 0,
    progress: bool = True,
    **options: Any,
) -> tuple[SpikingModel, SearchResult]:
    """Mueller et al.'s normalisation hyperparameter search on a held-out calibration split.

    The calibration data (original layout) is split (seeded) into a part that measures the
    activation statistics and a held-out part (``holdout`` fraction) on which the accuracy at
    ``target_T`` is measured — against ``calibration_labels`` when given, else against the ANN's
    own predictions. First one global percentile is chosen; with ``per_layer=True`` each layer's
    percentile is then varied in turn (greedy, in graph order) keeping the others fixed, and a
    change is kept only if it raises the held-out accuracy. Returns the chosen SNN (statistics
    from the fit part) and a `SearchResult`.
    """
    target_T = check_timesteps(target_T)[0]
    cands = sorted({float(p) for p in percentiles}, reverse=True)
    if not cands or any(not 0 < p <= 100 for p in cands):
        raise InvalidInputError(f"percentiles must lie in (0, 100], got {list(percentiles)}")
    if not 0.0 < holdout < 1.0:
        raise InvalidInputError(f"holdout must be a fraction in (0, 1), got {holdout}")
    if "percentile" not in {f.name for f in fields(schemes.scheme_class(conversion_type).Options)}:
        raise InvalidInputError(f"conversion_type={conversion_type!r} has no percentile to search")
    options = {k: v for k, v in options.items() if k not in ("percentile", "progress")}
    candidates = {p: schemes.create(conversion_type, {**options, "percentile": p, "progress": False}) for p in cands}
    info = ann.bridge_info
    candidates[cands[-1]].check(ann, info.layers)
    x_all = as_tensor(calibration_data, "calibration_data")
    n = x_all.shape[0]
    n_hold = int(round(n * holdout))
    if n_hold < 1 or n - n_hold < 1:
        raise InvalidInputError(f"{n} calibration samples are too few to hold out {holdout:.0%} for the search")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit_idx, hold_idx = order[n_hold:], order[:n_hold]
    x_fit, x_hold = x_all[fit_idx], x_all[hold_idx]

    # one pass over the data keeps enough of each layer's top values for every candidate percentile
    statistics = calibrate(ann, x_fit, candidates[cands[-1]]).statistics
    calibrations = {p: calibrate(ann, x_fit, scheme, statistics=statistics) for p, scheme in candidates.items()}
    ann_out = _ann_outputs(ann, x_hold, candidates[cands[-1]].options.batch_size)
    if calibration_labels is not None:
        y_all = np.asarray(calibration_labels)
        y_hold = labels_to_indices(y_all[hold_idx.numpy()], n_hold, ann_out.shape[1])
        label_kind = "labels"
    else:
        y_hold = ann_out.argmax(1)
        label_kind = "ANN predictions"
    history: list[dict[str, Any]] = []

    def build_choice(choice: dict[str, float]) -> SpikingModel:
        mixed = {node: calibrations[choice[node]].scales[node] for node in calibrations[cands[0]].scales}
        percentile = min(choice.values()) if choice else cands[0]
        report = ConversionReport(conversion_type, candidates[percentile].options.as_dict())
        report.calibration_inputs = calibrations[percentile].report.calibration_inputs
        for node, p in choice.items():
            layer = info.layers.get(node, node)
            if layer in calibrations[p].report.scales:
                report.scales[layer] = calibrations[p].report.scales[layer]
        return build(ann, Calibration(mixed, report, statistics, x_fit.shape[0]), candidates[percentile])

    def score(choice: dict[str, float], what: str) -> float:
        model = build_choice(choice)
        acc = float((model.predict(x_hold, timesteps=target_T).argmax(1) == y_hold).mean())
        history.append({"step": what, "percentiles": dict(choice), "accuracy": acc})
        return acc

    layer_nodes = list(calibrations[cands[0]].scales)
    steps = len(cands) + (len(layer_nodes) * (len(cands) - 1) if per_layer else 0)
    bar = progress_bar(range(steps), desc="percentile search", enabled=progress, total=steps)
    ticks = iter(bar)
    best_p, best_acc = cands[0], -1.0
    for p in cands:
        next(ticks, None)
        acc = score({node: p for node in layer_nodes}, f"global {p}")
        if acc > best_acc:
            best_p, best_acc = p, acc
    choice = {node: best_p for node in layer_nodes}
    current = best_acc
    if per_layer:
        for node in layer_nodes:
            for p in cands:
                if p == choice[node]:
                    continue
                next(ticks, None)
                trial = {**choice, node: p}
                acc = score(trial, f"layer {info.layers.get(node, node)} {p}")
                if acc > current:
                    choice, current = trial, acc
    for _ in ticks:
        pass
    model = build_choice(choice)
    layer_percentiles = {info.layers.get(k, k): v for k, v in choice.items()} if per_layer else {}
    note = f"percentile chosen by search at T={target_T} on {n_hold} held-out calibration samples ({label_kind}): " + (
        f"per layer {layer_percentiles}" if per_layer else f"{best_p}"
    )
    model.report.notes.append(note)
    return model, SearchResult(
        target_T=target_T,
        global_percentile=best_p,
        global_accuracy=best_acc,
        layer_percentiles=layer_percentiles,
        accuracy=current,
        history=history,
        holdout_samples=n_hold,
        labels=label_kind,
    )


@torch.no_grad()
def _ann_outputs(ann: fx.GraphModule, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """The ANN's outputs on ``x`` (the original model's layout)."""
    xt = ann.bridge_info.to_model_layout(x)
    model = ann.eval()
    return torch.cat([model(xt[i : i + batch_size]).float() for i in range(0, xt.shape[0], batch_size)]).numpy()


# -- the sweep -------------------------------------------------------------------------------------------


@dataclass
class SweepRow:
    """One configuration of a sweep: its options and evaluation (or the error), the search result if any, and
    the seconds spent converting and evaluating."""

    name: str
    conversion_type: str
    options: dict[str, Any]
    result: EvaluationResult | None = None
    search: SearchResult | None = None
    convert_s: float = 0.0
    evaluate_s: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict (result and search as dicts)."""
        return {
            "name": self.name,
            "conversion_type": self.conversion_type,
            "options": self.options,
            "result": self.result.as_dict() if self.result else None,
            "search": self.search.as_dict() if self.search else None,
            "convert_s": self.convert_s,
            "evaluate_s": self.evaluate_s,
            "error": self.error,
        }


def _fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def _fmt_num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g}{prefix}"
    return f"{v:.3g}"


@dataclass
class SweepResult:
    """One row per configuration; `to_csv`, `to_markdown`, `to_json`, `save` (all of them and the plots)."""

    rows: list[SweepRow]
    timesteps: list[int]
    energy: dict[str, Any]
    samples: int = 0
    source: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def ok(self) -> list[SweepRow]:
        """The rows whose configuration converted and was evaluated (no error)."""
        return [r for r in self.rows if r.result is not None]

    def table(self) -> list[dict[str, Any]]:
        """Flat rows (one per configuration) with accuracy per T and the costs at the largest T."""
        out = []
        for r in self.rows:
            row: dict[str, Any] = {
                "name": r.name,
                "conversion_type": r.conversion_type,
                "options": _options_text(r.options, r.search),
            }
            res = r.result
            row["ann_accuracy"] = res.ann_accuracy if res else None
            for i, t in enumerate(self.timesteps):
                row[f"acc_T{t}"] = res.accuracy[i] if res else None
            t_max = self.timesteps[-1]
            row["T_1pp"] = res.time_to_accuracy.get("1pp") if res else None
            row["T_0.1pp"] = res.time_to_accuracy.get("0.1pp") if res else None
            row[f"spikes_per_neuron_T{t_max}"] = res.spikes_per_neuron[-1] if res else None
            row[f"sops_T{t_max}"] = res.sops[-1] if res and res.sops else None
            row[f"energy_ratio_T{t_max}"] = res.energy_ratio()[-1] if res and res.snn_energy_pj else None
            row["convert_s"] = round(r.convert_s, 2)
            row["evaluate_s"] = round(r.evaluate_s, 2)
            row["error"] = r.error or ""
            out.append(row)
        return out

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The flat `table` as CSV (floats to 6 significant digits), also written to ``path`` when given."""
        rows = self.table()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in row.items()}
            )
        if path is not None:
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()

    def to_markdown(self, path: str | os.PathLike | None = None) -> str:
        """A Markdown table: accuracy per T, time-to-accuracy and costs at the largest T, an energy-model footnote;
        also written to ``path`` when given."""
        t_max = self.timesteps[-1]
        head = (
            ["config", "ANN %"]
            + [f"T={t}" for t in self.timesteps]
            + ["T(1pp)", "T(0.1pp)", f"spikes/neuron @{t_max}", f"SOPs @{t_max}", f"E_SNN/E_ANN @{t_max}"]
        )
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for r, row in zip(self.rows, self.table()):
            label = r.name if not r.search else f"{r.name} ({_search_text(r.search)})"
            if r.error:
                lines.append(f"| {label} | " + " | ".join(["—"] * (len(head) - 2)) + f" | error: {r.error} |")
                continue
            cells = [label, _fmt_pct(row["ann_accuracy"])] + [_fmt_pct(row[f"acc_T{t}"]) for t in self.timesteps]
            cells += [
                str(row["T_1pp"] or "—"),
                str(row["T_0.1pp"] or "—"),
                f"{row[f'spikes_per_neuron_T{t_max}']:.2f}",
                _fmt_num(row[f"sops_T{t_max}"]),
                "—" if row[f"energy_ratio_T{t_max}"] is None else f"{row[f'energy_ratio_T{t_max}']:.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        e = self.energy
        lines.append("")
        lines.append(
            f"Accuracy in % on {self.samples} samples; SOPs = synaptic operations per inference; energy model "
            f"{e['name']} (E_MAC {e['e_mac_pj']} pJ, E_AC {e['e_ac_pj']} pJ)."
        )
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def as_dict(self) -> dict[str, Any]:
        """The sweep (timesteps, energy model, samples, source, every row) as a JSON-ready dict."""
        return {
            "timesteps": self.timesteps,
            "energy": self.energy,
            "samples": self.samples,
            "source": self.source,
            "rows": [r.as_dict() for r in self.rows],
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The sweep as indented JSON, also written to ``path`` when given."""
        text = json.dumps(self.as_dict(), indent=2, default=_json_default)
        if path is not None:
            Path(path).write_text(text)
        return text

    def save(self, output_dir: str | os.PathLike, plots: bool = True) -> dict[str, str]:
        """Write results.csv, results.md, results.json and (``plots``) accuracy_vs_T.png and pareto.png."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"csv": out / "results.csv", "markdown": out / "results.md", "json": out / "results.json"}
        self.to_csv(files["csv"])
        self.to_markdown(files["markdown"])
        self.to_json(files["json"])
        if plots and self.ok():
            from . import plots as plotting  # noqa: PLC0415  (matplotlib only when plotting)

            results = {r.name: r.result for r in self.ok()}
            files["accuracy_plot"] = plotting.plot_accuracy_vs_t(
                results, out / "accuracy_vs_T.png", title="SNN accuracy vs timesteps"
            )
            files["pareto_plot"] = plotting.plot_pareto(results, out / "pareto.png")
        self.files = {k: str(v) for k, v in files.items()}
        return self.files

    def __str__(self) -> str:
        return self.to_markdown()


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _search_text(s: SearchResult) -> str:
    if s.layer_percentiles:
        return "per-layer p: " + ", ".join(f"{v:g}" for v in s.layer_percentiles.values()) + f" @T={s.target_T}"
    return f"p={s.global_percentile:g} @T={s.target_T}"


def _options_text(options: dict[str, Any], search: SearchResult | None) -> str:
    parts = [f"{k}={v}" for k, v in options.items()]
    if search is not None:
        parts.append(_search_text(search))
    return " ".join(parts)


def sweep(
    model: Any,
    configs: Any,
    data: Any,
    timesteps: Iterable[int] = DEFAULT_TIMESTEPS,
    *,
    example_input: Any = None,
    energy: Any = "45nm-fp32",
    output_dir: str | os.PathLike | None = None,
    plots: bool = True,
    progress: bool = True,
    stop_on_error: bool = False,
) -> SweepResult:
    """Convert ``model`` once per configuration and evaluate every SNN on the same data.

    ``model``: anything `convert` takes (bridged once), or a clean graph from `bridge_once`.
    ``configs``: see `expand_configs`; a configuration with a ``search`` dict runs
    `search_normalization` (keys: target_T, percentiles, per_layer, holdout, seed).
    ``data``: (x_calib, x_eval, y_eval[, y_calib]) in the model's own layout, or a dict / `SweepData`.
    A configuration that fails (e.g. an invalid option) is recorded with its error unless
    ``stop_on_error``. ``output_dir``: also `save` everything there.
    """
    ts = check_timesteps(timesteps)
    model_energy = energy_model(energy)
    cfgs = expand_configs(configs)
    d = SweepData.coerce(data)
    x_cal = as_tensor(d.x_calib, "calibration data")
    x_eval = as_tensor(d.x_eval, "evaluation data")
    if example_input is None and isinstance(model, torch.nn.Module):
        example_input = x_cal[:1]  # a torch module's input shape (an already bridged ANN ignores it)
    ann = bridge_once(model, example_input)
    check_input_shape(x_cal[:1], ann.bridge_info, "calibration data")
    check_input_shape(x_eval[:1], ann.bridge_info, "evaluation data")
    for cfg in cfgs:  # fail fast on bad option names/values, before any slow work
        try:
            options = {k: v for k, v in cfg.items() if k not in _RESERVED}
            schemes.create(cfg["conversion_type"], options)
            if cfg.get("search") is not None and not isinstance(cfg["search"], dict):
                raise InvalidInputError(
                    f"'search' must be a dict (target_T, percentiles, per_layer, holdout), got {cfg['search']!r}"
                )
        except ConversionError as exc:
            if stop_on_error:
                raise
            cfg["_error"] = str(exc)
    rows = []
    for cfg in progress_bar(cfgs, desc="sweep", enabled=progress, total=len(cfgs), leave=True):
        options = {k: v for k, v in cfg.items() if k not in _RESERVED and not k.startswith("_")}
        row = SweepRow(cfg["name"], cfg["conversion_type"], options)
        rows.append(row)
        if "_error" in cfg:
            row.error = cfg["_error"]
            continue
        try:
            t0 = time.perf_counter()
            if cfg.get("search") is not None:
                search = dict(cfg["search"])
                unknown = set(search) - {"target_T", "percentiles", "per_layer", "holdout", "seed"}
                if unknown:
                    raise InvalidInputError(
                        f"unknown search keys {sorted(unknown)}; known: target_T, percentiles, per_layer, holdout, seed"
                    )
                snn, row.search = search_normalization(
                    ann,
                    x_cal,
                    d.y_calib,
                    conversion_type=cfg["conversion_type"],
                    target_T=int(search.get("target_T", ts[len(ts) // 2])),
                    percentiles=search.get("percentiles", DEFAULT_PERCENTILES),
                    per_layer=bool(search.get("per_layer", False)),
                    holdout=float(search.get("holdout", 0.25)),
                    seed=int(search.get("seed", 0)),
                    progress=progress,
                    **{k: v for k, v in options.items() if k != "progress"},
                )
            else:
                snn = convert(ann, cfg["conversion_type"], x_cal, **{**options, "progress": False})
            row.convert_s = time.perf_counter() - t0
            snn.options.progress = progress
            t0 = time.perf_counter()
            row.result = snn.evaluate(x_eval, d.y_eval, ts, energy=model_energy)
            row.evaluate_s = time.perf_counter() - t0
        except ConversionError as exc:
            if stop_on_error:
                raise
            row.error = " ".join(str(exc).split())
    result = SweepResult(
        rows=rows,
        timesteps=ts,
        energy=model_energy.as_dict(),
        samples=int(x_eval.shape[0]),
        source=str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
    )
    if output_dir is not None:
        result.save(output_dir, plots=plots)
    return result


__all__ = [
    "sweep",
    "expand_configs",
    "search_normalization",
    "bridge_once",
    "SweepResult",
    "SweepRow",
    "SweepData",
    "SearchResult",
    "DEFAULT_PERCENTILES",
]
