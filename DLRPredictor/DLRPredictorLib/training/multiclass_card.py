"""model_card.md of a K-class bundle: classes, method, frozen rule, held-out numbers, no nomogram.

Every number comes from the run (the manifest being written and the evaluation results).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..inference.multiclass_pipeline import MulticlassPipeline

#: Why a K-class bundle has no nomogram (also in the README).
NO_NOMOGRAM = (
    "No nomogram is offered for this K-class endpoint. A nomogram turns points into one "
    "probability; drawing one per class would need K separate one-vs-rest models whose "
    "probabilities neither sum to 1 nor equal the probabilities this bundle reports, so a reader "
    "would see numbers that contradict the prediction. The class probabilities, the predicted "
    "class and each feature's term of the predicted class's softmax input are reported instead."
)


def _f(v: Any, d: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{d}f}"


def _result_lines(name: str, r: Mapping[str, Any]) -> list[str]:
    lines = [
        f"### {name} (n = {r['n']})",
        "",
        f"- macro AUC (one-vs-rest) {_f(r['macro_auc'])}; micro AUC {_f(r['micro_auc'])} "
        f"({_f(r['micro_auc_ci_low'])}-{_f(r['micro_auc_ci_high'])})",
        f"- accuracy {_f(r['accuracy'])} ({_f(r['accuracy_ci_low'])}-{_f(r['accuracy_ci_high'])}); "
        f"balanced accuracy {_f(r['balanced_accuracy'])}; multinomial Brier {_f(r['multinomial_brier'])}",
        "",
        "| class | cases | AUC vs rest (95% CI, DeLong) | sensitivity | specificity | PPV | NPV |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["per_class"]:
        lines.append(
            f"| {row['class']} | {row['n_positive']} | {_f(row['auc'])} ({_f(row['auc_ci_low'])}-"
            f"{_f(row['auc_ci_high'])}) | {_f(row['sensitivity'])} | {_f(row['specificity'])} | "
            f"{_f(row['ppv'])} | {_f(row['npv'])} |"
        )
    classes = r["classes"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", ""]
    lines.append("| | " + " | ".join(classes) + " |")
    lines.append("|---" * (len(classes) + 1) + "|")
    for name_, row in zip(classes, r["confusion"]):
        lines.append(f"| {name_} | " + " | ".join(str(v) for v in row) + " |")
    return [*lines, ""]


def _inputs_lines(pipe: MulticlassPipeline) -> list[str]:
    if not pipe.uses_cnn:
        return [
            "- Radiomics (the bundle's parameter file) of the exact lesion contour; no network, no "
            "clinical variables."
        ]
    return [
        "- Radiomics (the bundle's parameter file) of the exact lesion contour and the average-pooled "
        f"features of a {pipe.cnn['arch']} network with {len(pipe.classes)} outputs trained on the "
        "lesion crops (class-weighted cross-entropy; early stopping on the macro one-vs-rest AUC of "
        "inner validation patients); no clinical variables. The Rad signature is as follows; the DL "
        "signature is the same method on the principal components of the pooled features "
        f"({len(pipe.dl.columns) if pipe.dl is not None else 0} read).",
    ]


def _deep_lines(pipe: MulticlassPipeline) -> list[str]:
    if pipe.fusion is None:
        return []
    if pipe.fusion.kind == "stacking":
        how = (
            "stacking: a multinomial logistic meta-model on the Rad and DL signatures' log class "
            f"probabilities (C = {pipe.fusion.c:g}), fitted on their out-of-fold probabilities"
        )
    else:
        how = "ensemble: the mean of the Rad and DL signatures' class probabilities"
    return [
        f"- The reported model is the DLR fusion, {how}. Network, Rad and DL signatures were "
        "cross-fitted on the same patient-level folds; the DLR's out-of-fold probabilities come "
        "from meta-models fitted on the other folds.",
    ]


def _signature_table(manifest: Mapping[str, Any]) -> list[str]:
    table = manifest["metrics"].get("by_signature") or {}
    if not table:
        return []
    lines = [
        "Macro / micro AUC (one-vs-rest) and balanced accuracy of each signature:",
        "",
        "| set | signature | macro AUC | micro AUC | balanced accuracy |",
        "|---|---|---|---|---|",
    ]
    for name, sigs in table.items():
        for sig in ("rad", "dl", "dlr"):
            if sig in sigs:
                r = sigs[sig]
                lines.append(
                    f"| {name} | {sig.upper()} | {_f(r['macro_auc'])} | {_f(r['micro_auc'])} | "
                    f"{_f(r['balanced_accuracy'])} |"
                )
    return [*lines, ""]


def render_multiclass_card(
    manifest: Mapping[str, Any], pipe: MulticlassPipeline, results: Mapping[str, Mapping[str, Any]]
) -> str:
    """The card's Markdown.

    Args:
        manifest: the manifest being written (task, training counts, decision rule).
        pipe: the frozen pipeline.
        results: ``multiclass_export.evaluate_multiclass_heldout`` of the run.
    """
    task, counts = manifest["task"], manifest["training"]["counts"]
    rule = task["decision_rule"]
    sig = pipe.signature
    if rule["rule"] == "argmax":
        rule_text = "the class with the highest probability (argmax)"
    else:
        cut = ", ".join(f"{c} {v:+.3f}" for c, v in rule["cutoffs"].items())
        rule_text = f"argmax of p_k - cutoff_k, cutoffs chosen on out-of-fold probabilities ({cut})"
    lines = [
        f"# {manifest['title']}",
        "",
        f"Bundle `{manifest['id']}` version {manifest['version']}. {task['description']}",
        "",
        "## Endpoint",
        "",
        f"{len(task['classes'])} classes, in this order: "
        + ", ".join(f"`{c}`" for c in task["classes"])
        + ".",
        f"Training cases per class: {counts['train_per_class']}; held-out: {counts['test_per_class']}.",
        f"Decision rule (frozen): {rule_text}.",
        "",
        "## Method",
        "",
        *_inputs_lines(pipe),
        "- Feature selection one-vs-rest: the binary selection (univariate test, correlation "
        "pruning, L1-logistic LASSO) per class against the others, inside the training folds; the "
        f"model reads the union ({len(sig.columns)} features).",
        f"- Classifier: multinomial (softmax) logistic regression on z-scores, L2 strength C = {sig.c:g} "
        "chosen by patient-grouped cross-validation on the multinomial log loss; the class "
        "probabilities sum to 1 by construction.",
        *_deep_lines(pipe),
        "- Out-of-fold probabilities of the training cases come from models that never saw them; the "
        "decision rule is chosen on those only; the held-out split was scored once.",
        "",
        "## Nomogram",
        "",
        NO_NOMOGRAM,
        "",
        "## Results",
        "",
    ]
    lines += _signature_table(manifest)
    for name, r in results.items():
        title = "Out-of-fold (training split)" if name == "oof" else f"Held-out split, {name} contours"
        lines += _result_lines(f"{pipe.model_name.upper()}: {title}" if pipe.uses_cnn else title, r)
    lines += [
        "## Intended use and limits",
        "",
        manifest["intended_use"],
        "",
        f"Licence: {manifest['licence']}",
        "",
    ]
    return "\n".join(lines)


__all__ = ["NO_NOMOGRAM", "render_multiclass_card"]
