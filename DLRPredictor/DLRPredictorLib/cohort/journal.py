"""The journal that makes a cohort run resumable.

Every finished case is appended as one complete CSV line to a journal (``RESULTS.csv.journal``),
flushed and fsynced. A rerun reads the journal (a torn last line is ignored) and the previous
results file, and reuses a case's row only when it has status ``ok`` and the input fingerprint of
the case now (``fingerprint``: files, clinical values, bundle content, options); the others are
predicted again.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any


def journal_path(out: Path) -> Path:
    """The journal of a results CSV: ``RESULTS.csv.journal`` next to it."""
    return out.with_name(out.name + ".journal")


def _read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a results CSV or journal; a torn last line (no newline) is dropped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if r.get("case_id") and r.get("status") in ("ok", "error")]


def done_rows(out: Path) -> dict[str, dict[str, str]]:
    """The finished rows of a previous run by case id: the results CSV, then its journal."""
    done: dict[str, dict[str, str]] = {}
    for path in (out, journal_path(out)):
        for row in _read_rows(path):
            done[row["case_id"]] = row  # the journal, read last, wins
    return done


#: Why a previous row of a case was not reused (the summary line counts each reason).
FAILED_BEFORE = "failed before"
OTHER_BUNDLE = "other bundle"
NO_DIGEST = "no input digest"
INPUTS_CHANGED = "inputs changed"


def reuse_verdict(row: dict[str, str], bundle_id: str, digest: str) -> str:
    """Whether a previous row answers this run: "" when it does, else why not.

    A row is reused only when it has status ok, this bundle's id and the input fingerprint
    computed now (``fingerprint.input_digest``: image and mask bytes, clinical values, segment,
    spacing, the bundle's content and the stability option).

    Args:
        row: the previous row (results CSV or journal).
        bundle_id: this run's bundle id (id@version).
        digest: this case's input fingerprint now.

    Returns:
        "" (reuse), or one of FAILED_BEFORE, OTHER_BUNDLE, NO_DIGEST (a row written before
        fingerprints existed), INPUTS_CHANGED.
    """
    if row.get("status") != "ok":
        return FAILED_BEFORE  # an error is retried
    if row.get("bundle_id") != bundle_id:
        return OTHER_BUNDLE
    if not row.get("input_digest"):
        return NO_DIGEST
    if row["input_digest"] != digest:
        return INPUTS_CHANGED
    return ""


class Journal:
    """Append-only CSV of finished rows; each row flushed and fsynced before the next."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        """Open (or start) the journal at ``path``; one with other columns is moved to ``.old``."""
        self.columns = columns
        existing = path.exists() and path.stat().st_size > 0
        if existing:
            header = path.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
            if header != columns:
                # Columns changed (other bundle): keep what it holds by moving it aside.
                path.replace(path.with_name(path.name + ".old"))
                existing = False
            else:
                self._truncate_torn_line(path)
        self.path = path
        self._records_at_open = _count_records(path) if existing else 1  # the header
        self.file = open(path, "a", encoding="utf-8", newline="")  # closed in close()
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="ignore")
        if not existing:
            self.writer.writeheader()
            self._sync()

    @staticmethod
    def _truncate_torn_line(path: Path) -> None:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def _sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def write(self, row: dict[str, Any]) -> None:
        """Append one finished row, on disk before this returns."""
        self.writer.writerow(row)
        self._sync()

    def close(self) -> None:
        """Close the file (the journal stays until the results CSV is written)."""
        self.file.close()

    def rows_added(self) -> int:
        """Rows this journal object put on disk, counted in the file after :meth:`close`.

        Counted from the file, not from the calls to :meth:`write`: a signal that lands inside a
        write (between the row reaching the file and the caller's bookkeeping) must not make a
        run report fewer finished cases than the journal holds.
        """
        return _count_records(self.path) - self._records_at_open


def _count_records(path: Path) -> int:
    """CSV records (header included) in a journal file; a torn last line does not count."""
    data = path.read_text(encoding="utf-8")
    complete = data[: data.rfind("\n") + 1]
    return sum(1 for _ in csv.reader(io.StringIO(complete, newline="")))
