"""Cohort prediction: a cohort CSV in, a results CSV out, resumable, one row per case.

The CLI calls the cohort CSV MANIFEST.csv (``dlrpredictor predict MANIFEST.csv``); here it is the
cohort CSV, so as not to confuse it with a bundle's manifest.json.

How a run survives interruption: every finished case is journalled (``journal``) and a rerun
reuses the rows whose input fingerprint (``fingerprint``: image and mask bytes, clinical values,
segment, spacing, bundle content, options) is unchanged; the other cases are predicted again.
The results file itself is written only at the end, in the cohort CSV's order, to a temporary
name renamed into place, so it is never half-written.

Per-case failures never stop the cohort: expected errors (DLRError) give their message; a worker
process that dies is detected and the case it was running is reported in its own row (``pool``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import InputError
from ..base.interrupts import Interrupted, signal_of
from ..base.outputs import refuse_overwriting_inputs, refuse_unwritable_folder
from ..deep.heatmap import DEFAULT_HEATMAP, check_heatmap_kind
from ..evaluation.bootstrap import BootstrapSettings
from ..inference.predictor import load_predictor
from ..inputs.cohort_csv import read_cohort_csv
from .fingerprint import input_digest
from .journal import Journal, done_rows, journal_path, reuse_verdict
from .pool import run_pool, start_worker_server, worker_count
from .results_file import ResultsLock, check_results_path, write_failed
from .rows import (
    PredictJob,
    job_from_cohort_row,
    predict_cohort_row,
    result_columns,
    safe_row,
    write_csv_atomic,
)


@dataclass
class BatchSummary:
    """Counts of a finished batch.

    Attributes:
        n_skipped: cases whose previous row was reused (not predicted again).
        recomputed: why previous rows were not reused -> how many (``journal.reuse_verdict``).
    """

    n_cases: int
    n_ok: int
    n_error: int
    n_skipped: int
    out: Path
    recomputed: dict[str, int] = field(default_factory=dict)

    @property
    def n_recomputed(self) -> int:
        """Cases that had a previous row and were predicted again."""
        return sum(self.recomputed.values())

    def line(self) -> str:
        """One line for the terminal, e.g. ``...; 3 reused, 2 recomputed (2 inputs changed): out.csv``."""
        resumed = ""
        if self.n_skipped or self.recomputed:
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.recomputed.items()))
            resumed = f"; {self.n_skipped} reused, {self.n_recomputed} recomputed"
            resumed += f" ({why})" if why else ""
        return f"{self.n_ok} of {self.n_cases} cases predicted, {self.n_error} failed{resumed}: {self.out}"


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="case", file=sys.stderr, dynamic_ncols=True)


@dataclass
class _Run:
    """A batch run being prepared: the bundle, the cohort CSV rows and what is left to do."""

    pred: Any
    rows: list[Any]
    columns: list[str]
    out: Path
    done: dict[str, dict[str, Any]]
    todo: list[dict[str, Any]]
    digests: dict[str, str]
    recomputed: dict[str, int]
    lock: ResultsLock


def _warn_on_stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _refuse_overwriting(
    cohort_path: Path, rows: list[Any], bundle_folder: Path, outputs: dict[str, Path | None]
) -> None:
    """Refuse outputs that are the cohort CSV, an image or mask, or inside the bundle or a DICOM folder."""
    files: list[Path | None] = [Path(cohort_path)]
    folders: list[Path | None] = [bundle_folder]
    for r in rows:
        for p in (r.resolved_image, r.resolved_mask):
            (folders if p is not None and p.is_dir() else files).append(p)
    refuse_overwriting_inputs(outputs, files, folders)


def scene_heatmap_kind(heatmap_kind: str | None, scenes_dir: Path | None) -> str:
    """The heatmap kind of a run's scenes: ``--heatmap`` checked against ``--scenes``.

    The map is written only into the per-case scenes (the results CSV holds no heatmap), so a
    kind asked for without a scenes folder would be silently ignored: it is refused instead.

    Args:
        heatmap_kind: ``--heatmap`` (``deep.heatmap.HEATMAP_KINDS``), None when not given.
        scenes_dir: ``--scenes``, None when not given.

    Returns:
        The kind the scenes' heatmaps explain (the default when none was asked for).

    Raises:
        InputError: a kind without a scenes folder, or an unknown kind.
    """
    if heatmap_kind is None:
        return DEFAULT_HEATMAP
    if scenes_dir is None:
        raise InputError(
            f"--heatmap {heatmap_kind} needs --scenes DIR: the heatmap is written only into the "
            "per-case scenes, the results CSV holds none"
        )
    return check_heatmap_kind(heatmap_kind)


def _start_run(
    cohort_path: Path,
    out: Path,
    bundle_path: Path | None,
    stability: bool,
    warn: Callable[[str], None] | None,
    *,
    scenes_dir: Path | None = None,
) -> _Run:
    pred = load_predictor(bundle_path)  # verify the bundle once, before any work
    rows = read_cohort_csv(
        cohort_path,
        clinical_names=[v.name for v in pred.clinical_variables],
        **label_reading(pred),
        warn=warn or _warn_on_stderr,
    )
    out = Path(out)
    _refuse_overwriting(cohort_path, rows, pred.bundle.path, {"--out": out, "--scenes": scenes_dir})
    refuse_unwritable_folder("--scenes", scenes_dir)  # not found out case by case
    check_results_path(out)
    jobs = {r.case_id: job_from_cohort_row(r, pred.harmonisation_column) for r in rows}
    # Hashed in the driver, once per case (small files: about 0.1 ms a case, see FAILURES.md),
    # because the reuse decision is taken before any job is handed out.
    bundle = pred.bundle_digest
    digests = {cid: input_digest(job, bundle, stability=stability) for cid, job in jobs.items()}
    # Held from before reading what a previous run left until the results are written (_finish_run).
    lock = ResultsLock(out).acquire()
    try:
        previous = done_rows(out)
    except BaseException:
        lock.release()
        raise
    done: dict[str, dict[str, Any]] = {}
    recomputed: Counter[str] = Counter()
    for cid, job in jobs.items():
        if cid not in previous:
            continue
        why = reuse_verdict(previous[cid], pred.bundle_id, digests[cid])
        if why:
            recomputed[why] += 1
        else:
            # The label is no input of the prediction: a corrected label is taken from the manifest.
            done[cid] = {**previous[cid], "label": job["label"]}
    todo = [jobs[r.case_id] for r in rows if r.case_id not in done]
    return _Run(pred, rows, result_columns(pred), out, done, todo, digests, dict(recomputed), lock)


def _finish_run(
    run: _Run,
    execute: Callable[[list[dict[str, Any]], Callable[[dict[str, Any]], None]], None],
    show_progress: bool,
) -> BatchSummary:
    """Run the jobs left (journalled row by row), then write the results CSV in cohort CSV order.

    Raises:
        Interrupted: Ctrl-C or SIGTERM; it says how many cases were done (all kept in the journal).
        InputError: a journal or results write failed (disk full): the rows so far are kept.
    """
    try:
        return _journalled_run(run, execute, show_progress)
    finally:
        run.lock.release()


def _journalled_run(
    run: _Run,
    execute: Callable[[list[dict[str, Any]], Callable[[dict[str, Any]], None]], None],
    show_progress: bool,
) -> BatchSummary:
    try:
        journal = Journal(journal_path(run.out), run.columns)
    except OSError as exc:
        raise write_failed(run.out, exc) from exc
    bar = _progress_bar(len(run.rows), len(run.rows) - len(run.todo), show_progress)
    results: dict[str, dict[str, Any]] = dict(run.done)

    def on_row(row: dict[str, Any]) -> None:
        row["input_digest"] = run.digests[row["case_id"]]
        try:
            journal.write(row)
        except OSError as exc:
            raise write_failed(run.out, exc) from exc
        results[row["case_id"]] = row
        if bar is not None:
            bar.update(1)

    stopped: KeyboardInterrupt | None = None
    try:
        if run.todo:
            execute(run.todo, on_row)
    except KeyboardInterrupt as exc:
        stopped = exc
    finally:
        journal.close()
        if bar is not None:
            bar.close()
    if stopped is not None:
        # What the journal holds once closed: a signal inside on_row may land after the row was
        # written but before it was counted here.
        done = len(run.done) + journal.rows_added()
        raise Interrupted(signal_of(stopped), done, len(run.rows)) from None
    ordered = [results[r.case_id] for r in run.rows]
    try:
        write_csv_atomic(run.out, ordered, run.columns)
    except OSError as exc:
        raise write_failed(run.out, exc) from exc
    journal_path(run.out).unlink(missing_ok=True)
    n_ok = sum(1 for r in ordered if r.get("status") == "ok")
    n = len(run.rows)
    return BatchSummary(n, n_ok, n - n_ok, n - len(run.todo), run.out, run.recomputed)


def predict_cohort(
    cohort_path: Path,
    out: Path,
    bundle_path: Path | None = None,
    *,
    jobs: int | None = None,
    scenes_dir: Path | None = None,
    stability: bool = False,
    show_progress: bool = True,
    warn: Callable[[str], None] | None = None,
    scheduler: str | None = None,
    heatmap_kind: str | None = None,
) -> BatchSummary:
    """Predict every row of a cohort CSV into a results CSV (resuming a previous run).

    Args:
        cohort_path: cohort CSV, the CLI's MANIFEST.csv (see README: case_id, image, mask,
            optional columns).
        out: results CSV path.
        bundle_path: model bundle folder; None for the bundled default.
        jobs: worker processes, single-threaded, one per core (None: ``pool.default_jobs``);
            1 runs in a single worker process too, for crash isolation. More than the usable
            cores (or ``pool.MAX_JOBS``) is reduced to them, with a warning.
        scenes_dir: when given, one .mrb scene per case is written there.
        stability: also re-predict on eroded/dilated contours and report the spread.
        show_progress: draw a progress bar on stderr.
        warn: receives cohort CSV warnings (unknown columns); default: stderr.
        scheduler: a Dask scheduler address, or ``local:N``: the cases run there instead
            (``dask_runner``; ``jobs`` is then not used). None: the local pool.
        heatmap_kind: the score the scenes' heatmaps explain (``deep.heatmap.HEATMAP_KINDS``);
            needs ``scenes_dir``; None: the default. The results CSV is the same for every kind.

    Returns:
        Counts of the run.

    Raises:
        ManifestError: the cohort CSV itself is unusable (columns, duplicate ids).
        BundleError: the bundle fails verification.
        InputError: ``jobs`` below 1; ``out`` a folder or not writable; another run writing
            ``out``; a write failing during the run (disk full); ``heatmap_kind`` without
            ``scenes_dir`` (:func:`scene_heatmap_kind`).
        Interrupted: Ctrl-C or SIGTERM (the journal keeps every finished row).
        SchedulerError: the Dask scheduler is unreachable or lost (``dask_runner``).
    """
    kind = scene_heatmap_kind(heatmap_kind, scenes_dir)
    if scheduler:
        from .dask_runner import local_workers

        local_workers(scheduler)  # a malformed local:N is refused before any work
        run = _start_run(cohort_path, out, bundle_path, stability, warn, scenes_dir=scenes_dir)
        return _finish_on_scheduler(scheduler, run, stability, scenes_dir, show_progress, heatmap_kind=kind)
    jobs = worker_count(jobs, warn or _warn_on_stderr)
    start_worker_server(bundle_path)
    run = _start_run(cohort_path, out, bundle_path, stability, warn, scenes_dir=scenes_dir)

    def execute(todo: list[dict[str, Any]], on_row: Callable[[dict[str, Any]], None]) -> None:
        # One thread per worker: --jobs N uses N cores, and N workers scale N-fold. (In one
        # process -- GUI, console -- the network instead runs beside pyradiomics on a 2nd core.)
        init = (
            str(bundle_path) if bundle_path else None,
            1,
            str(scenes_dir) if scenes_dir else None,
            stability,
            kind,
        )
        run_pool(todo, min(jobs, len(todo)), init, on_row, bundle_id=run.pred.bundle_id)

    return _finish_run(run, execute, show_progress)


def _finish_on_scheduler(
    scheduler: str,
    run: _Run,
    stability: bool,
    scenes_dir: Path | None,
    show_progress: bool,
    *,
    heatmap_kind: str = DEFAULT_HEATMAP,
) -> BatchSummary:
    """:func:`_finish_run` with the cases run on a Dask cluster (``dask_runner``)."""
    from . import dask_runner

    def execute(todo: list[dict[str, Any]], on_row: Callable[[dict[str, Any]], None]) -> None:
        dask_runner.run_on_scheduler(
            scheduler,
            run.pred,
            todo,
            on_row,
            stability=stability,
            scenes_dir=scenes_dir,
            heatmap_kind=heatmap_kind,
        )

    return _finish_run(run, execute, show_progress)


def predict_cohort_in_process(
    cohort_path: Path,
    out: Path,
    bundle_path: Path | None = None,
    *,
    stability: bool = False,
    predict_job: PredictJob | None = None,
    show_progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Like :func:`predict_cohort`, one case after the other in this process (e.g. inside Slicer).

    Same results CSV, journal and resume rules; no worker process, so a crash in a library stops
    the run (rerun to resume).

    Args:
        cohort_path: cohort CSV.
        out: results CSV path.
        bundle_path: model bundle folder; None for the bundled default.
        stability: also re-predict on eroded/dilated contours (passed to the default predict_job;
            also decides which previous rows can be reused).
        predict_job: ``(predictor, job) -> CasePrediction`` for one case; default:
            :func:`rows.predict_cohort_row`. Its DLRError becomes the case's error row.
        show_progress: draw a progress bar on stderr.
        warn: receives cohort CSV warnings (unknown columns); default: stderr.

    Returns:
        Counts of the run.

    Raises:
        ManifestError: the cohort CSV itself is unusable. BundleError: the bundle fails verification.
    """
    run = _start_run(cohort_path, out, bundle_path, stability, warn)

    def default_job(pred: Any, job: dict[str, Any]) -> Any:
        return predict_cohort_row(pred, job, stability=stability)

    def execute(todo: list[dict[str, Any]], on_row: Callable[[dict[str, Any]], None]) -> None:
        for job in todo:
            on_row(safe_row(run.pred, job, predict_job or default_job))

    return _finish_run(run, execute, show_progress)


