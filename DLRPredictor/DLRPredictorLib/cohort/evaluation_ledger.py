"""The held-out ledger of ``dlrpredictor evaluate``: every scoring of a test set is recorded.

A labelled cohort scored by a bundle is a use of that cohort as a test set, as ``train``'s held-out
evaluation is (``training/ledger.py``). ``evaluate`` appends one entry when

- ``--ledger PATH`` is given (the file every run on that test set shares), or
- the cohort is the bundle's own test set: its digest equals the ``test_set_digest`` of the
  bundle manifest's ``heldout_ledger``; without ``--ledger`` the entry then goes to
  ``heldout_ledger.jsonl`` beside the report folder, and the user is told to pass the training
  ledger to keep one history.

The entry: ``config_digest`` is the bundle's content digest (the trained model itself: scoring the
same bundle again shows as a repeat), ``test_set_digest`` as ``train`` computes it (case ids and
the sha256 of each case's representative slice, over the cases scored), ``bundle_id``, ``n_test``,
``source: evaluate`` and the AUC of each score column on the cases that have it (``aucs.evaluate``).
No case or patient id is written.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..base.errors import DLRError

#: The ``aucs`` key of an entry made by ``evaluate`` (``train`` uses the contour kinds).
AUCS_KEY = "evaluate"


def _slices(rows: Sequence[Any], scored: set[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(case id, representative slice) of each scored row, read as ``train`` reads a case."""
    from ..inputs import images
    from ..inputs import lesion as lesion_mod

    for row in rows:
        if row.case_id not in scored:
            continue
        volume = images.read_image(row.resolved_image, spacing_mm=row.spacing_mm)
        mask = lesion_mod.read_mask(row.resolved_mask, volume, segment=row.segment or None)
        yield row.case_id, lesion_mod.representative_slice(volume, mask, case=row.case_id).image


def _scored(predictions: Path) -> tuple[list[str], dict[str, list[tuple[int, float]]]]:
    """Case ids of the rows predicted with a label, and score column -> (label, score) pairs."""
    ids: list[str] = []
    pairs: dict[str, list[tuple[int, float]]] = {}
    with open(predictions, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            if rec.get("status") != "ok" or (rec.get("label") or "") not in ("0", "1"):
                continue
            ids.append(rec["case_id"])
            for col, value in rec.items():
                if (col == "probability" or col.startswith("score_")) and value not in ("", None):
                    pairs.setdefault(col, []).append((int(rec["label"]), float(value)))
    return ids, pairs


def _aucs(pairs: dict[str, list[tuple[int, float]]]) -> dict[str, float]:
    from ..evaluation.auc import auc_delong

    out: dict[str, float] = {}
    for col, values in pairs.items():
        lab = np.array([v[0] for v in values])
        if lab.size < 2 or len(set(lab.tolist())) < 2:
            continue
        name = col[len("score_") :] if col.startswith("score_") else col
        out[name] = round(float(auc_delong(lab, np.array([v[1] for v in values])).auc), 6)
    return out


def record_evaluation(
    pred: Any,
    rows: Sequence[Any],
    predictions: Path,
    report_dir: Path,
    ledger: Path | None,
    *,
    warn: Callable[[str], None],
    scored: tuple[list[str], dict[str, float]] | None = None,
) -> dict[str, Any] | None:
    """Append this evaluation to the held-out ledger when one applies; its history of the test set.

    Args:
        pred: the loaded predictor (its bundle manifest and content digest).
        rows: the cohort rows (``inputs.cohort_csv.CohortRow``).
        predictions: the results CSV of the evaluation (status, label, scores).
        report_dir: the report folder (the history is written there as ``heldout_ledger.json``).
        ledger: ``--ledger``, or None.
        warn: where the notes for the user go.
        scored: a K-class evaluation's scored case ids and its AUCs (e.g. the macro AUC), from
            its report; None: read from the 0/1 labels and score columns of ``predictions``.

    Returns:
        ``training.ledger.history`` of the test set after this entry, or None when no ledger
        applies (no ``--ledger`` and the cohort is not the bundle's test set).

    Raises:
        InputError: the ledger cannot be written or holds a damaged line.
    """
    from ..training.ledger import LEDGER_NAME, append_entry, history, test_set_digest

    own = pred.manifest.get("heldout_ledger")
    if ledger is None and not own:
        return None  # nothing to compare with: the images are not read again
    if scored is not None:
        ids, aucs = scored
    else:
        ids, pairs = _scored(predictions)
        aucs = _aucs(pairs)
    if not ids:
        return None
    try:
        digest = test_set_digest(_slices(rows, set(ids)))
    except DLRError as exc:  # a case predicted once but unreadable now: say so, record nothing
        warn(f"the held-out ledger was not updated: {exc}")
        return None
    is_own = bool(own) and own.get("test_set_digest") == digest
    if ledger is None and not is_own:
        return None
    if is_own:
        warn(
            "this cohort is the bundle's own held-out test set (scored when it was trained); "
            "this evaluation is recorded in the held-out ledger as a further use of it"
        )
    path = Path(ledger) if ledger is not None else Path(report_dir).parent / LEDGER_NAME
    if ledger is None:
        warn(f"recorded in {path}; pass the training run's ledger with --ledger to keep one history")
    entry = {
        "config_digest": pred.bundle_digest,  # the trained model itself (a sha256, as the schema asks)
        "test_set_digest": digest,
        "bundle_id": pred.bundle_id,
        "n_test": len(ids),
        "source": "evaluate",
        "aucs": {AUCS_KEY: aucs},
    }
    append_entry(path, entry)
    record = history(path, digest)
    target = Path(report_dir) / "heldout_ledger.json"
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)  # whole or absent
    warn(
        f"held-out ledger {path}: this test set has now been scored {record['evaluations']} time(s) by "
        f"{record['configurations']} configuration(s)"
    )
    return record
