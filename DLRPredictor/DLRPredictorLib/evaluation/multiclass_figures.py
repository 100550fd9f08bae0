"""The K-class report's PNG figures: per-class ROC curves, the confusion-matrix heatmap and the
per-class calibration curves (drawn like the binary report's, by :mod:`.report_figures`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .report_figures import _new_figure, _save_figure

FIGURES = {
    "roc": "roc_per_class.png",
    "confusion": "confusion_matrix.png",
    "calibration": "calibration_per_class.png",
}


def plot_roc(result: Mapping[str, Any], path: Path) -> None:
    """One-vs-rest ROC curve of every class, with its AUC and DeLong CI in the legend."""
    fig, ax = _new_figure("ROC curves, each class vs rest", "1 - specificity", "Sensitivity")
    for row in result["per_class"]:
        curve = result["roc"].get(row["class"])
        if curve is None:
            continue
        label = f"{row['class']} (AUC {row['auc']:.3f} [{row['auc_ci_low']:.3f}-{row['auc_ci_high']:.3f}])"
        ax.plot(curve["fpr"], curve["tpr"], label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    _save_figure(fig, ax, path, ylim=(0, 1.01), legend_loc="lower right")


def plot_confusion(result: Mapping[str, Any], path: Path) -> None:
    """Heatmap of the confusion matrix, each row as fractions of its true class, counts written in."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = result["classes"]
    counts = np.asarray(result["confusion"], dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = Figure(figsize=(6.0, 5.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(frac, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title("Confusion matrix")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    fig.savefig(path, format="png")


def plot_calibration(result: Mapping[str, Any], path: Path) -> None:
    """One-vs-rest calibration curve of every class, with slope and Brier score in the legend."""
    fig, ax = _new_figure(
        "Calibration, each class vs rest", "Mean predicted probability", "Observed fraction"
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="ideal")
    for row in result["per_class"]:
        cal = row["calibration"]
        if cal is None:
            continue
        label = f"{row['class']} (slope {cal['slope']:.2f}, Brier {cal['brier']:.3f})"
        bins = cal["bins"]
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=label)
    _save_figure(fig, ax, path, ylim=(0, 1), legend_loc="upper left")


def write_figures(result: Mapping[str, Any], folder: Path) -> list[str]:
    """Draw the three figures of :func:`.multiclass.evaluate_multiclass` output into ``folder``."""
    plot_roc(result, folder / FIGURES["roc"])
    plot_confusion(result, folder / FIGURES["confusion"])
    plot_calibration(result, folder / FIGURES["calibration"])
    return [FIGURES["roc"], FIGURES["confusion"], FIGURES["calibration"]]
