"""A K-class training run -> held-out evaluation (once) -> verified bundle folder.

The held-out split is scored once with the frozen K-class pipeline (the same numpy steps a
prediction uses), on the exact contours and on their moment-matched ellipses, and each is written
as the K-class report of ``evaluation.multiclass_report``; the out-of-fold probabilities of the
training split get the same report. A bundle trained with the network reports its DLR (the
model that answers) in those reports and each of Rad, DL and DLR in ``multiclass_<set>_<signature>``
beside them (``metrics.by_signature`` in the manifest). The scoring is recorded in the held-out
ledger (``ledger.py``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..base.json_values import to_json_value
from ..base.version import __version__
from ..inference.multiclass_pipeline import MulticlassPipeline
from .bundle_export import (
    HELDOUT_KEYS,
    IMAGE_INPUT,
    INTENDED_USE,
    backbone_record,
    extra_record,
    ood_block,
    split_counts,
    split_record,
)
from .config import config_to_dict
from .multiclass_fit import MulticlassRun

CONTOURS = ("exact", "ellipse")
#: Summary keys of a K-class evaluation kept in the manifest (the full result is in the work folder).
SUMMARY_KEYS = (
    "n",
    "macro_auc",
    "micro_auc",
    "micro_auc_ci_low",
    "micro_auc_ci_high",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "balanced_accuracy",
    "multinomial_brier",
)


def build_multiclass_pipeline(run: MulticlassRun) -> MulticlassPipeline:
    """The frozen K-class pipeline of a run; its distance reference from the exact training rows."""
    from .crossfit import crop_settings

    cohort, sig, cfg = run.cohort, run.signature, run.config
    _, R = cohort.rows(cohort.plan.train, ["exact"])
    cols = [cohort.rad_names.index(c) for c in sig.columns]
    deep: dict[str, Any] = {}
    if run.dl_signature is not None:
        cnn: dict[str, Any] = {"file": "cnn.safetensors", "arch": cfg.cnn.arch, "in_channels": 1}
        if cfg.cnn.seeds > 1:  # a seed ensemble: the members' tensors are named member<m>.<name>
            cnn["members"] = cfg.cnn.seeds
        deep = {
            "dl": run.dl_signature,
            "reducer": run.reducer,
            "fusion": run.fusion,
            "cnn": cnn,
            "crop": crop_settings(cfg),
        }
    return MulticlassPipeline(
        radiomics_parameters=run.record["radiomics_parameters"],
        radiomics_columns=list(cohort.rad_names),
        signature=sig,
        cutoffs=run.cutoffs,
        ood=ood_block(list(sig.columns), R[:, cols]),
        pixel_units=cfg.image.pixel_units,
        **deep,
    )


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The compact part of ``evaluation.multiclass.evaluate_multiclass`` kept in the manifest."""
    out: dict[str, Any] = {k: result.get(k) for k in SUMMARY_KEYS}
    keys = ("n_positive", *HELDOUT_KEYS)  # the binary summary's keys that a per-class row has
    out["per_class"] = {r["class"]: {k: r[k] for k in keys if k in r} for r in result["per_class"]}
    out["confusion"] = result["confusion"]
    return to_json_value(out)


