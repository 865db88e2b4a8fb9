"""Training reports (four PNG figures and report.json describing a trained model), and the
one-figure report of a hyperparameter sweep (`draw_sweep_report`, from GET /v1/sweeps/<id>).

Written by the RQ job into each published registry version (the web page shows them next to the
model) and by `python -m trainer_service train --report DIR`. report.json holds the same
``metrics`` object as the registry manifest (equal value for value), the history, and the
misclassified examples shown in the grid.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend
state: safe in a worker, a thread or a test), at a fixed size and DPI and saved without
``bbox_inches="tight"``, so each PNG always has the pixel size in ``FIGURE_PIXELS``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.fsutil import write_atomic
from shared.manifest import Manifest, ManifestMetrics, json_value

#: Dots per inch of every figure.
DPI = 100
#: Figure sizes in inches; with DPI these give the exact pixel sizes below.
FIGURE_INCHES: dict[str, tuple[float, float]] = {
    "learning_curves.png": (10.0, 4.0),
    "confusion_matrix.png": (7.0, 6.0),
    "per_class.png": (9.0, 4.0),
    "misclassified.png": (8.0, 6.0),
}
#: file name → (width, height) in pixels.
FIGURE_PIXELS: dict[str, tuple[int, int]] = {
    name: (round(w * DPI), round(h * DPI)) for name, (w, h) in FIGURE_INCHES.items()
}
#: The sweep report (`draw_sweep_report`): one figure, served by GET /v1/sweeps/<id>/report.png.
SWEEP_REPORT = "sweep_report.png"
SWEEP_REPORT_INCHES = (12.0, 10.0)
SWEEP_REPORT_PIXELS = (round(SWEEP_REPORT_INCHES[0] * DPI), round(SWEEP_REPORT_INCHES[1] * DPI))
REPORT_JSON = "report.json"
#: Every file a report consists of, in display order.
REPORT_FILES: tuple[str, ...] = (*FIGURE_INCHES, REPORT_JSON)
REPORT_FORMAT = "digitflow-report"
REPORT_FORMAT_VERSION = 1

#: The misclassified grid: rows x columns of test digits.
GRID_ROWS, GRID_COLS = 4, 6

_TRAIN_COLOR = "#1f77b4"
_VAL_COLOR = "#ff7f0e"


def worst_misclassified(
    y_true: np.ndarray, proba: np.ndarray, limit: int = GRID_ROWS * GRID_COLS
) -> list[dict[str, Any]]:
    """The `limit` wrong predictions with the highest confidence, most confident first (ties
    broken by test-set index, so the choice is deterministic)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba)
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = proba[wrong, pred[wrong]]
    order = np.lexsort((wrong, -confidence))[:limit]
    return [
        {
            "index": int(wrong[i]),
            "true": int(y_true[wrong[i]]),
            "predicted": int(pred[wrong[i]]),
            "confidence": round(float(confidence[i]), 6),
            "true_class_probability": round(float(proba[wrong[i], y_true[wrong[i]]]), 6),
        }
        for i in order
    ]


