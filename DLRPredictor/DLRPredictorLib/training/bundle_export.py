"""Turn a finished training run into a verified bundle folder (manifest, weights, steps, card)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..base.json_values import to_json_value
from ..base.version import __version__
from ..evaluation.summary import flatten_score
from .config import TrainConfig


def _youden(y: np.ndarray, p: np.ndarray) -> float:
    from ..evaluation.cutoff_metrics import youden_cutoff

    return float(youden_cutoff(y, p))


def frozen_cutoffs(result: dict[str, Any], labels: np.ndarray) -> dict[str, float]:
    """Youden cutoffs on the out-of-fold scores of the exact training contours (frozen)."""
    exact = result["oof_exact"]
    y = result["oof_y"][exact]
    cut = {name: _youden(y, s[exact]) for name, s in result["oof_scores"].items()}
    clin = result["clinical"]
    if clin is not None:
        cut["combined"] = _youden(labels[result["oof_cases"]][clin["keep"]], clin["oof"])
    return cut


def build_pipeline(trainer: Any, result: dict[str, Any], ood: dict[str, Any], params: dict[str, Any]) -> Any:
    """The FrozenPipeline of a training run."""
    from ..inference.pipeline import FrozenPipeline

    sigs = result["sigs"]
    clin = result["clinical"]
    cfg: TrainConfig = trainer.config
    cnn = None
    if "dl" in sigs:
        cnn = {"file": "cnn.safetensors", "arch": cfg.cnn.arch, "in_channels": 1}
    return FrozenPipeline(
        radiomics_parameters=params,
        radiomics_columns=list(trainer.rad_names),
        rad=sigs["rad"],
        dl=sigs.get("dl"),
        reducer=sigs.get("reducer"),
        dlr=sigs.get("dlr"),
        combined=clin["model"] if clin else None,
        nomogram=clin["nomogram"] if clin else None,
        clinical_variables=clin["variables"] if clin else [],
        cutoffs=frozen_cutoffs(result, trainer.labels),
        default_model="combined" if clin else ("dlr" if "dlr" in sigs else "rad"),
        ood=ood,
        pixel_units=cfg.image.pixel_units,
        crop=trainer.crop,
        cnn=cnn,
        dlr_logit_range=clin["logit_range"] if clin else None,
    )


def _png(fig_writer: Any) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.png"
        fig_writer(path)
        return path.read_bytes()


def summarise_metrics(heldout: dict[str, Any]) -> dict[str, Any]:
    """The compact held-out metrics recorded in the manifest (the full set is in the work folder)."""
    keys = (
        "auc",
        "auc_ci_low",
        "auc_ci_high",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "accuracy",
        "calibration_slope",
        "calibration_intercept",
        "hosmer_lemeshow_p",
        "cutoff",
    )
    out: dict[str, Any] = {}
    for contour, entry in heldout.items():
        block: dict[str, Any] = {"n": entry.get("n"), "n_positive": entry.get("n_positive")}
        for part in ("all", "clinical_subset"):
            if part not in entry:
                continue
            models = {}
            for name, res in entry[part]["scores"].items():
                flat = flatten_score(res)
                models[name] = {k: flat.get(k) for k in keys}
            block[part] = models
            block[f"{part}_delong"] = [
                {k: t.get(k) for k in ("score_a", "score_b", "auc_a", "auc_b", "z", "p")}
                for t in to_json_value(entry[part].get("delong", []))
            ]
        if "n_clinical" in entry:
            block["n_clinical"] = entry["n_clinical"]
        out[contour] = block
    return to_json_value(out)


def write_trained_bundle(
    out: Path,
    trainer: Any,
    result: dict[str, Any],
    *,
    ood: dict[str, Any],
    config: TrainConfig,
    params: dict[str, Any],
    params_path: Path,
    extra: dict[str, Any],
) -> Path:
    """Evaluate the held-out split, write the bundle atomically and the full report next to it."""
    from ..bundle.write import write_bundle
    from .heldout import evaluate_heldout
    from .model_card import render_model_card

    pipe = build_pipeline(trainer, result, ood, params)
    deep = result["final_deep"]
    heldout = evaluate_heldout(trainer, pipe, deep, trainer.work / "reports")
    files: dict[str, bytes] = {"radiomics.yaml": Path(params_path).read_bytes(), **pipe.to_files()}
    if result["net_result"] is not None:
        from ..deep.deep_model import save_safetensors

        with tempfile.TemporaryDirectory() as tmp:
            files["cnn.safetensors"] = save_safetensors(
                trainer.final_net, Path(tmp) / "w.safetensors"
            ).read_bytes()
    clin = result["clinical"]
    if clin is not None:
        files["nomogram.png"] = _png(lambda p: clin["nomogram"].plot(p, title=f"{config.title}: nomogram"))
        files["nomogram.csv"] = clin["nomogram"].table().to_csv(index=False).encode()
    plan = trainer.plan
    counts = {
        "cases": len(trainer.cases),
        "train_cases": len(plan.train),
        "test_cases": len(plan.test),
        "train_patients": len(set(trainer.groups[plan.train])),
        "test_patients": len(set(trainer.groups[plan.test])),
        "train_positive": int(trainer.labels[plan.train].sum()),
        "test_positive": int(trainer.labels[plan.test].sum()),
        "excluded": len(extra["excluded"]),
    }
    metrics = {"heldout": summarise_metrics(heldout), "cnn_history": to_json_value(trainer.history)}
    if trainer.pretrain_history is not None:
        metrics["cnn_pretraining"] = to_json_value(trainer.pretrain_history)
    if clin is not None:
        metrics["clinical_univariable"] = to_json_value(clin["univariable"])
        metrics["clinical_multivariable"] = to_json_value(clin["multivariable"])
    manifest = {
        "id": config.bundle_id,
        "version": __version__,
        "title": config.title,
        "task": {
            "name": config.task.name,
            "description": config.task.description,
            "positive_class": config.task.positive_class,
            "negative_class": config.task.negative_class,
        },
        "inputs": {
            "image": {
                "modality": "US",
                "dimensions": 2,
                "notes": "B-mode; 3D volumes use the slice with the largest lesion area",
            },
            "clinical_variables": [v.manifest_entry() for v in pipe.clinical_variables],
        },
        "files": {},
        "training": {
            "datasets": list(config.training_data) or [extra["manifest"]],
            "split": {
                "method": "patient-level",
                "test": config.split.test_manifest or f"{config.split.test_fraction:.0%} random by patient",
                "folds": config.split.folds,
                "seed": config.seed,
            },
            "counts": counts,
        },
        "cutoff": float(pipe.cutoffs[pipe.default_model]),
        "models": {
            "default": pipe.default_model,
            "image_only": pipe.image_only_model,
            "signatures": pipe.signature_names,
            "cutoffs": pipe.cutoffs,
            "fusion": config.model.fusion,
        },
        "metrics": metrics,
        "licence": config.licence,
        "citation": list(config.citation) or ["DLRPredictor (this software)"],
        "intended_use": "Research use: decision support for lesion characterisation on B-mode ultrasound; "
        "not a diagnosis and not for use without a radiologist's reading.",
        "extra": {
            "command": extra.get("command", ""),
            "hardware": extra.get("hardware", ""),
            "radiomics_parameters": "radiomics.yaml",
            "elapsed_s": round(extra["elapsed_s"], 1),
            "training_config": to_json_value(extra["config"]),
            "excluded_cases": len(extra["excluded"]),
        },
    }
    files["model_card.md"] = render_model_card(manifest, heldout, clin, config).encode()
    path = write_bundle(out, manifest, files)
    (trainer.work / "reports").mkdir(parents=True, exist_ok=True)
    (trainer.work / "reports" / "heldout_full.json").write_text(json.dumps(to_json_value(heldout), indent=1))
    return path


__all__ = ["build_pipeline", "frozen_cutoffs", "write_trained_bundle"]