def label_reading(pred: Any) -> dict[str, Any]:
    """How a cohort CSV's labels are read for this bundle: 0/1 by its two classes, or (K-class)
    the class names as written, checked by the K-class report."""
    if pred.classes is not None:
        return {"code_labels": False}
    return {"label_values": {pred.positive_class: 1, pred.negative_class: 0}}


def _evaluate_multiclass(
    pred: Any,
    cohort_path: Path,
    predictions: Path,
    report_dir: Path,
    bundle_path: Path | None,
    *,
    jobs: int | None,
    options: list[str | None],
    rows: list[Any],
    ledger: Path | None,
) -> Path:
    """``evaluate`` with a K-class bundle: predict, then the K-class report at the frozen rule; the
    scoring goes to the held-out ledger as a binary evaluation's does (its macro AUC)."""
    import csv
    import json

    from ..base.errors import InputError
    from ..evaluation.multiclass_csv import report_from_multiclass_csv
    from .evaluation_ledger import record_evaluation

    if any(o is not None for o in options):
        raise InputError(
            "--group-column, --cluster-column and --reader-column are for binary bundles; for a K-class "
            "bundle run `dlrpredictor report PREDICTIONS.csv --classes ...` with --cluster-column"
        )
    predict_cohort(cohort_path, predictions, bundle_path, jobs=jobs, show_progress=True)
    cut = pred.pipeline.class_cutoffs
    path = report_from_multiclass_csv(
        predictions,
        pred.classes,
        report_dir,
        cutoffs=None if cut is None else dict(zip(pred.classes, cut)),
        title=f"Evaluation of {pred.bundle_id} on {Path(cohort_path).name}",
    )
    for sig in ("rad", "dl") if pred.pipeline.uses_cnn else ():  # a DLR bundle: its members beside it
        report_from_multiclass_csv(
            predictions,
            pred.classes,
            report_dir.with_name(f"{report_dir.name}_{sig}"),
            cutoffs=None if cut is None else dict(zip(pred.classes, cut)),
            title=f"Evaluation of {pred.bundle_id} on {Path(cohort_path).name}: {sig.upper()} signature",
            prefix=f"score_{sig}:",
        )
    with open(predictions, newline="", encoding="utf-8") as fh:
        ids = [r["case_id"] for r in csv.DictReader(fh) if r.get("status") == "ok" and r.get("label")]
    macro = json.loads((path / "metrics.json").read_text(encoding="utf-8"))["macro_auc"]
    aucs = {} if macro is None else {"macro_auc": round(float(macro), 6)}
    record_evaluation(pred, rows, predictions, path, ledger, warn=_warn_on_stderr, scored=(ids, aucs))
    return path


