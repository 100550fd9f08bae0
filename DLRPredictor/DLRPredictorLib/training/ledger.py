"""The held-out ledger: every scoring of a test set by a trained configuration, kept per test set.

A test set is spent once. A bundle alone cannot know how many other configurations met the same
test set, so every ``train`` run appends one line to a ledger file (JSON lines, default
``<work>/heldout_ledger.jsonl``, or ``train --ledger PATH`` shared by every run on that test set)
before the bundle is written, and the bundle's manifest (``heldout_ledger``) and model card carry the
ledger's full history for its test set.

An entry: ``config_digest`` (sha256 of the training configuration, the radiomics parameters and
the training case list), ``test_set_digest`` (sha256 of the sorted held-out case ids and the
sha256 of each image's pixels; ids are hashed, never written), ``date`` (UTC), ``bundle_id``,
``n_test`` and the held-out AUCs (``aucs``: contour -> model -> AUC). A configuration that
scored the same test set before is visible: its entries share ``config_digest`` (``repeat``
counts them).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import InputError
from ..base.json_values import to_json_value
from .config import config_to_dict
from .run import TrainingRun

LEDGER_NAME = "heldout_ledger.jsonl"


def _sha256_lines(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def test_set_digest(cases: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 of the held-out set: its (case id, sha256 of the image pixels) pairs, sorted.

    Args:
        cases: (case_id, image slice) of each held-out case; the pixels count, not the file's
            path or format, so the digest does not depend on where or how the data are stored.
    """
    return _sha256_lines(
        f"{cid}\t{hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()}" for cid, image in cases
    )


def config_digest(
    config: Mapping[str, Any], radiomics_parameters: Mapping[str, Any], train_cases: Iterable[str]
) -> str:
    """sha256 of what makes a configuration: the training config, the radiomics parameters and the
    training case ids (the data selection), as canonical JSON."""
    doc = {
        "config": to_json_value(dict(config)),
        "radiomics_parameters": to_json_value(dict(radiomics_parameters)),
        "train_cases": _sha256_lines(train_cases),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every entry of a ledger file (none when it does not exist).

    Raises:
        InputError: a line that is not a JSON object (the file was edited or damaged).
    """
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("test_set_digest"), str):
            raise InputError(f"held-out ledger '{path}' line {n} is not a ledger entry; the file was damaged")
        out.append(entry)
    return out


def append_entry(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Append one entry (one line, one write on an O_APPEND descriptor, locked where the system
    allows, fsync'd), numbering it among the earlier entries of the same configuration and test set.

    Args:
        path: the ledger file (created with its folder when absent).
        entry: config_digest, test_set_digest, bundle_id, n_test, aucs; ``date`` and ``repeat``
            are filled in.

    Returns:
        The entry as written.

    Raises:
        InputError: the ledger cannot be written, or holds a damaged line.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"cannot write the held-out ledger '{path}': {exc.strerror}") from exc
    try:
        _lock(fd)
        same = [
            e
            for e in read_ledger(path)
            if e.get("test_set_digest") == entry["test_set_digest"]
            and e.get("config_digest") == entry["config_digest"]
        ]
        written = {
            **to_json_value(entry),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "repeat": len(same) + 1,
        }
        os.write(fd, (json.dumps(written, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    except OSError as exc:
        raise InputError(f"cannot write the held-out ledger '{path}': {exc.strerror}") from exc
    finally:
        os.close(fd)  # closing releases the lock
    return written


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: O_APPEND alone keeps each line whole
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def history(path: Path, digest: str) -> dict[str, Any]:
    """The ledger's record of one test set, as the manifest's ``heldout_ledger`` holds it.

    Returns:
        test_set_digest, entries (oldest first), evaluations, configurations (distinct config
        digests) and repeated (config digests that scored this test set more than once).
    """
    entries = [e for e in read_ledger(path) if e.get("test_set_digest") == digest]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["config_digest"]] = counts.get(e["config_digest"], 0) + 1
    return {
        "test_set_digest": digest,
        "evaluations": len(entries),
        "configurations": len(counts),
        "repeated": sorted(k for k, v in counts.items() if v > 1),
        "entries": entries,
    }


def heldout_aucs(heldout: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """contour (and contour:dataset) -> model -> held-out AUC, from ``heldout.evaluate_heldout``."""
    out: dict[str, dict[str, float]] = {}
    for key, entry in heldout.items():
        scores = (entry.get("all") or {}).get("scores") or {}
        aucs = {m: (r.get("auc") or {}).get("auc") for m, r in scores.items()}
        out[key] = {m: round(float(a), 6) for m, a in aucs.items() if a is not None}
    return out


def record_heldout(run: TrainingRun, heldout: Mapping[str, Any]) -> dict[str, Any] | None:
    """Append a finished run's held-out evaluation to its ledger; the ledger's history of its test set.

    Args:
        run: the run (its config, radiomics parameters, split, cases and ledger path).
        heldout: ``heldout.evaluate_heldout`` of it.

    Returns:
        :func:`history` of the run's test set (this evaluation included), or None without a
        test split or a ledger.
    """
    cohort, plan = run.cohort, run.cohort.plan
    if run.ledger is None or len(plan.test) == 0:
        return None
    config = config_to_dict(run.config)
    weights = run.config.cnn.init_weights
    if weights:  # the starting weights by content, not by where they lie
        config["cnn"]["init_weights"] = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    digest = test_set_digest(
        (cohort.cases[i].case_id, cohort.cases[i].variants["exact"].image) for i in plan.test
    )
    entry = {
        "config_digest": config_digest(
            config, run.radiomics_parameters, (cohort.cases[i].case_id for i in plan.train)
        ),
        "test_set_digest": digest,
        "bundle_id": run.config.bundle_id,
        "n_test": len(plan.test),
        "aucs": heldout_aucs(heldout),
    }
    append_entry(run.ledger, entry)
    return history(run.ledger, digest)
