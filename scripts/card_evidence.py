"""The patient-level, reader and per-scanner sections of a bundle's model card, from a scored test set.

Usage::

    .venv/bin/dlrpredictor evaluate TEST.csv --report R --bundle B --ledger LEDGER.jsonl
    .venv/bin/python scripts/card_evidence.py --bundle B --test TEST.csv --train TRAIN.csv \
        --predictions R_predictions.csv --ledger LEDGER.jsonl --card NEW_CARD.md \
        --calibration-note "TEXT"
    .venv/bin/python scripts/amend_model_card.py B NEW_CARD.md

For a bundle built before `train` wrote these sections (the shipped one): the held-out cases are
grouped by `dataset` as `train` groups them, each group is evaluated with the patients as clusters,
the readers' BI-RADS as comparator and the manifest's `device` as the per-scanner grouping
(``training.heldout_evidence.scored_evidence_entry``), and rendered by the functions `train`'s
card uses (``training.evidence_card``, ``training.model_card.ledger_lines``). The clinical-only and
BI-RADS-only comparators are fitted on the training manifest's clinical values only
(``fit_comparator_models``, as `train` fits them). The new sections replace the card's earlier
ones of the same titles, so the script can be run again; everything else is kept.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np
from DLRPredictorLib.evaluation.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, BootstrapSettings
from DLRPredictorLib.inference.predictor import load_predictor
from DLRPredictorLib.inputs.cohort_csv import read_cohort_csv
from DLRPredictorLib.training import ledger as ledger_mod
from DLRPredictorLib.training.data import TrainingCase
from DLRPredictorLib.training.evidence_card import evidence_card_lines, nomogram_calibration_lines
from DLRPredictorLib.training.heldout_evidence import fit_comparator_models, scored_evidence_entry
from DLRPredictorLib.training.model_card import NAMES, ledger_lines

EVIDENCE_TITLE = "## Patients, readers and scanners (held-out sets, development estimates)"
LEDGER_TITLE = "## Held-out ledger (machine-kept)"
CALIBRATION_TITLE = "## Calibration and recalibration"
IMAGE_SCORES = ("rad", "dl", "dlr")


def _cases(path: Path, pred: Any) -> list[TrainingCase]:
    labels = {pred.positive_class: 1, pred.negative_class: 0}
    names = [v.name for v in pred.pipeline.clinical_variables]
    rows = read_cohort_csv(path, clinical_names=names, label_values=labels)
    return [
        TrainingCase(
            r.case_id,
            r.patient_id or r.case_id,
            int(r.label),
            dict(r.clinical),
            {},  # no images: only labels, patients, clinical values and manifest columns are read
            str(r.extra.get("dataset", "")).strip(),
            dict(r.extra),
        )
        for r in rows
    ]


def _scores(path: Path) -> dict[str, dict[str, float]]:
    """case id -> score column -> value (rows predicted 'ok')."""
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            if rec["status"] != "ok":
                continue
            out[rec["case_id"]] = {k: float(v) for k, v in rec.items() if k.startswith("score_") and v}
    return out


def evidence_lines(args: argparse.Namespace) -> tuple[list[str], dict[str, Any] | None]:
    """The evidence section's lines and the ledger history of the test set."""
    pred = load_predictor(args.bundle)
    test = _cases(args.test, pred)
    scored = _scores(args.predictions)
    test = [c for c in test if c.case_id in scored]
    train = _cases(args.train, pred)
    comp = fit_comparator_models(
        pred.pipeline.clinical_variables,
        pred.pipeline.combined.names,
        train,
        np.array([c.label for c in train]),
    )
    settings = BootstrapSettings(n_resamples=args.bootstrap, seed=args.seed)
    cutoffs = dict(pred.signature_cutoffs)
    groups = {"exact": test}
    for name in sorted({c.dataset for c in test} - {""}):
        groups[f"exact:{name}"] = [c for c in test if c.dataset == name]
    out = [
        EVIDENCE_TITLE,
        f"Computed by `scripts/card_evidence.py` from `dlrpredictor evaluate` of the held-out manifest "
        f"(exact outlines) with this bundle; bootstrap {settings.n_resamples} resamples by patient, seed "
        f"{settings.seed}. The comparators were fitted on the training manifest only: clinical only "
        f"({', '.join(pred.pipeline.combined.names)}, unpenalised logistic regression, the combined model's "
        "predictors without the image score) and BI-RADS only (BI-RADS alone, all training cases with "
        "a BI-RADS value). The per-scanner rows are the manifest's `device` (BUS-BRA's `Device`; BrEaST "
        "has none). The radiomics baseline of the tables above is not in the bundle and is not repeated "
        "here. These are development estimates: the same held-out sets chose the settings (see above).",
        "",
    ]
    for key, cases in groups.items():
        scores = {s: np.array([scored[c.case_id][f"score_{s}"] for c in cases]) for s in IMAGE_SCORES}
        combined = np.array([scored[c.case_id].get("score_combined", np.nan) for c in cases])
        has = np.isfinite(combined)
        clinical: dict[str, np.ndarray] | None = None
        if has.sum():
            clinical = {"combined": combined}
            sub = [c for c, h in zip(cases, has, strict=True) if h]
            for name, values in comp.score(sub).items():
                full = np.full(len(cases), np.nan)
                full[has] = values
                clinical[name] = full
        entry = scored_evidence_entry(
            cases, scores, cutoffs, group_column="device", clinical_scores=clinical, bootstrap=settings
        )
        patients = len({c.patient_id for c in cases})
        out += [
            f"### {key} contours ({entry['n']} images of {patients} patients, "
            f"{entry['n_positive']} positive)",
            "",
        ]
        out += evidence_card_lines(entry, NAMES, pred.manifest["models"]["image_only"])
    history = None
    if args.ledger is not None:
        digests = {e["test_set_digest"] for e in ledger_mod.read_ledger(args.ledger)}
        if len(digests) == 1:
            history = ledger_mod.history(args.ledger, digests.pop())
    return out, history


