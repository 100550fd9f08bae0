"""The model card's patient-level, reader and per-group lines of one held-out block.

A block is an ``evaluation.report.evaluate_scores`` result computed with the held-out cases'
patient clusters and, where the manifest has it, the readers' BI-RADS (``heldout_evidence.py``).
Every number and the sentence on what the image-only model adds beyond the reader are generated
from the block; no patient id is in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .heldout_evidence import CLINICAL_ONLY

#: Holm-adjusted p below this: the difference is called significant in the card's sentence.
ALPHA = 0.05


def _f(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{float(v):.{d}f}"


def _iv(lo: Any, hi: Any) -> str:
    return f"{_f(lo)} to {_f(hi)}"


def _name(names: Mapping[str, str], key: str) -> str:
    return names.get(key, key)


def patient_lines(
    block: dict[str, Any], names: Mapping[str, str], shown: set[str] | None = None
) -> list[str]:
    """AUC with DeLong, clustered (Obuchowski) and bootstrap intervals per score, then the pairwise
    tests with Holm-adjusted p and the small-sample warnings (those not in ``shown``, which gains
    them)."""
    clusters = block.get("clusters") or {}
    boot = block.get("bootstrap") or {}
    patients = f" of {clusters['n_clusters']} patients" if clusters else ""
    out = [
        f"Patient-level intervals ({block['n']} images{patients}; bootstrap "
        f"{boot.get('n_resamples')} resamples by {boot.get('unit', 'case')}, seed {boot.get('seed')}; 95%):",
        "",
        "| model | AUC | DeLong CI | clustered CI (Obuchowski) | bootstrap CI |",
        "|---|---|---|---|---|",
    ]
    for key, res in block["scores"].items():
        auc = res["auc"]
        cl = res.get("auc_clustered") or {}
        bs = res.get("auc_bootstrap") or {}
        clustered = _iv(cl.get("ci_low"), cl.get("ci_high")) if cl else "n/a"
        out.append(
            f"| {_name(names, key)} | {_f(auc['auc'])} | {_iv(auc['ci_low'], auc['ci_high'])} | "
            f"{clustered} | {_iv(bs.get('ci_low'), bs.get('ci_high'))} |"
        )
    tests, kind = _tests(block)
    if tests:
        out += [
            "",
            f"Pairwise AUC tests ({kind}; two-sided; Holm-adjusted over the {len(tests)} pairs): "
            + "; ".join(
                f"{_name(names, t['score_a'])} vs {_name(names, t['score_b'])} p={_f(t['p'])} "
                f"(Holm {_f(t.get('p_holm'))})"
                for t in tests
            ),
        ]
    shown = set() if shown is None else shown
    for w in block.get("warnings") or []:
        if w not in shown:
            out += ["", f"Warning: {w}"]
            shown.add(w)
    return [*out, ""]


def _tests(block: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    if block.get("delong_clustered"):
        return block["delong_clustered"], "clustered by patient (Obuchowski)"
    return block.get("delong") or [], "DeLong"


def _improvement(imp: dict[str, Any] | None) -> str:
    if not imp:
        return "n/a"
    return f"{_f(imp['value'])} ({_iv(imp.get('boot_ci_low'), imp.get('boot_ci_high'))})"


def reader_lines(block: dict[str, Any], names: Mapping[str, str], image: str) -> list[str]:
    """The reader comparison table (BI-RADS row first) and the sentence on the image-only model."""
    comp = block.get("reader_comparison")
    if not comp:
        return []
    reader = comp["reader"]
    policy = reader.get("policy") or {}
    rn = comp["reader_name"]
    out = [
        f"Against the readers ({rn}; {comp['n']} images with a value, {comp['n_positive']} positive). "
        f"{rn} alone: AUC {_f(reader['auc'])} (DeLong {_iv(reader['auc_ci_low'], reader['auc_ci_high'])}"
        + (
            f", clustered {_iv(reader['auc_clustered_ci_low'], reader['auc_clustered_ci_high'])}"
            if "auc_clustered_ci_low" in reader
            else ""
        )
        + f"); '{comp['policy_name']}': sensitivity {_f(policy.get('sensitivity'))}, specificity "
        f"{_f(policy.get('specificity'))}. NRI and IDI compare each probability with the ACR risk of the "
        "BI-RADS category (bootstrap 95% CI); they reward calibration as well as ranking.",
        "",
        f"| model | AUC | minus {rn} | test | p | p Holm | categorical NRI | continuous NRI | IDI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in comp["rows"]:
        out.append(
            f"| {_name(names, r['score'])} | {_f(r['auc'])} | {_f(r['diff_vs_reader'])} | {r['test']} | "
            f"{_f(r['p'])} | "
            f"{_f(r['p_holm'])} | {_improvement(r.get('nri_categorical'))} | "
            f"{_improvement(r.get('nri_continuous'))} | {_improvement(r.get('idi'))} |"
        )
    sentence = reader_sentence(block, names, image)
    out += ["", *([sentence, ""] if sentence else [])]
    decision = policy_decision_line(block, names, [m for m in (image, "combined") if m in block["scores"]])
    return out + ([decision, ""] if decision else [])


#: Threshold probabilities of the decision-curve sentence.
DECISION_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)


def policy_decision_line(block: dict[str, Any], names: Mapping[str, str], models: list[str]) -> str:
    """Net benefit of the models against the readers' policy (biopsy every BI-RADS >= 4) and
    against biopsying every lesion, at a few threshold probabilities."""
    comp = block.get("reader_comparison") or {}
    policy = comp.get("policy") or {}
    if not policy.get("threshold") or not models:
        return ""
    pol = dict(zip((round(t, 6) for t in policy["threshold"]), policy["net_benefit"]))
    curves = {
        m: {round(r["threshold"], 6): r for r in (block["scores"][m].get("decision_curve") or [])}
        for m in models
    }
    parts = []
    for t in DECISION_THRESHOLDS:
        key = round(t, 6)
        if key not in pol or any(key not in c for c in curves.values()):
            continue
        first = next(iter(curves.values()))[key]
        models_nb = ", ".join(f"{_name(names, m)} {_f(c[key]['net_benefit'])}" for m, c in curves.items())
        parts.append(f"{t:.2f}: {models_nb}; policy {_f(pol[key])}; biopsy all {_f(first['treat_all'])}")
    if not parts:
        return ""
    where = "" if not comp.get("n_missing") else f" (the policy on the {comp['n']} images with a value)"
    return (
        f"Decision curve against the readers' policy '{comp['policy_name']}'{where}, net benefit by "
        "threshold probability: " + " | ".join(parts) + "."
    )


def reader_sentence(block: dict[str, Any], names: Mapping[str, str], image: str) -> str:
    """What the image-only model adds beyond the reader on these cases, from the numbers only."""
    comp = block.get("reader_comparison")
    rows = {r["score"]: r for r in (comp or {}).get("rows", [])}
    if not comp or image not in rows:
        return ""
    r, rn = rows[image], comp["reader_name"]
    diff, p_holm = r["diff_vs_reader"], r["p_holm"]
    text = (
        f"**Beyond the reader:** on these {comp['n']} images the image-only model, "
        f"{_name(names, image)}, has AUC {_f(r['auc'])} against {_f(comp['reader']['auc'])} for {rn} "
        f"alone (difference {diff:+.3f}; "
        f"{r['test']} p={_f(r['p'])}, Holm {_f(p_holm)}): "
    )
    if p_holm is not None and not math.isnan(p_holm) and p_holm < ALPHA:
        text += f"it discriminates {'better' if diff > 0 else 'less well'} than {rn} on these cases."
    else:
        text += (
            f"the difference is not significant; it is not shown to discriminate better or worse than {rn}."
        )
    idi = r.get("idi")
    if idi:
        lo, hi = idi.get("boot_ci_low"), idi.get("boot_ci_high")
        if lo is not None and lo > 0:
            verdict = "above 0: its probabilities separate the classes more than the reader's risks"
        elif hi is not None and hi < 0:
            verdict = "below 0: they separate the classes less than the reader's risks"
        else:
            verdict = "including 0: no demonstrated gain"
        text += f" Its IDI over {rn} is {_f(idi['value'])} (95% CI {_iv(lo, hi)}, {verdict})."
    added = _added_to_clinical(block, names)
    return text + (f" {added}" if added else "")


def _added_to_clinical(block: dict[str, Any], names: Mapping[str, str]) -> str:
    """The combined model against the clinical-only model: what the image score adds to them."""
    tests, kind = _tests(block)
    for t in tests:
        pair = {t["score_a"], t["score_b"]}
        if pair != {"combined", CLINICAL_ONLY}:
            continue
        combined = t["auc_a"] if t["score_a"] == "combined" else t["auc_b"]
        clinical = t["auc_b"] if t["score_a"] == "combined" else t["auc_a"]
        p = t.get("p_holm")
        significant = p is not None and not math.isnan(p) and p < ALPHA
        verdict = (
            f"the image score {'improves' if combined > clinical else 'worsens'} them significantly"
            if significant
            else "the difference is not significant"
        )
        return (
            "Adding the image score to the clinical predictors: "
            f"{_name(names, 'combined')} AUC {_f(combined)} against {_f(clinical)} for "
            f"{_name(names, CLINICAL_ONLY)} ({kind} p={_f(t['p'])}, Holm {_f(p)}): {verdict}."
        )
    return ""


def subgroup_lines(table: dict[str, Any] | None, names: Mapping[str, str]) -> list[str]:
    """The per-scanner / per-site AUC table (descriptive, no test between groups)."""
    if not table:
        return []
    column = table["column"]
    out = [
        f"Per {column} (descriptive; DeLong CI by image):",
        "",
        f"| model | {column} | n | events | AUC (95% DeLong CI) | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        auc = "n/a" if r.get("auc") is None else f"{_f(r['auc'])} ({_iv(r.get('ci_low'), r.get('ci_high'))})"
        out.append(
            f"| {_name(names, r['score'])} | {r['group']} | {r['n']} | {r['events']} | {auc} | "
            f"{r.get('note') or ''} |"
        )
    return [*out, ""]


def evidence_card_lines(entry: dict[str, Any], names: Mapping[str, str], image: str) -> list[str]:
    """Every evidence line of one held-out entry (``heldout.evaluate_heldout``), whole set first,
    then the cases with clinical values."""
    out: list[str] = []
    shown: set[str] = set()  # a warning of the whole set is not repeated for its clinical subset
    for part, title in (("all", None), ("clinical_subset", "Cases with clinical values")):
        block = entry.get(part)
        if not block:
            continue
        if title:
            out += [f"{title}: patient-level statistics and the readers as comparator.", ""]
        out += patient_lines(block, names, shown)
        out += reader_lines(block, names, image)
        out += subgroup_lines(entry.get(f"{part}_subgroups"), names)
    return out


def nomogram_calibration_lines(names: Mapping[str, str]) -> list[str]:
    """Why the combined model (nomogram) carries no recalibration step of its own."""
    return [
        f"- The {_name(names, 'combined')} is not recalibrated. It is itself an unpenalised logistic "
        "regression fitted on the out-of-fold image scores and the clinical values of the training "
        "cases, so a logistic (Platt) step fitted to its own training probabilities is the identity "
        "(slope 1, intercept 0, by the maximum-likelihood equations), and an isotonic step on them "
        "would only fit their noise. A step that changes it would have to be fitted on nomogram "
        "probabilities from a nested cross-validation of the nomogram, on the few training cases with "
        "clinical values; that is not done. Its held-out calibration (slope, intercept, Hosmer-Lemeshow) "
        "is in the tables; recalibrate it on local data before relying on its probabilities."
    ]