def _figure(name: str, **margins: float):
    """A new Figure of the fixed size for `name`, attached to an Agg canvas (no pyplot). Margins
    are fixed (`subplots_adjust`): a layout engine measures every text twice and was most of the
    drawing time."""
    # matplotlib: heavy, only when a figure is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    inches = SWEEP_REPORT_INCHES if name == SWEEP_REPORT else FIGURE_INCHES[name]
    fig = Figure(figsize=inches, dpi=DPI)
    if margins:
        fig.subplots_adjust(**margins)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    # No bbox_inches="tight": that would make the pixel size depend on the text drawn.
    # No "Software" metadata: the same figure gives the same bytes whatever matplotlib version.
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the records that have a `key` value (history or a trial's curve)."""
    points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    return [int(p[0]) for p in points], [float(p[1]) for p in points]


def draw_learning_curves(
    history: list[dict[str, Any]], path: Path, best_epoch: int | None = None, title: str = ""
) -> None:
    """Loss (left) and accuracy (right) per epoch, training vs validation."""
    fig = _figure("learning_curves.png", left=0.07, right=0.98, bottom=0.13, top=0.83, wspace=0.22)
    axes = fig.subplots(1, 2)
    many = len(history) > 40
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, color in (("train", _TRAIN_COLOR), ("val", _VAL_COLOR)):
            xs, ys = _series(history, f"{prefix}_{metric}")
            if xs:
                ax.plot(xs, ys, color=color, marker=None if many else "o", ms=4, label=prefix)
        if best_epoch:
            ax.axvline(best_epoch, color="#888888", ls="--", lw=1, label=f"best ({best_epoch})")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.grid(True, alpha=0.3)
        if history:
            ax.set_xlim(0.5, max(h["epoch"] for h in history) + 0.5)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
    if title:
        fig.suptitle(title)
    _save(fig, path)


def draw_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Counts, coloured by the share of each true class (so the off-diagonal mistakes show)."""
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    fig = _figure("confusion_matrix.png", left=0.17, right=0.84, bottom=0.1, top=0.93)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, cax=fig.add_axes((0.86, 0.1, 0.025, 0.83)), label="share of the true class")
    fontsize = 8 if cm.max() >= 1000 else 9
    for i, j in zip(*np.nonzero((cm != 0) | np.eye(n, dtype=bool)), strict=True):  # no zeros
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_yticks(range(n), _tick_labels(class_names, n))
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(f"confusion matrix: {int(np.trace(cm))}/{int(cm.sum())} correct")
    _save(fig, path)


def draw_per_class(per_class: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Precision and recall per class as paired bars (the y axis zooms in on the range used)."""
    fig = _figure("per_class.png", left=0.08, right=0.98, bottom=0.15, top=0.9)
    ax = fig.subplots()
    precision = np.array([float(r["precision"]) for r in per_class])
    recall = np.array([float(r["recall"]) for r in per_class])
    x, width = np.arange(len(per_class)), 0.38
    ax.bar(x - width / 2, precision, width, label="precision", color=_TRAIN_COLOR)
    ax.bar(x + width / 2, recall, width, label="recall", color=_VAL_COLOR)
    low = float(min(precision.min(initial=1.0), recall.min(initial=1.0)))
    bottom = max(0.0, math.floor((low - 0.02) * 20) / 20)  # a multiple of 0.05 below the lowest
    ax.set_ylim(bottom, 1.0)
    names = [str(r.get("name", r["class"])) for r in per_class]
    ax.set_xticks(x, [label.replace(" ", "\n", 1) for label in _tick_labels(names, len(x))])
    ax.set_ylabel("score")
    ax.set_title("per-class precision and recall on the test set", loc="left")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=9, ncols=2, frameon=False)
    _save(fig, path)


def draw_misclassified(
    x_test: np.ndarray | None,
    worst: list[dict[str, Any]],
    class_names: Sequence[str],
    path: Path,
) -> None:
    """A grid of the most confidently wrong test digits: "true → predicted (confidence)", tiled
    into one mosaic drawn by a single imshow (24 small Axes take several times longer)."""
    fig = _figure("misclassified.png")
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.91))
    ax.set_axis_off()
    cell_w, cell_h, label_h, side = 36, 44, 12, 28
    mosaic = np.zeros((GRID_ROWS * cell_h, GRID_COLS * cell_w), dtype=np.float32)
    short = all(len(str(c)) <= 2 for c in class_names)
    shown = worst[: GRID_ROWS * GRID_COLS] if x_test is not None else []
    for k, item in enumerate(shown):
        row, col = divmod(k, GRID_COLS)
        top, left = row * cell_h + label_h, col * cell_w + (cell_w - side) // 2
        digit = np.asarray(x_test[item["index"]], dtype=np.float32).reshape(side, side)
        mosaic[top : top + side, left : left + side] = digit
        label = f"{item['true']}→{item['predicted']} ({item['confidence']:.0%})"
        ax.text(
            left + side / 2, top - 2, label, ha="center", va="bottom", fontsize=9, color="#b00020"
        )
    ax.imshow(mosaic, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    if not short:  # class names do not fit above a 28-pixel picture: a key at the bottom
        key = "   ".join(f"{i} {name}" for i, name in enumerate(class_names))
        fig.text(0.5, 0.012, key, ha="center", va="bottom", fontsize=7.5, color="#444444")
    if not shown:
        ax.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "no misclassified test images",
                ha="center", va="center")  # fmt: skip
    fig.suptitle("most confident mistakes on the test set (true → predicted)", fontsize=11)
    _save(fig, path)


