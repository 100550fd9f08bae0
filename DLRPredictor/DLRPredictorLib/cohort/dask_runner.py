"""The client side of a cohort run on a Dask distributed cluster (``predict --scheduler``).

``--scheduler ADDRESS`` connects to a running scheduler (``tcp://host:8786``); ``local:N`` starts
a ``distributed.LocalCluster`` of N single-threaded worker processes for the run. Without the
option, ``$DLR_SCHEDULER`` is used; without either, the local fork-server pool (``pool``).
``dask`` and ``distributed`` are imported only here, inside the functions, so the single-machine
path never pays for them.

What a run does (the contract of ``batch``: same rows, journal and resume):

- the bundle verified once by the client is shipped to each worker once (``dask_worker``);
- the cases go out as tasks of :data:`CASES_PER_TASK` cases, at most a window of them queued at a
  time; each task returns the results rows of its cases, journalled by the caller as they come;
- a worker that dies mid-task: the scheduler runs the task again on another worker, up to
  ``distributed.scheduler.allowed-failures`` times (:data:`ALLOWED_FAILURES` on a local cluster).
  A task that still fails (``KilledWorker``) may have been only beside the culprit on a dying
  worker, so its cases are suspects: they run again at the end, one at a time with nothing else
  on the cluster, and only a case that then kills its workers again gets an error row
  (:data:`CRASH_MESSAGE`), as the local pool does;
- a row is taken once per case: a task that comes back twice (a worker lost after it finished)
  adds nothing;
- the scheduler gone: :class:`SchedulerLost`, once the client has given up reconnecting
  (``distributed.comm.timeouts.connect``); the journal keeps every row, a rerun resumes.

``train --scheduler`` uses :func:`cluster_map`: training's independent pieces (radiomics
extractions, crops, folds) as tasks, gathered in order (``base.executor``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..base.errors import DLRError, InputError
from ..base.executor import MapFunction
from ..deep.heatmap import DEFAULT_HEATMAP
from .rows import error_row

#: The environment variable read when ``--scheduler`` is not given.
SCHEDULER_ENV = "DLR_SCHEDULER"
#: Cases per task: enough to make the scheduler's per-task cost small, few enough that a lost
#: task costs little and the rows reach the journal steadily (see docs/PERFORMANCE.md).
CASES_PER_TASK = 4
#: Task attempts a local cluster allows (``allowed-failures``): a case may kill this many workers.
ALLOWED_FAILURES = 2
#: Seconds to wait for the first worker of a cluster.
WORKERS_TIMEOUT_S = 120.0

CRASH_MESSAGE = (
    "the Dask worker processes running this case died on every try (out of memory or a "
    "library fault); check the image"
)

Row = dict[str, Any]


class SchedulerError(DLRError):
    """The Dask scheduler cannot be reached, has no workers, or was lost during the run."""


class SchedulerLost(SchedulerError):
    """The scheduler went away during a run (the journal keeps the rows finished so far)."""


def scheduler_option(option: str | None) -> str | None:
    """The scheduler of a run: ``--scheduler`` when given, else ``$DLR_SCHEDULER``, else None (local pool)."""
    value = option if option is not None else os.environ.get(SCHEDULER_ENV, "")
    return value.strip() or None


def local_workers(address: str) -> int | None:
    """N of ``local:N`` (a LocalCluster of N worker processes); None for a scheduler address.

    Raises:
        InputError: ``local:`` followed by anything but a positive whole number.
    """
    if not address.startswith("local:"):
        return None
    text = address[len("local:") :]
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"--scheduler '{address}': write local:N with N the worker processes, e.g. local:2")
    return int(text)


@contextmanager
def connect(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler ``address`` (or a LocalCluster for ``local:N``).

    Raises:
        SchedulerError: the scheduler cannot be reached, or no worker joined it in time.
    """
    import dask
    from distributed import Client, LocalCluster

    n_local = local_workers(address)
    cluster = None
    try:
        if n_local is not None:
            with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
                cluster = LocalCluster(
                    n_workers=n_local,
                    processes=True,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    silence_logs=40,  # logging.ERROR: a worker restart is reported in its row
                )
            client = Client(cluster)
        else:
            client = Client(address)
    except Exception as exc:  # OSError, TimeoutError, CommClosedError: all mean the same here
        if cluster is not None:
            cluster.close()
        raise SchedulerError(
            f"cannot reach the Dask scheduler at '{address}' ({type(exc).__name__}: {exc})"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except (OSError, TimeoutError):
            raise SchedulerError(
                f"the Dask scheduler at '{address}' has no worker after {WORKERS_TIMEOUT_S:.0f} s; start "
                "workers (dask worker ADDRESS) and rerun"
            ) from None
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def ship_bundle(client: Any, bundle: Any) -> str:
    """Send a client-verified bundle to every worker once; returns its content digest.

    Raises:
        BundleError: a worker's copy is not the bundle verified here.
    """
    from ..base.errors import BundleError
    from .dask_worker import BundlePlugin, BundleShipment

    plugin = BundlePlugin(BundleShipment.of(bundle))
    try:
        client.register_plugin(plugin, name=plugin.name)
    except DLRError:
        raise
    except Exception as exc:  # the worker's setup error, re-raised by the client
        raise BundleError(f"the bundle could not be loaded on a Dask worker: {exc}") from None
    return str(bundle.digest)


def _chunks(jobs: list[Row], size: int) -> list[list[Row]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def run_on_client(
    client: Any,
    todo: list[Row],
    on_row: Callable[[Row], None],
    *,
    digest: str,
    bundle_id: str,
    stability: bool = False,
    scenes_dir: Path | None = None,
    heatmap_kind: str = DEFAULT_HEATMAP,
    cases_per_task: int = CASES_PER_TASK,
    task: Callable[..., list[Row]] | None = None,
) -> None:
    """Predict ``todo`` on the client's cluster; each case's row goes to ``on_row`` once.

    ``task`` (default ``dask_worker.predict_cases``) runs on a worker: ``(jobs, digest,
    stability, scenes_dir) -> rows``; tests give one that kills its worker. ``heatmap_kind``
    goes to the default task only: the score the scenes' heatmaps explain.

    Raises:
        SchedulerLost: the scheduler went away (rows already given to ``on_row`` are kept).
    """
    from functools import partial

    from distributed import wait
    from distributed.client import FutureCancelledError, FuturesCancelledError

    from .dask_worker import predict_cases

    scenes = str(scenes_dir) if scenes_dir else None
    run_task = task or partial(predict_cases, heatmap_kind=heatmap_kind)
    n_threads = max(1, sum(client.nthreads().values()))
    window = max(8, 4 * n_threads)  # tasks queued at a time: every worker busy, little to cancel
    pending = _chunks(todo, cases_per_task)
    pending.reverse()  # popped from the end: manifest order
    suspects: list[Row] = []  # cases of a task that killed its workers
    in_flight: dict[Any, tuple[list[Row], bool]] = {}  # future -> (its cases, run alone)
    seen: set[str] = set()

    def submit(chunk: list[Row], alone: bool) -> None:
        fut = client.submit(run_task, chunk, digest, stability, scenes, pure=False)
        in_flight[fut] = (chunk, alone)

    def refill() -> None:
        while pending and len(in_flight) < window:
            submit(pending.pop(), False)
        if not in_flight and suspects:
            # Alone on the cluster: a worker that dies now was killed by this case, not by another.
            submit([suspects.pop(0)], True)

    try:
        refill()
        while in_flight:
            try:
                finished, _ = wait(list(in_flight), return_when="FIRST_COMPLETED")
            except (OSError, TimeoutError, FutureCancelledError, FuturesCancelledError) as exc:
                raise _lost(client, exc) from None
            for fut in finished:
                chunk, alone = in_flight.pop(fut)
                rows = _rows_of(fut, chunk, bundle_id, alone=alone, client=client)
                fut.release()
                if rows is None:
                    suspects.extend(chunk)
                for row in rows or []:
                    if row["case_id"] not in seen:
                        seen.add(row["case_id"])
                        on_row(row)
            refill()
    finally:
        if in_flight:
            client.cancel(list(in_flight), force=True)


def _lost(client: Any, exc: BaseException) -> SchedulerLost:
    address = getattr(client.scheduler, "address", None) or "?"
    return SchedulerLost(
        f"lost the Dask scheduler at '{address}' ({type(exc).__name__}); the finished cases are "
        "kept in the journal: rerun the same command to resume"
    )


def _rows_of(fut: Any, chunk: list[Row], bundle_id: str, *, alone: bool, client: Any) -> list[Row] | None:
    """The rows of a finished task; None when it killed its workers while not alone (suspects)."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    try:
        return list(fut.result())
    except KilledWorker:
        return [error_row(chunk[0], CRASH_MESSAGE, bundle_id)] if alone else None
    except (FutureCancelledError, OSError, TimeoutError) as exc:
        raise _lost(client, exc) from None
    except DLRError as exc:  # the bundle never reached the worker
        return [error_row(job, str(exc), bundle_id) for job in chunk]
    except Exception as exc:  # a bug must not stop the cohort; the rows say what happened
        message = f"internal error ({type(exc).__name__}: {exc}); please report it"
        return [error_row(job, message, bundle_id) for job in chunk]


def cluster_map(client: Any) -> MapFunction:
    """A ``base.executor`` map that runs each item as one task on the client's cluster.

    A task whose worker dies is run again by the scheduler (``allowed-failures``); a task that
    still fails, or the scheduler going away, stops the map with :class:`SchedulerError` (a
    training resumes from its work folder's caches and checkpoints).
    """

    def run(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError, FuturesCancelledError

        futures = client.map(fn, list(items), pure=False)
        try:
            return list(client.gather(futures))
        except KilledWorker as exc:
            raise SchedulerError(f"a training task killed its Dask workers on every try ({exc})") from None
        except (FutureCancelledError, FuturesCancelledError, OSError, TimeoutError) as exc:
            raise _lost(client, exc) from None
        finally:
            client.cancel(futures)

    return run


def run_on_scheduler(
    address: str,
    pred: Any,
    todo: list[Row],
    on_row: Callable[[Row], None],
    *,
    stability: bool = False,
    scenes_dir: Path | None = None,
    heatmap_kind: str = DEFAULT_HEATMAP,
) -> None:
    """Connect, ship the bundle of ``pred`` and predict ``todo`` there (``batch`` calls this).

    Raises:
        SchedulerError: the scheduler is unreachable, has no worker, or is lost (:class:`SchedulerLost`).
        BundleError: a worker's copy of the bundle is not the one verified here.
    """
    with connect(address) as client:
        try:
            digest = ship_bundle(client, pred.bundle)
        except (OSError, TimeoutError) as exc:
            raise SchedulerLost(
                f"lost the Dask scheduler at '{address}' while sending the bundle ({exc})"
            ) from None
        run_on_client(
            client,
            todo,
            on_row,
            digest=digest,
            bundle_id=pred.bundle_id,
            stability=stability,
            scenes_dir=scenes_dir,
            heatmap_kind=heatmap_kind,
        )
