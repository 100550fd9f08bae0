"""The worker processes of a cohort run: a fork server, a process pool that survives crashes.

On Linux the workers are forked from a fork server that has imported pyradiomics and loaded the
bundle once (``worker_server``); elsewhere they are spawned. Each worker runs one case at a time,
single-threaded. A worker process that dies (a library fault, out of memory) is detected and the
case it was running is reported in its own row; the other cases go on.

Stopping: Ctrl-C reaches only the driver (the server and the workers ignore SIGINT, which the
terminal sends to them too); an interrupted driver kills its workers at once instead of waiting for
the cases in flight (they are not journalled, so a rerun predicts them). A driver killed outright
takes its server and workers with it (``worker_server.bind_worker_to_server``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..base.errors import InputError
from ..deep.heatmap import DEFAULT_HEATMAP
from .rows import error_row, predict_cohort_row, safe_row

# --- worker side -------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(
    bundle_path: str | None,
    threads: int,
    scenes_dir: str | None,
    stability: bool,
    heatmap_kind: str = DEFAULT_HEATMAP,
) -> None:
    """Load the bundle once per worker process (from the fork server's cache on Linux)."""
    from ..inference import predictor
    from .worker_server import bind_worker_to_server

    # Ctrl-C is the driver's to handle (it stops the workers): a worker that took it too would
    # die on its queue and print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bind_worker_to_server()

    predictor.set_threads(threads)
    _WORKER["predictor"] = predictor.load_predictor(bundle_path)
    # One thread per worker means the workers already fill the cores: no second branch thread.
    _WORKER["predictor"].concurrent_branches = threads > 1
    # The results CSV holds no features: without scenes only those the model reads are computed.
    _WORKER["predictor"].model_features_only = scenes_dir is None
    _WORKER["scenes_dir"] = Path(scenes_dir) if scenes_dir else None
    _WORKER["stability"] = stability
    _WORKER["heatmap_kind"] = heatmap_kind


def _predict_row(job: dict[str, Any]) -> dict[str, Any]:
    """Predict one cohort case in a worker process; never raises for a per-case problem."""

    def predict_job(pred: Any, j: dict[str, Any]) -> Any:
        return predict_cohort_row(
            pred,
            j,
            stability=_WORKER["stability"],
            scenes_dir=_WORKER["scenes_dir"],
            heatmap_kind=_WORKER["heatmap_kind"],
        )

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
        # Started with SIGINT ignored (inherited through exec), so that a Ctrl-C during its
        # imports, seconds long, does not print the server's traceback: it would ignore SIGINT
        # only once they are done. Handlers can be set in the main thread only.
        in_main = threading.current_thread() is threading.main_thread()
        sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            forkserver.ensure_running()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, sigint)
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
        init_args: arguments of ``_init_worker`` (bundle path, threads, scenes folder, stability,
            heatmap kind).
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
        except BaseException:
            # Ctrl-C, SIGTERM or a failed journal write: stop now, not after the cases in flight
            # (they are not journalled: a rerun predicts them).
            _kill_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if broken and any(j.get("_crashed") for j in retry):
            n_workers = 1


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's worker processes (SIGKILL); the pool then sees them gone and shuts down at once."""
    # The executor has no public way to do this before Python 3.14 (kill_workers).
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.kill()
        except (OSError, ValueError):
            pass  # already gone (or already closed)


#: The most worker processes a run starts, whatever the machine (each holds about 0.5 GB).
MAX_JOBS = 32


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_jobs() -> int:
    """Worker processes when none are asked for: one per core, at most 4 (about 0.5 GB each)."""
    return max(1, min(usable_cores(), 4))


def worker_count(requested: int | None, warn: Callable[[str], None]) -> int:
    """The worker processes of a run: ``--jobs`` capped at the usable cores and :data:`MAX_JOBS`.

    Workers are single-threaded and CPU-bound, so more than one per core only adds memory.

    Args:
        requested: ``--jobs`` (None: :func:`default_jobs`).
        warn: receives one line when the request is reduced.

    Returns:
        The number of workers, at least 1.

    Raises:
        InputError: ``requested`` is 0 or negative.
    """
    if requested is None:
        return default_jobs()
    if requested < 1:
        raise InputError(f"--jobs must be at least 1 (got {requested})")
    cores = usable_cores()
    if requested > min(cores, MAX_JOBS):
        if cores > MAX_JOBS:
            warn(
                f"--jobs {requested} is more than the limit of {MAX_JOBS} worker processes; using {MAX_JOBS}"
            )
            return MAX_JOBS
        warn(f"--jobs {requested} is more than the {cores} usable cores of this machine; using {cores}")
        return cores
    return requested