def evaluate_cohort(
    cohort_path: Path,
    report_dir: Path,
    bundle_path: Path | None = None,
    *,
    jobs: int | None = None,
    group_column: str | None = None,
    cluster_column: str | None = None,
    reader_column: str | None = None,
    bootstrap: BootstrapSettings | None = None,
    ledger: Path | None = None,
) -> Path:
    """Predict a labelled cohort CSV and write the statistics report at the bundle's frozen cutoffs.

    Each row's ``probability`` is scored at the cutoff of the model that answered it (the results
    CSV's ``cutoff`` column: the combined model's where clinical values were given, the image-only
    model's elsewhere), as its ``predicted_label`` was; each signature score at its own cutoff.
    ``group_column`` names a cohort CSV column (scanner, site) for per-group AUCs.
    ``cluster_column`` names the cohort CSV column of patient ids (e.g. ``patient_id``) for the
    clustered statistics (ids used for grouping only, never written); ``reader_column`` the
    column of the readers' BI-RADS for the reader comparison; ``bootstrap`` the resamples and
    seed of the bootstrap intervals; ``ledger`` the held-out ledger this evaluation is appended
    to (``evaluation_ledger.py``: also without it when the cohort is the bundle's own test set).

    Returns:
        The report folder.

    Raises:
        InputError: ``group_column`` is not a column of the cohort CSV.
    """
    from ..evaluation import report_csv

    pred = load_predictor(bundle_path)
    report_dir = Path(report_dir)
    predictions = report_dir.with_name(report_dir.name + "_predictions.csv")
    # only its paths, before any work; its labels read as predict_cohort reads them
    rows = read_cohort_csv(cohort_path, clinical_names=None, **label_reading(pred))
    _refuse_overwriting(cohort_path, rows, pred.bundle.path, {"--report": report_dir, "--out": predictions})
    if pred.classes is not None:
        options = [group_column, cluster_column, reader_column]
        out = (pred, cohort_path, predictions, report_dir, bundle_path)
        return _evaluate_multiclass(*out, jobs=jobs, options=options, rows=rows, ledger=ledger)
    by_case = None if group_column is None else _group_by_case(rows, group_column)
    stats_columns = {"--cluster-column": cluster_column, "--reader-column": reader_column}
    manifest_values = _manifest_values(rows, stats_columns)
    predict_cohort(cohort_path, predictions, bundle_path, jobs=jobs, show_progress=True)
    score_columns = ["probability", *[f"score_{s}" for s in pred.signature_names]]
    # No single cutoff for 'probability': report_csv takes each row's own from the 'cutoff' column.
    cutoffs = {f"score_{s}": c for s, c in pred.signature_cutoffs.items()}
    path = report_csv.report_from_predictions_csv(
        predictions,
        "label",
        score_columns,
        report_dir,
        cutoffs=cutoffs,
        title=f"Evaluation of {pred.bundle_id} on {Path(cohort_path).name}",
        skip_empty_scores=True,  # e.g. no combined score for a cohort without clinical data
        group_column=group_column,
        group_by_case=by_case,
        cluster_column=cluster_column,
        reader_column=reader_column,
        values_by_case=manifest_values,
        bootstrap=bootstrap,
    )
    from .evaluation_ledger import record_evaluation

    record_evaluation(pred, rows, predictions, report_dir, ledger, warn=_warn_on_stderr)
    return path


def _manifest_values(rows: list[Any], options: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """column -> case_id -> value for the statistics' manifest columns (patient ids, BI-RADS).

    The results CSV holds neither: they are joined to the predictions by case id in memory only.
    """
    from ..base.errors import InputError

    out: dict[str, dict[str, str]] = {}
    for option, column in options.items():
        if column is None:
            continue
        if column == "patient_id":  # a reserved column, read into CohortRow.patient_id
            out[column] = {r.case_id: r.patient_id or "" for r in rows}
        elif any(column in r.extra or column in r.clinical for r in rows):
            out[column] = {r.case_id: r.extra.get(column) or r.clinical.get(column) or "" for r in rows}
        else:
            raise InputError(f"{option}: the cohort CSV has no column '{column}'")
    return out


def _group_by_case(rows: list[Any], column: str) -> dict[str, str]:
    """case_id -> the value of a cohort CSV column (read before any prediction is made)."""
    return _manifest_values(rows, {"--group-column": column})[column]