def evaluate_multiclass_heldout(
    run: MulticlassRun, pipe: MulticlassPipeline, reports: Path
) -> dict[str, dict[str, Any]]:
    """Score the held-out split once per contour and the out-of-fold rows; write each report.

    Returns:
        ``"oof"`` and each contour with held-out cases -> the evaluation result of the model that
        answers (DLR with the network, else Rad). With the network, the Rad and DL signatures'
        results are under ``"<set>/rad"`` and ``"<set>/dl"`` too (``by_signature``).
    """
    from ..evaluation.multiclass import evaluate_multiclass
    from ..evaluation.multiclass_report import write_multiclass_report

    cohort, classes = run.cohort, run.classes
    cut = None if run.cutoffs is None else dict(zip(classes, run.cutoffs))
    oof = {pipe.model_name: run.oof_prob, **run.by_signature}
    sets: dict[str, tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]] = {
        "oof": (run.oof_y, oof, cohort.groups[run.oof_cases])
    }
    for contour in CONTOURS:
        pairs, R = cohort.rows(cohort.plan.test, [contour])
        if pairs:
            idx = np.array([i for i, _ in pairs])
            D = np.array([run.final_deep[p] for p in pairs]) if pipe.uses_cnn else None
            sets[contour] = (
                cohort.labels[idx].astype(int),
                pipe.signature_matrices(R, cohort.rad_names, D),
                cohort.groups[idx],
            )
    out = {}
    for name, (y, probs, groups) in sets.items():
        labels = np.array([classes[i] for i in y], dtype=object)
        what = "out-of-fold, training split" if name == "oof" else f"held-out split, {name} contours"
        jobs = [(name, f"multiclass_{name}", pipe.model_name, "")]
        if pipe.uses_cnn:
            members = [s for s in probs if s != pipe.model_name]  # the DLR is the report above
            jobs += [
                (f"{name}/{s}", f"multiclass_{name}_{s}", s, f", {s.upper()} signature") for s in members
            ]
        for key, folder, sig, suffix in jobs:
            write_multiclass_report(
                reports / folder,
                labels,
                probs[sig],
                classes,
                cut,
                clusters=groups,
                title=f"{run.config.title}: {what}{suffix}",
                notes=[f"Decision rule frozen at training: {pipe.rule}."],
            )
            out[key] = evaluate_multiclass(labels, probs[sig], classes, cut, groups)
    return out


def by_signature(results: dict[str, dict[str, Any]], model: str) -> dict[str, dict[str, Any]]:
    """``{set: {signature: summary}}``: the members' ``"<set>/<signature>"`` results and the
    reported ``model``'s (with the network; empty without)."""
    out: dict[str, dict[str, Any]] = {}
    for key, r in results.items():
        if "/" in key:
            name, sig = key.split("/")
            out.setdefault(name, {})[sig] = summarise(r)
    for name, table in out.items():
        table[model] = summarise(results[name])
    return out


