"""The worker processes of a cohort run: a fork server, a process pool that survives crashes.

On Linux the workers are forked from a fork server that has imported pyradiomics and loaded the
bundle once (``worker_server``); elsewhere they are spawned. Each worker runs one case at a time,
single-threaded. A worker process that dies (a library fault, out of memory) is detected and the
case it was running is reported in its own row; the other cases go on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .rows import error_row, predict_cohort_row, safe_row

# --- worker side -------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(bundle_path: str | None, threads: int, scenes_dir: str | None, stability: bool) -> None:
    """Load the bundle once per worker process (from the fork server's cache on Linux)."""
    from ..inference import predictor

    predictor.set_threads(threads)
    _WORKER["predictor"] = predictor.load_predictor(bundle_path)
    # One thread per worker means the workers already fill the cores: no second branch thread.
    _WORKER["predictor"].concurrent_branches = threads > 1
    _WORKER["scenes_dir"] = Path(scenes_dir) if scenes_dir else None
    _WORKER["stability"] = stability


def _predict_row(job: dict[str, Any]) -> dict[str, Any]:
    """Predict one cohort case in a worker process; never raises for a per-case problem."""

    def predict_job(pred: Any, j: dict[str, Any]) -> Any:
        return predict_cohort_row(pred, j, stability=_WORKER["stability"], scenes_dir=_WORKER["scenes_dir"])

    return safe_row(_WORKER["predictor"], job, predict_job)


# --- driver side --------------------------------------------------------------------------------

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
    "DLRPredictorLib.cohort.rows",
    # This module: the pool pickles its worker functions by name.
    "DLRPredictorLib.cohort.pool",
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


def run_pool(
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
        jobs: job descriptions (see ``rows.job_from_cohort_row``).
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


def default_jobs() -> int:
    """Worker processes when none are asked for: one per core, at most 4 (about 0.5 GB each)."""
    return max(1, min(os.cpu_count() or 1, 4))
