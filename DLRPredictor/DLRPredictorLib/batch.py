"""Cohort prediction: a manifest CSV in, a results CSV out, resumable, one row per case.

How a run survives interruption: every finished case is appended as one complete CSV line to a
journal (`RESULTS.csv.journal`), flushed and fsynced. A rerun reads the journal (a torn last line
is ignored) and the previous results file, skips the cases already done with status `ok`, and
retries the others. The results file itself is written only at the end, in manifest order, to a
temporary name renamed into place, so it is never half-written.

Per-case failures never stop the cohort: expected errors (DLRError) give their message; a worker
process that dies is detected and the case it was running is reported in its own row.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .errors import DLRError, ManifestError

BASE_COLUMNS = [
    "case_id",
    "status",
    "error",
    "probability",
    "predicted_label",
    "cutoff",
    "model_used",
    "bundle_id",
]
EXTRA_COLUMNS = [
    "total_points",
    "out_of_distribution",
    "ood_distance",
    "stability_min",
    "stability_max",
    "stability_label_changes",
    "warnings",
]


@dataclass
class BatchSummary:
    """Counts of a finished batch."""

    n_cases: int
    n_ok: int
    n_error: int
    n_skipped: int
    out: Path

    def line(self) -> str:
        """One human-readable line for the terminal."""
        resumed = f", {self.n_skipped} already done" if self.n_skipped else ""
        return f"{self.n_ok} of {self.n_cases} cases predicted, {self.n_error} failed{resumed}: {self.out}"


def _journal_path(out: Path) -> Path:
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


def _done_rows(out: Path) -> dict[str, dict[str, str]]:
    done: dict[str, dict[str, str]] = {}
    for path in (out, _journal_path(out)):
        for row in _read_rows(path):
            done[row["case_id"]] = row  # the journal, read last, wins
    return done


class _Journal:
    """Append-only CSV of finished rows; each row flushed and fsynced before the next."""

    def __init__(self, path: Path, columns: list[str]) -> None:
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
        self.file = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
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
        self.writer.writerow(row)
        self._sync()

    def close(self) -> None:
        self.file.close()


def write_csv_atomic(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write a CSV to a temporary sibling and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --- worker side -------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(bundle_path: str | None, threads: int, scenes_dir: str | None, stability: bool) -> None:
    from . import predictor

    predictor.set_threads(threads)
    _WORKER["predictor"] = predictor.load_predictor(bundle_path)
    _WORKER["scenes_dir"] = Path(scenes_dir) if scenes_dir else None
    _WORKER["stability"] = stability


def _predict_row(job: dict[str, Any]) -> dict[str, Any]:
    """Predict one manifest row; never raises for a per-case problem."""
    from . import predictor

    pred = _WORKER["predictor"]
    try:
        result = predictor.predict_manifest_row(
            pred, job, stability=_WORKER["stability"], scenes_dir=_WORKER["scenes_dir"]
        )
        return predictor.result_row(pred, job["case_id"], result, job.get("label"))
    except DLRError as exc:
        return error_row(job, str(exc), pred.bundle_id)
    except Exception as exc:  # a bug must not stop the cohort; its row says what happened
        return error_row(job, f"internal error ({type(exc).__name__}: {exc}); please report it", pred.bundle_id)


def error_row(job: dict[str, Any], message: str, bundle_id: str = "") -> dict[str, Any]:
    """A results row for a failed case: one line, no traceback."""
    return {
        "case_id": job["case_id"],
        "status": "error",
        "error": " ".join(str(message).split()),
        "bundle_id": bundle_id,
        "label": job.get("label", ""),
    }


# --- driver side --------------------------------------------------------------------------------


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="case", file=sys.stderr, dynamic_ncols=True)


def _run_pool(
    jobs: list[dict[str, Any]],
    n_workers: int,
    init_args: tuple[Any, ...],
    on_row: Callable[[dict[str, Any]], None],
    bundle_id: str,
) -> None:
    """Run jobs in worker processes, at most n_workers in flight, surviving worker crashes."""
    pending: Iterator[dict[str, Any]] = iter(jobs)
    retry: list[dict[str, Any]] = []
    ctx = get_context("spawn")  # no fork of a process holding torch / VTK threads
    while True:
        pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=init_args)
        in_flight: dict[Future, dict[str, Any]] = {}
        broken = False
        try:
            while True:
                while len(in_flight) < n_workers:
                    job = retry.pop(0) if retry else next(pending, None)
                    if job is None:
                        break
                    in_flight[pool.submit(_predict_row, job)] = job
                if not in_flight:
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = in_flight.pop(fut)
                    try:
                        on_row(fut.result())
                    except BrokenProcessPool:
                        broken = True
                        if job.get("_crashed"):
                            on_row(error_row(job, "the worker process crashed while predicting this case "
                                                  "(out of memory or a library fault); check the image", bundle_id))
                        else:
                            retry.append({**job, "_crashed": True})
                if broken:
                    # Cases that were in flight with the crashed one run again, alone.
                    for job in in_flight.values():
                        retry.append(job)
                    in_flight.clear()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if broken:
            n_workers = 1 if retry and any(j.get("_crashed") for j in retry) else n_workers


def predict_manifest(
    manifest_path: Path,
    out: Path,
    bundle_path: Path | None = None,
    jobs: int = 1,
    scenes_dir: Path | None = None,
    stability: bool = False,
    show_progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Predict every row of a manifest into a results CSV (resuming a previous run).

    Args:
        manifest_path: cohort CSV (see README: case_id, image, mask, optional columns).
        out: results CSV path.
        bundle_path: model bundle folder; None for the bundled default.
        jobs: worker processes (1 runs in a single worker process too, for crash isolation).
        scenes_dir: when given, one .mrb scene per case is written there.
        stability: also re-predict on eroded/dilated contours and report the spread.
        show_progress: draw a progress bar on stderr.
        warn: receives manifest warnings (unknown columns); default: stderr.

    Returns:
        Counts of the run.

    Raises:
        ManifestError: the manifest itself is unusable (columns, duplicate ids).
        BundleError: the bundle fails verification.
    """
    from . import manifest as manifest_mod
    from . import predictor

    if jobs < 1:
        raise ManifestError("--jobs must be at least 1")
    pred = predictor.load_predictor(bundle_path)  # verify the bundle once, before any work
    rows = manifest_mod.read_manifest(
        manifest_path,
        clinical_names=[v.name for v in pred.clinical_variables],
        label_values={pred.positive_class: 1, pred.negative_class: 0},
        warn=warn or (lambda line: print(f"warning: {line}", file=sys.stderr)),
    )
    columns = predictor.result_columns(pred)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {cid: r for cid, r in _done_rows(out).items() if r.get("status") == "ok"}
    todo = [predictor.job_from_manifest_row(r) for r in rows if r.case_id not in done]
    journal = _Journal(_journal_path(out), columns)
    bar = _progress_bar(len(rows), len(rows) - len(todo), show_progress)
    results: dict[str, dict[str, Any]] = dict(done)

    def on_row(row: dict[str, Any]) -> None:
        journal.write(row)
        results[row["case_id"]] = row
        if bar is not None:
            bar.update(1)

    try:
        if todo:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            init = (str(bundle_path) if bundle_path else None, threads,
                    str(scenes_dir) if scenes_dir else None, stability)
            _run_pool(todo, min(jobs, len(todo)), init, on_row, pred.bundle_id)
    finally:
        journal.close()
        if bar is not None:
            bar.close()
    ordered = [results[r.case_id] for r in rows]
    write_csv_atomic(out, ordered, columns)
    _journal_path(out).unlink(missing_ok=True)
    n_ok = sum(1 for r in ordered if r.get("status") == "ok")
    return BatchSummary(len(rows), n_ok, len(rows) - n_ok, len(rows) - len(todo), out)


def evaluate_manifest(
    manifest_path: Path, report_dir: Path, bundle_path: Path | None = None, jobs: int = 1
) -> Path:
    """Predict a labelled manifest and write the statistics report at the bundle's frozen cutoff.

    Returns:
        The report folder.
    """
    from . import predictor, report

    pred = predictor.load_predictor(bundle_path)
    report_dir = Path(report_dir)
    predictions = report_dir.with_name(report_dir.name + "_predictions.csv")
    predict_manifest(manifest_path, predictions, bundle_path, jobs=jobs, show_progress=True)
    score_columns = ["probability", *[f"score_{s}" for s in pred.signature_names]]
    cutoffs = {"probability": pred.cutoff, **{f"score_{s}": c for s, c in pred.signature_cutoffs.items()}}
    return report.report_from_predictions_csv(
        predictions, "label", score_columns, report_dir, cutoffs=cutoffs,
        title=f"Evaluation of {pred.bundle_id} on {Path(manifest_path).name}",
    )