def calibration_lines(bundle_note: str) -> list[str]:
    """The calibration section: why this bundle has no recalibration step, and the nomogram."""
    return [
        CALIBRATION_TITLE,
        bundle_note,
        *nomogram_calibration_lines(NAMES),
        "",
    ]


def _drop_section(text: str, title: str) -> str:
    """The card without the section headed ``title`` (up to the next '## ' heading)."""
    start = text.find(title + "\n")
    if start < 0:
        return text
    end = text.find("\n## ", start + len(title))
    return text[:start] + (text[end + 1 :] if end >= 0 else "")


def _insert_before(text: str, headings: tuple[str, ...], block: list[str]) -> str:
    """``block`` inserted before the first of ``headings`` the card has (at its end without one)."""
    found = [text.find(h + "\n") for h in headings if text.find(h + "\n") >= 0]
    at = found[0] if found else len(text)
    return text[:at] + "\n".join(block) + "\n" + text[at:]


def main(argv: list[str] | None = None) -> int:
    """Write the amended card to --card."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True, help="the held-out manifest")
    p.add_argument("--train", type=Path, required=True, help="the training manifest (comparators)")
    p.add_argument("--predictions", type=Path, required=True, help="evaluate's results CSV of --test")
    p.add_argument("--ledger", type=Path, default=None, help="the held-out ledger evaluate appended to")
    p.add_argument("--card", type=Path, required=True, help="where the new model_card.md is written")
    p.add_argument("--calibration-note", required=True, help="what to say on the bundle's recalibration step")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = p.parse_args(argv)
    text = (args.bundle / "model_card.md").read_text(encoding="utf-8")
    for title in (EVIDENCE_TITLE, LEDGER_TITLE, CALIBRATION_TITLE):
        text = _drop_section(text, title)
    evidence, history = evidence_lines(args)
    text = _insert_before(
        text, ("## Held-out ledger (reconstructed)", "## Held-out ledger", "## Limitations"), evidence
    )
    text = _insert_before(text, ("## Limitations",), calibration_lines(args.calibration_note))
    if history is not None:
        lines = ledger_lines(history)
        lines[0] = LEDGER_TITLE
        first = history["entries"][0]["date"][:10]
        lines.insert(
            1,
            f"Kept from {first} on; the earlier uses of this test set are those of 'Held-out ledger "
            "(reconstructed)' above. An entry made by `dlrpredictor evaluate` names the bundle by its "
            "content digest at the time (adding sections to this card changed the digest, not the model).",
        )
        text = _insert_before(text, ("## Limitations",), lines)
    args.card.write_text(text, encoding="utf-8")
    print(f"{args.card}: {len(text.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
