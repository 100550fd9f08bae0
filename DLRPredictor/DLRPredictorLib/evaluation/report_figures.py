"""The report's PNG figures: ROC curves, calibration curves and decision curves.

matplotlib is imported only when a figure is drawn, so that importing the report costs nothing
when no report is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

FIGURES = {"roc": "roc.png", "calibration": "calibration.png", "decision_curve": "decision_curve.png"}


def _new_figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    # Object-oriented Agg canvas: renders PNGs without touching pyplot's global backend (which
    # matters inside the Slicer application).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save_figure(fig: Any, ax: Any, path: Path, *, ylim: tuple[float, float], legend_loc: str) -> None:
    # Every figure's x axis is a probability (or 1 - specificity) in [0, 1].
    ax.set_xlim(0, 1)
    ax.set_ylim(*ylim)
    ax.legend(loc=legend_loc, fontsize="small")
    fig.savefig(path, format="png")


def plot_roc(result: Mapping[str, Any], path: Path) -> None:
    """ROC curves of every score, with AUC and CI in the legend."""
    fig, ax = _new_figure("ROC curves", "1 - specificity", "Sensitivity")
    for name, r in result["scores"].items():
        a = r["auc"]
        label = f"{name} (AUC {a['auc']:.3f} [{a['ci_low']:.3f}-{a['ci_high']:.3f}])"
        ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], drawstyle="default", label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    _save_figure(fig, ax, path, ylim=(0, 1.01), legend_loc="lower right")


def plot_calibration(result: Mapping[str, Any], path: Path) -> None:
    """Calibration curves of the probability scores, with slope and Brier score in the legend."""
    fig, ax = _new_figure("Calibration", "Mean predicted probability", "Observed fraction positive")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="ideal")
    for name, r in result["scores"].items():
        if r["calibration"] is None:
            continue
        bins = r["calibration"]["bins"]
        label = f"{name} (slope {r['calibration']['slope']:.2f}, Brier {r['calibration']['brier']:.3f})"
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=label)
    _save_figure(fig, ax, path, ylim=(0, 1), legend_loc="upper left")


def plot_decision(result: Mapping[str, Any], path: Path) -> None:
    """Decision curves (net benefit) of the probability scores, with treat all, treat none and, with a
    reader column, the reader's policy (biopsy every BI-RADS >= 4)."""
    fig, ax = _new_figure("Decision curves", "Threshold probability", "Net benefit")
    treat_all = None
    for name, r in result["scores"].items():
        if r["decision_curve"] is None:
            continue
        dc = pd.DataFrame(r["decision_curve"])
        ax.plot(dc["threshold"], dc["net_benefit"], label=name)
        treat_all = dc
    if treat_all is not None:
        ax.plot(treat_all["threshold"], treat_all["treat_all"], color="grey", label="treat all")
        ax.plot(treat_all["threshold"], treat_all["treat_none"], color="black", label="treat none")
    comp = result.get("reader_comparison")
    if comp and not comp["n_missing"]:  # the reader's policy, on the same cases as the curves
        pol = comp["policy"]
        label = comp["policy_name"]
        ax.plot(pol["threshold"], pol["net_benefit"], color="purple", linestyle=":", label=label)
    _save_figure(fig, ax, path, ylim=(-0.05, result["prevalence"] + 0.05), legend_loc="upper right")


def write_figures(result: Mapping[str, Any], folder: Path) -> list[str]:
    """Draw the figures of :func:`..report.evaluate_scores` output into ``folder``.

    Calibration and decision curves are drawn only when at least one score is a probability.

    Returns:
        The file names written, in the order index.html shows them.
    """
    figures = [FIGURES["roc"]]
    plot_roc(result, folder / FIGURES["roc"])
    if any(r["is_probability"] for r in result["scores"].values()):
        plot_calibration(result, folder / FIGURES["calibration"])
        plot_decision(result, folder / FIGURES["decision_curve"])
        figures += [FIGURES["calibration"], FIGURES["decision_curve"]]
    return figures