def _tick_labels(names: Sequence[str], n: int) -> list[str]:
    """Digits as they are; other class names as "index name" (shortened)."""
    shown = [str(names[i]) if i < len(names) else str(i) for i in range(n)]
    return [name if name == str(i) else f"{i} {name[:11]}" for i, name in enumerate(shown)]


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    history: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    class_names: Sequence[str] | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    test_proba: np.ndarray | None = None,
    best_epoch: int | None = None,
    title: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the four PNGs and report.json into `out_dir` (created if missing); return {file
    name: path}, ready for ``Registry.publish(extra_files=)``. `metrics` is `evaluate`'s result or
    the manifest's ``metrics`` (stored in the manifest's shape). The misclassified grid needs
    `y_test` and `test_proba` (and `x_test` for the pictures); without them it says so."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = ManifestMetrics.of(metrics).to_json()
    records = json_value([dict(r) for r in history])
    cm = np.asarray(numbers.get("confusion_matrix") or np.zeros((10, 10)), dtype=np.int64)
    names = [str(c) for c in (class_names or range(cm.shape[0]))]
    worst: list[dict[str, Any]] = []
    n_wrong = None
    if y_test is not None and test_proba is not None:
        worst = worst_misclassified(y_test, test_proba)
        n_wrong = int(np.count_nonzero(np.asarray(test_proba).argmax(axis=1) != y_test))

    paths = {name: out / name for name in REPORT_FILES}
    draw_learning_curves(records, paths["learning_curves.png"], best_epoch, title)
    draw_confusion_matrix(cm, names, paths["confusion_matrix.png"])
    draw_per_class(numbers.get("per_class") or [], paths["per_class.png"])
    draw_misclassified(x_test, worst, names, paths["misclassified.png"])

    document = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "title": title,
        "metrics": numbers,
        "class_names": names,
        "history": records,
        "best_epoch": best_epoch,
        "misclassified": {"count": n_wrong, "worst": worst},
        "figures": {name: {"width": w, "height": h} for name, (w, h) in FIGURE_PIXELS.items()},
        **json_value(dict(extra or {})),
    }
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    write_atomic(paths[REPORT_JSON], text.encode(), tmp_prefix=f".{REPORT_JSON}.tmp-")
    return paths


def write_outcome_report(
    out_dir: str | os.PathLike[str], outcome: Any, manifest: Manifest
) -> dict[str, Path]:
    """`write_report` for a `shared.pipeline.TrainingOutcome` (the CLI and the RQ job), with the
    metrics and history of its `manifest`, so report.json's numbers equal the manifest's."""
    accuracy = manifest.metrics.test_accuracy or 0.0
    return write_report(
        out_dir,
        history=manifest.history,
        metrics=manifest.metrics.to_json(),
        class_names=manifest.class_names or None,
        x_test=getattr(outcome, "x_test", None),
        y_test=getattr(outcome, "y_test", None),
        test_proba=getattr(outcome, "test_proba", None),
        best_epoch=manifest.best_epoch,
        title=f"{manifest.model} ({manifest.dataset}): test accuracy {accuracy:.2%}",
        extra={"dataset": manifest.dataset},
    )


#: Trial status → (colour, line style) in the sweep report; the best trial is drawn over them.
_TRIAL_STYLE = {
    "finished": ("#7f9fc8", "-"),
    "pruned": ("#e08a3c", "--"),
    "failed": ("#9a9a9a", ":"),
    "running": ("#5aa469", "-"),
    "queued": ("#5aa469", "-"),
}
_BEST_COLOR = "#b00020"
#: Parameters shown as scatters (more are listed in the summary only).
_SWEEP_MAX_PARAMS = 5
_OBJECTIVE_LABELS = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}


