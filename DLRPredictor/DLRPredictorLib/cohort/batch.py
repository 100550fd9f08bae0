"""Cohort prediction: a manifest CSV in, a results CSV out, resumable, one row per case.

How a run survives interruption: every finished case is appended as one complete CSV line to a
journal (`RESULTS.csv.journal`), flushed and fsynced. A rerun reads the journal (a torn last line
is ignored) and the previous results file, skips the cases already done with status `ok` by the
same bundle (and with stability columns when asked), and retries the others. The results file
itself is written only at the end, in manifest order, to a temporary name renamed into place, so
it is never half-written.

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

from ..base.errors import DLRError, ManifestError

#: One case: ``(predictor, job) -> CasePrediction``; raises DLRError for a per-case problem.
PredictJob = Callable[[Any, dict[str, Any]], Any]

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


def _reusable(row: dict[str, str], bundle_id: str, stability: bool) -> bool:
    """Whether a previous row answers this run: same bundle, status ok, stability when asked."""
    if row.get("status") != "ok" or row.get("bundle_id") != bundle_id:
        return False  # an error is retried; another bundle's answer is not this bundle's
    return not stability or bool(row.get("stability_min"))


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
    from ..inference import predictor

    predictor.set_threads(threads)
    _WORKER["predictor"] = predictor.load_predictor(bundle_path)
    # One thread per worker means the workers already fill the cores: no second branch thread.
    _WORKER["predictor"].concurrent_branches = threads > 1
    _WORKER["scenes_dir"] = Path(scenes_dir) if scenes_dir else None
    _WORKER["stability"] = stability


def _predict_row(job: dict[str, Any]) -> dict[str, Any]:
    """Predict one manifest row in a worker process; never raises for a per-case problem."""
    from ..inference import predictor

    def predict_job(pred: Any, j: dict[str, Any]) -> Any:
        return predictor.predict_manifest_row(
            pred, j, stability=_WORKER["stability"], scenes_dir=_WORKER["scenes_dir"]
        )

    return _safe_row(_WORKER["predictor"], job, predict_job)


def _safe_row(pred: Any, job: dict[str, Any], predict_job: PredictJob) -> dict[str, Any]:
    """The results row of one case: its prediction, or its error as one line."""
    from ..inference import predictor

    try:
        result = predict_job(pred, job)
        return predictor.result_row(pred, job["case_id"], result, job.get("label"))
    except DLRError as exc:
        return error_row(job, str(exc), pred.bundle_id)
    except Exception as exc:  # a bug must not stop the cohort; its row says what happened
        message = f"internal error ({type(exc).__name__}: {exc}); please report it"
        return error_row(job, message, pred.bundle_id)


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


CRASH_MESSAGE = (
    "the worker process crashed while predicting this case (out of memory or a library fault); "
    "check the image"
)


#: Modules the fork server imports once; every worker forked from it starts with them loaded
#: (and shares their pages) instead of importing pyradiomics and loading the bundle again.
WORKER_PRELOAD = [
    "radiomics.featureextractor",
    "DLRPredictorLib.inference.predictor",
    "DLRPredictorLib.inference.pipeline",
    "DLRPredictorLib.deep.deep_model",
    "DLRPredictorLib.features.radiomics",
    "DLRPredictorLib.cohort.batch",
    # Last: loads the batch's bundle into the server and freezes the GC (see its docstring).
    "DLRPredictorLib.cohort.worker_server",
]


def worker_context() -> Any:
    """The multiprocessing context of the batch workers.

    Linux: a fork server that has imported :data:`WORKER_PRELOAD`. It never runs a prediction,
    so it holds no BLAS or VTK threads when it forks: forking it is safe, and each worker
    starts in milliseconds with pyradiomics imported and the bundle loaded. Elsewhere: spawn
    (a fresh interpreter).
    """
    if sys.platform.startswith("linux"):
        ctx = get_context("forkserver")
        ctx.set_forkserver_preload(WORKER_PRELOAD)
        return ctx
    return get_context("spawn")


def start_worker_server(bundle_path: Path | None = None) -> None:
    """Start the fork server now, so that its imports overlap the driver's own start.

    Args:
        bundle_path: the bundle the workers will use (None: the bundled default). A server
            started here loads it once for all its workers (``worker_server``); a server already
            running in this process (an earlier batch) is reused as it is.
    """
    if sys.platform.startswith("linux"):
        from multiprocessing import forkserver

        from .worker_server import BUNDLE_ENV, DEFAULT_BUNDLE

        worker_context()
        path = str(Path(bundle_path).resolve()) if bundle_path else DEFAULT_BUNDLE
        # The server inherits the environment when it is spawned; the variable is set only for
        # that moment, so nothing else started by this process sees it.
        previous = os.environ.get(BUNDLE_ENV)
        os.environ[BUNDLE_ENV] = path
        try:
            forkserver.ensure_running()
        finally:
            if previous is None:
                os.environ.pop(BUNDLE_ENV, None)
            else:
                os.environ[BUNDLE_ENV] = previous


def _run_pool(
    jobs: list[dict[str, Any]],
    n_workers: int,
    init_args: tuple[Any, ...],
    on_row: Callable[[dict[str, Any]], None],
    *,
    bundle_id: str,
    worker: Callable[[dict[str, Any]], dict[str, Any]] = _predict_row,
) -> None:
    """Run jobs in worker processes, at most n_workers in flight, surviving worker crashes.

    When a worker dies, every case it may have been running is run again alone in a fresh pool;
    a case whose worker dies a second time gets an error row (CRASH_MESSAGE).

    Args:
        jobs: job descriptions (see ``predictor.job_from_manifest_row``).
        n_workers: worker processes.
        init_args: arguments of ``_init_worker`` (bundle path, threads, scenes folder, stability).
        on_row: receives each finished results row, in completion order.
        bundle_id: written into the row of a case whose worker died.
        worker: the picklable top-level function run on each job in a worker (tests inject one).
    """
    pending: Iterator[dict[str, Any]] = iter(jobs)
    retry: list[dict[str, Any]] = []
    ctx = worker_context()
    while True:
        pool = ProcessPoolExecutor(
            max_workers=n_workers, mp_context=ctx, initializer=_init_worker, initargs=init_args
        )
        in_flight: dict[Future, dict[str, Any]] = {}
        broken = False
        # Two jobs queued per worker, so a worker never waits for the driver's journal write
        # between cases. After a crash, one job at a time: the crash is then pinned on its case.
        depth = 2 * n_workers if not any(j.get("_crashed") for j in retry) else 1
        try:
            while True:
                while len(in_flight) < depth:
                    job = retry.pop(0) if retry else next(pending, None)
                    if job is None:
                        break
                    in_flight[pool.submit(worker, job)] = job
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
                            on_row(error_row(job, CRASH_MESSAGE, bundle_id))
                        else:
                            retry.append({**job, "_crashed": True})
                if broken:
                    # Cases that were in flight with the crashed one run again, alone.
                    retry.extend(in_flight.values())
                    in_flight.clear()
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if broken and any(j.get("_crashed") for j in retry):
            n_workers = 1


@dataclass
class _Run:
    """A batch run being prepared: the bundle, the manifest rows and what is left to do."""

    pred: Any
    rows: list[Any]
    columns: list[str]
    out: Path
    done: dict[str, dict[str, str]]
    todo: list[dict[str, Any]]


def _start_run(
    manifest_path: Path,
    out: Path,
    bundle_path: Path | None,
    stability: bool,
    warn: Callable[[str], None] | None,
) -> _Run:
    from ..inference import predictor
    from ..inputs import cohort_csv as manifest_mod

    pred = predictor.load_predictor(bundle_path)  # verify the bundle once, before any work
    rows = manifest_mod.read_manifest(
        manifest_path,
        clinical_names=[v.name for v in pred.clinical_variables],
        label_values={pred.positive_class: 1, pred.negative_class: 0},
        warn=warn or (lambda line: print(f"warning: {line}", file=sys.stderr)),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {cid: r for cid, r in _done_rows(out).items() if _reusable(r, pred.bundle_id, stability)}
    todo = [predictor.job_from_manifest_row(r) for r in rows if r.case_id not in done]
    return _Run(pred, rows, predictor.result_columns(pred), out, done, todo)


def _finish_run(
    run: _Run,
    execute: Callable[[list[dict[str, Any]], Callable[[dict[str, Any]], None]], None],
    show_progress: bool,
) -> BatchSummary:
    """Run the jobs left (journalled row by row), then write the results CSV in manifest order."""
    journal = _Journal(_journal_path(run.out), run.columns)
    bar = _progress_bar(len(run.rows), len(run.rows) - len(run.todo), show_progress)
    results: dict[str, dict[str, Any]] = dict(run.done)

    def on_row(row: dict[str, Any]) -> None:
        journal.write(row)
        results[row["case_id"]] = row
        if bar is not None:
            bar.update(1)

    try:
        if run.todo:
            execute(run.todo, on_row)
    finally:
        journal.close()
        if bar is not None:
            bar.close()
    ordered = [results[r.case_id] for r in run.rows]
    write_csv_atomic(run.out, ordered, run.columns)
    _journal_path(run.out).unlink(missing_ok=True)
    n_ok = sum(1 for r in ordered if r.get("status") == "ok")
    n = len(run.rows)
    return BatchSummary(n, n_ok, n - n_ok, n - len(run.todo), run.out)


def default_jobs() -> int:
    """Worker processes when none are asked for: one per core, at most 4 (about 0.5 GB each)."""
    return max(1, min(os.cpu_count() or 1, 4))


def predict_manifest(
    manifest_path: Path,
    out: Path,
    bundle_path: Path | None = None,
    *,
    jobs: int | None = None,
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
        jobs: worker processes, single-threaded, one per core (None: :func:`default_jobs`);
            1 runs in a single worker process too, for crash isolation.
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
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ManifestError("--jobs must be at least 1")
    start_worker_server(bundle_path)
    run = _start_run(manifest_path, out, bundle_path, stability, warn)

    def execute(todo: list[dict[str, Any]], on_row: Callable[[dict[str, Any]], None]) -> None:
        # One thread per worker: --jobs N uses N cores, and N workers scale N-fold. (In one
        # process -- GUI, console -- the network instead runs beside pyradiomics on a 2nd core.)
        init = (
            str(bundle_path) if bundle_path else None,
            1,
            str(scenes_dir) if scenes_dir else None,
            stability,
        )
        _run_pool(todo, min(jobs, len(todo)), init, on_row, bundle_id=run.pred.bundle_id)

    return _finish_run(run, execute, show_progress)


def predict_manifest_in_process(
    manifest_path: Path,
    out: Path,
    bundle_path: Path | None = None,
    *,
    stability: bool = False,
    predict_job: PredictJob | None = None,
    show_progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Like :func:`predict_manifest`, one case after the other in this process (e.g. inside Slicer).

    Same results CSV, journal and resume rules; no worker process, so a crash in a library stops
    the run (rerun to resume).

    Args:
        manifest_path: cohort CSV.
        out: results CSV path.
        bundle_path: model bundle folder; None for the bundled default.
        stability: also re-predict on eroded/dilated contours (passed to the default predict_job;
            also decides which previous rows can be reused).
        predict_job: ``(predictor, job) -> CasePrediction`` for one case; default:
            ``predictor.predict_manifest_row``. Its DLRError becomes the case's error row.
        show_progress: draw a progress bar on stderr.
        warn: receives manifest warnings (unknown columns); default: stderr.

    Returns:
        Counts of the run.

    Raises:
        ManifestError: the manifest itself is unusable. BundleError: the bundle fails verification.
    """
    from ..inference import predictor

    run = _start_run(manifest_path, out, bundle_path, stability, warn)

    def default_job(pred: Any, job: dict[str, Any]) -> Any:
        return predictor.predict_manifest_row(pred, job, stability=stability)

    def execute(todo: list[dict[str, Any]], on_row: Callable[[dict[str, Any]], None]) -> None:
        for job in todo:
            on_row(_safe_row(run.pred, job, predict_job or default_job))

    return _finish_run(run, execute, show_progress)


def evaluate_manifest(
    manifest_path: Path, report_dir: Path, bundle_path: Path | None = None, *, jobs: int | None = None
) -> Path:
    """Predict a labelled manifest and write the statistics report at the bundle's frozen cutoff.

    Returns:
        The report folder.
    """
    from ..evaluation import report_csv
    from ..inference import predictor

    pred = predictor.load_predictor(bundle_path)
    report_dir = Path(report_dir)
    predictions = report_dir.with_name(report_dir.name + "_predictions.csv")
    predict_manifest(manifest_path, predictions, bundle_path, jobs=jobs, show_progress=True)
    score_columns = ["probability", *[f"score_{s}" for s in pred.signature_names]]
    cutoffs = {"probability": pred.cutoff, **{f"score_{s}": c for s, c in pred.signature_cutoffs.items()}}
    return report_csv.report_from_predictions_csv(
        predictions,
        "label",
        score_columns,
        report_dir,
        cutoffs=cutoffs,
        title=f"Evaluation of {pred.bundle_id} on {Path(manifest_path).name}",
        skip_empty_scores=True,  # e.g. no combined score for a cohort without clinical data
    )