def reported(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The results of the model that answers (keys without a signature)."""
    return {k: r for k, r in results.items() if "/" not in k}


def _ledger(run: MulticlassRun, results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    from .ledger import append_entry, config_digest, history, test_set_digest

    cohort, plan, ledger = run.cohort, run.cohort.plan, run.record.get("ledger")
    if ledger is None or len(plan.test) == 0:
        return None
    digest = test_set_digest(
        (cohort.cases[i].case_id, cohort.cases[i].variants["exact"].image) for i in plan.test
    )
    aucs = {c: {"macro_auc": round(float(r["macro_auc"]), 6)} for c, r in results.items() if c != "oof"}
    append_entry(
        Path(ledger),
        {
            "config_digest": config_digest(
                config_to_dict(run.config),
                run.record["radiomics_parameters"],
                (cohort.cases[i].case_id for i in plan.train),
            ),
            "test_set_digest": digest,
            "bundle_id": run.config.bundle_id,
            "n_test": len(plan.test),
            "aucs": aucs,
        },
    )
    return history(Path(ledger), digest)


def class_counts(run: MulticlassRun, idx: np.ndarray) -> dict[str, int]:
    """Cases of each class among ``idx``."""
    y = run.cohort.labels[idx].astype(int)
    return {c: int((y == j).sum()) for j, c in enumerate(run.classes)}


def write_multiclass_bundle(out: Path, run: MulticlassRun) -> Path:
    """Evaluate the held-out split once, write the K-class bundle atomically and its reports.

    Args:
        out: the bundle folder (replaced only once the new bundle verifies).
        run: the finished K-class run.

    Returns:
        The bundle folder.
    """
    from ..bundle.write import write_bundle
    from .multiclass_card import render_multiclass_card

    config, cohort, plan = run.config, run.cohort, run.cohort.plan
    reports = run.work / "reports"
    pipe = build_multiclass_pipeline(run)
    every = evaluate_multiclass_heldout(run, pipe, reports)
    results = reported(every)
    ledger = _ledger(run, results)
    classes = run.classes
    rule: dict[str, Any] = {"rule": pipe.rule}
    if run.cutoffs is not None:
        rule["cutoffs"] = dict(zip(classes, run.cutoffs))
        rule["chosen_by"] = "maximum out-of-fold balanced accuracy of argmax(p_k - cutoff_k)"
    counts = {
        **split_counts(cohort),
        "train_per_class": class_counts(run, plan.train),
        "test_per_class": class_counts(run, plan.test),
        "excluded": len(run.record["excluded"]),
    }
    metrics = {
        "heldout": {c: summarise(r) for c, r in results.items() if c != "oof"},
        "out_of_fold": summarise(results["oof"]),
        "decision_rule_search": to_json_value(run.cutoff_search),
        "signature": {"features": len(pipe.signature.columns), "c": pipe.signature.c},
    }
    signatures = ["rad"]
    models: dict[str, Any] = {}
    if pipe.dl is not None and pipe.fusion is not None:
        signatures = ["rad", "dl", "dlr"]
        models["fusion"] = pipe.fusion.kind
        metrics["by_signature"] = by_signature(every, pipe.model_name)
        metrics["dl_signature"] = {"features": len(pipe.dl.columns), "c": pipe.dl.c}
        metrics["fusion"] = {"kind": pipe.fusion.kind, "c": pipe.fusion.c}
        metrics["cnn_history"] = to_json_value(run.cnn_history)
    manifest: dict[str, Any] = {
        "id": config.bundle_id,
        "version": __version__,
        "title": config.title,
        "task": {
            "name": config.task.name,
            "description": config.task.description,
            "classes": classes,
            "decision_rule": rule,
        },
        "inputs": {
            "image": dict(IMAGE_INPUT),
            "clinical_variables": [],
        },
        "files": {},
        "training": {
            "datasets": list(config.training_data) or [run.record["manifest_name"]],
            "split": split_record(config),
            "counts": counts,
        },
        "models": {
            "default": pipe.model_name,
            "image_only": pipe.model_name,
            "signatures": signatures,
            "kind": "multiclass",
            **models,
        },
        "metrics": metrics,
        "licence": config.licence,
        **({"backbone": backbone_record(config)} if pipe.uses_cnn else {}),
        "citation": list(config.citation) or ["DLRPredictor (this software)"],
        "intended_use": INTENDED_USE,
        "extra": extra_record(
            config,
            command=run.record["command"],
            hardware=run.record["hardware"],
            elapsed_s=run.elapsed_s,
            excluded=len(run.record["excluded"]),
        ),
    }
    if ledger is not None:
        manifest["heldout_ledger"] = to_json_value(ledger)
    files: dict[str, bytes] = {
        "radiomics.yaml": Path(run.record["radiomics_parameters_path"]).read_bytes(),
        **pipe.to_files(),
        "model_card.md": render_multiclass_card(manifest, pipe, results).encode(),
    }
    if run.final_net is not None:
        from ..deep.weights import save_safetensors

        with tempfile.TemporaryDirectory() as tmp:
            files["cnn.safetensors"] = save_safetensors(
                run.final_net, Path(tmp) / "w.safetensors"
            ).read_bytes()
    path = write_bundle(out, manifest, files)
    (reports / "multiclass_full.json").write_text(json.dumps(to_json_value(every), indent=1))
    return path


__all__ = [
    "build_multiclass_pipeline",
    "by_signature",
    "evaluate_multiclass_heldout",
    "reported",
    "summarise",
    "write_multiclass_bundle",
]