def draw_sweep_report(sweep: Mapping[str, Any], out: Any) -> None:
    """The sweep report of `sweep` (the JSON of GET /v1/sweeps/<id>) as a PNG into `out` (a
    path or a binary file object), always ``SWEEP_REPORT_PIXELS`` in size."""
    # matplotlib: heavy, only when a figure is drawn
    from matplotlib.lines import Line2D

    objective = str(sweep["objective"])
    label = _OBJECTIVE_LABELS.get(objective, objective)
    trials = list(sweep.get("trials") or [])
    best = sweep.get("best") or {}
    space = dict((sweep.get("request") or {}).get("space") or {})
    fig = _figure(SWEEP_REPORT, left=0.06, right=0.98, bottom=0.05, top=0.9, hspace=0.42,
                  wspace=0.28)  # fmt: skip
    grid = fig.add_gridspec(3, 3, height_ratios=(1.35, 1, 1))
    curves = fig.add_subplot(grid[0, 0:2])
    per_trial = fig.add_subplot(grid[0, 2])

    counts = {k: sum(1 for t in trials if t["status"] == k) for k in _TRIAL_STYLE}
    fig.suptitle(
        f"sweep {str(sweep['sweep_id'])[:8]} · {sweep['model']} · {sweep['status']} · "
        f"{len(trials)} trials ({counts['finished']} finished, {counts['pruned']} pruned, "
        f"{counts['failed']} failed)",
        fontsize=13,
    )

    # Validation curves: every trial, pruned ones dashed with an x where they stopped.
    ordered = sorted(trials, key=lambda t: t["number"] == best.get("number"))  # best on top
    for t in ordered:
        xs, ys = _series(t["curve"], objective)
        if not xs:
            continue
        is_best = t["number"] == best.get("number")
        color, style = _TRIAL_STYLE.get(t["status"], ("#7f9fc8", "-"))
        curves.plot(xs, ys, color=_BEST_COLOR if is_best else color, ls="-" if is_best else style,
                    lw=2.6 if is_best else 1.2, alpha=1.0 if is_best else 0.85,
                    marker="o" if len(xs) == 1 else None, ms=4)  # fmt: skip
        if t["pruned"]:
            curves.plot(xs[-1], ys[-1], marker="x", color=color, ms=8, mew=2)
    curves.set(xlabel="epoch", ylabel=label)
    curves.set_title(f"{label} per epoch, every trial", loc="left", fontsize=11)
    curves.grid(True, alpha=0.3)
    curves.xaxis.get_major_locator().set_params(integer=True)
    legend = [
        Line2D([], [], color=_BEST_COLOR, lw=2.6, label=f"best (trial {best['number']})")
        if best else None,
        Line2D([], [], color=_TRIAL_STYLE["finished"][0], label="finished"),
        Line2D([], [], color=_TRIAL_STYLE["pruned"][0], ls="--", marker="x", label="pruned"),
        Line2D([], [], color=_TRIAL_STYLE["failed"][0], ls=":", label="failed"),
    ]  # fmt: skip
    curves.legend(handles=[h for h in legend if h], loc="best", fontsize=9)

    # The objective per trial, and the best so far.
    per_trial.set_title(f"{label} per trial", loc="left", fontsize=11)
    _objective_points(per_trial, trials, objective, best, lambda t: t["number"])
    scored = sorted((t["number"], t["value"]) for t in trials if t["value"] is not None)
    if scored:
        pick = max if objective != "val_loss" else min
        running = [pick(v for _, v in scored[: i + 1]) for i in range(len(scored))]
        per_trial.step([n for n, _ in scored], running, where="post", color="#444444", lw=1,
                       alpha=0.7, label="best so far")  # fmt: skip
        per_trial.legend(loc="best", fontsize=8)
    per_trial.set_xlabel("trial")
    per_trial.xaxis.get_major_locator().set_params(integer=True)
    per_trial.grid(True, alpha=0.3)

    # One scatter per parameter, then the best trial's summary.
    cells = [fig.add_subplot(grid[1 + i // 3, i % 3]) for i in range(6)]
    names = list(space)[:_SWEEP_MAX_PARAMS]
    for ax, name in zip(cells, names, strict=False):
        _param_effect(ax, name, space[name], trials, objective, best)
    _sweep_summary(cells[len(names)], sweep, best, objective, list(space)[_SWEEP_MAX_PARAMS:])
    for ax in cells[len(names) + 1 :]:
        ax.set_axis_off()
    _save(fig, out)


def _objective_points(ax, trials, objective: str, best: Mapping[str, Any], x_of) -> None:
    """Finished trials as dots, pruned ones as an x at their last reported value, the best as a
    star (failed trials have no objective)."""
    for t in trials:
        if t["value"] is not None:
            y, marker, color = t["value"], "o", _TRIAL_STYLE["finished"][0]
        elif t["pruned"] and t["curve"] and t["curve"][-1].get(objective) is not None:
            y, marker, color = t["curve"][-1][objective], "x", _TRIAL_STYLE["pruned"][0]
        else:
            continue
        if t["number"] == best.get("number"):
            marker, color = "*", _BEST_COLOR
        ax.plot(x_of(t), float(y), ls="none", marker=marker, color=color,
                ms=13 if marker == "*" else 7, mew=2 if marker == "x" else 1, zorder=3)  # fmt: skip


def _param_effect(ax, name: str, dim: Any, trials, objective: str, best) -> None:
    """`name`'s value (x) against the objective (y): a log axis for log_uniform, a strip with a
    little jitter per value for lists and choices."""
    kind = next(iter(dim)) if isinstance(dim, dict) else "list"
    if kind in ("choice", "list"):
        choices = list(dim["choice"] if kind == "choice" else dim)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in choices):
            choices.sort()
        where = {json.dumps(v, sort_keys=True): i for i, v in enumerate(choices)}

        def x_of(t: Mapping[str, Any]) -> float:
            i = where.get(json.dumps(t["params"].get(name), sort_keys=True), 0)
            return i + ((t["number"] * 0.618) % 1 - 0.5) * 0.25  # deterministic jitter

        ax.set_xticks(range(len(choices)), [_short(v) for v in choices], fontsize=8)
        ax.set_xlim(-0.6, len(choices) - 0.4)
    else:

        def x_of(t: Mapping[str, Any]) -> float:
            return float(t["params"].get(name))

        low, high = (float(v) for v in dim[kind])  # the searched range, padded by 5 %
        if kind == "log_uniform":
            # matplotlib: heavy, only when a figure is drawn
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            pad = (high / low) ** 0.05
            ax.set_xlim(low / pad, high * pad)
        else:
            pad = (high - low) * 0.05
            ax.set_xlim(low - pad, high + pad)
            if kind == "int":
                ax.xaxis.get_major_locator().set_params(integer=True)
    _objective_points(ax, [t for t in trials if name in t["params"]], objective, best, x_of)
    ax.set_title(name, loc="left", fontsize=10)
    ax.set_ylabel(_OBJECTIVE_LABELS.get(objective, objective), fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)


def _short(value: Any) -> str:
    return ("-".join(str(v) for v in value) or "[]") if isinstance(value, list) else str(value)


def _sweep_summary(ax, sweep, best, objective: str, hidden: list[str]) -> None:
    """The best trial: its objective, version, parameters, and the promotion verdict."""
    ax.set_axis_off()
    ax.set_title("best trial", loc="left", fontsize=10)
    if not best:
        ax.text(0.0, 0.9, "no finished trial yet", transform=ax.transAxes, va="top")
        return
    rows = [
        ["trial", str(best["number"])],
        [objective, f"{best['value']:.4f}"],
        ["version", f"{sweep['model']} v{best['model_version']}"],
    ]
    rows += [[k, _short(v) if not isinstance(v, float) else f"{v:.4g}"]
             for k, v in best["params"].items()]  # fmt: skip
    if promotion := sweep.get("promotion"):
        verdict = "promoted" if promotion["promoted"] else "kept"
        rows.append([promotion["alias"], f"{verdict} (v{promotion['version']})"])
    if hidden:
        rows.append(["not plotted", ", ".join(hidden)])
    table = ax.table(cellText=rows, colWidths=(0.42, 0.58), loc="upper left", cellLoc="left",
                     edges="horizontal")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.35)
