"""Cohort prediction on a real ``distributed.LocalCluster`` (two worker processes, one thread each).

Real BUS-BRA images and the shipped bundle (skipped when ../shared/data is absent), with broken
rows mixed in. The local fork-server pool's results file is the reference: the Dask run must
give the same file byte for byte, because each case runs the same code (``rows.safe_row`` on
``rows.predict_cohort_row``) with one BLAS and one SimpleITK thread on the bundle bytes the
client verified; only the process that runs it differs.

One cluster serves the module (starting worker processes costs seconds on 2 cores).
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
from DLRPredictorLib.cohort import batch, dask_runner, journal
from DLRPredictorLib.cohort.dask_worker import predict_cases
from DLRPredictorLib.inference.predictor import load_predictor

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

N_REAL = 6


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory, busbra_cases) -> Path:
    """Six real cases and three broken ones, in a mixed order."""
    folder = tmp_path_factory.mktemp("dask_cohort")
    good = busbra_cases[:N_REAL]
    garbage = folder / "garbage.png"
    garbage.write_bytes(b"not a picture\n" * 20)
    rows = [{"case_id": c.case_id, "image": str(c.image), "mask": str(c.mask)} for c in good]
    rows.insert(
        1, {"case_id": "missing_image", "image": str(folder / "nowhere.png"), "mask": str(good[0].mask)}
    )
    rows.insert(4, {"case_id": "unreadable_image", "image": str(garbage), "mask": str(good[0].mask)})
    rows.append({"case_id": "mask_of_other_size", "image": str(good[1].image), "mask": str(good[2].mask)})
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "image", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cohort_csv) -> bytes:
    """The results file of the local pool (two workers)."""
    out = tmp_path_factory.mktemp("dask_reference") / "results.csv"
    batch.predict_cohort(cohort_csv, out, jobs=2, show_progress=False)
    return out.read_bytes()


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-threaded worker processes; a task may kill two workers."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        lc = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        )
    yield lc
    lc.close()


def _case_ids(data: bytes) -> list[str]:
    return [r["case_id"] for r in csv.DictReader(data.decode().splitlines())]


def test_mixed_cohort_gives_the_local_pools_results_file(tmp_path, cohort_csv, reference, cluster):
    out = tmp_path / "results.csv"
    summary = batch.predict_cohort(cohort_csv, out, scheduler=cluster.scheduler_address, show_progress=False)
    assert (summary.n_cases, summary.n_ok, summary.n_error) == (N_REAL + 3, N_REAL, 3)
    assert out.read_bytes() == reference
    assert not journal.journal_path(out).exists()
    rows = {r["case_id"]: r for r in csv.DictReader(reference.decode().splitlines())}
    assert "nowhere.png" in rows["missing_image"]["error"]  # the broken rows say what is wrong


def _kill_a_worker_on_first_row(monkeypatch, cluster) -> list[int]:
    """Journal.write kills one worker process (SIGKILL) when the first row arrives."""
    killed: list[int] = []
    write = journal.Journal.write

    def kill_then_write(self, row):
        if not killed:
            with distributed.Client(cluster.scheduler_address) as client:
                pids = client.run(os.getpid)
            pid = sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        write(self, row)

    monkeypatch.setattr(journal.Journal, "write", kill_then_write)
    return killed


def test_a_worker_killed_during_the_run_loses_no_row(monkeypatch, tmp_path, cohort_csv, reference, cluster):
    killed = _kill_a_worker_on_first_row(monkeypatch, cluster)
    out = tmp_path / "results.csv"
    batch.predict_cohort(cohort_csv, out, scheduler=cluster.scheduler_address, show_progress=False)
    assert killed  # a worker really died mid-run
    assert out.read_bytes() == reference
    # The nanny restarted it, and the restarted worker loaded the bundle from the scheduler.
    with distributed.Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=60)
        assert killed[0] not in client.run(os.getpid).values()


def _interrupt_after(monkeypatch, n_rows: int) -> None:
    write = journal.Journal.write
    count = {"n": 0}

    def counting_write(self, row):
        write(self, row)
        count["n"] += 1
        if count["n"] == n_rows:
            raise KeyboardInterrupt

    monkeypatch.setattr(journal.Journal, "write", counting_write)


def test_an_interrupted_run_resumes_to_exactly_one_row_per_case(
    monkeypatch, tmp_path, cohort_csv, reference, cluster
):
    from DLRPredictorLib.base.interrupts import Interrupted

    out = tmp_path / "results.csv"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(Interrupted):
            batch.predict_cohort(cohort_csv, out, scheduler=cluster.scheduler_address, show_progress=False)
    assert not out.exists()
    assert len(_case_ids(journal.journal_path(out).read_bytes())) == 3
    summary = batch.predict_cohort(cohort_csv, out, scheduler=cluster.scheduler_address, show_progress=False)
    # The three journalled rows: the ok ones reused, an error one (if any) predicted again.
    assert summary.n_skipped + summary.recomputed.get(journal.FAILED_BEFORE, 0) == 3
    assert out.read_bytes() == reference
    assert _case_ids(out.read_bytes()) == _case_ids(reference)  # one row per case, manifest order


def test_the_scheduler_gone_stops_the_run_with_a_clear_error_and_the_rerun_resumes(
    monkeypatch, tmp_path, cohort_csv, reference, cluster
):
    doomed = distributed.LocalCluster(
        n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=50
    )
    write = journal.Journal.write
    count = {"n": 0}

    def close_scheduler_after_two(self, row):
        write(self, row)
        count["n"] += 1
        if count["n"] == 2:
            doomed.close()

    out = tmp_path / "results.csv"
    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}), monkeypatch.context() as m:
        m.setattr(journal.Journal, "write", close_scheduler_after_two)
        with pytest.raises(dask_runner.SchedulerError) as err:
            batch.predict_cohort(cohort_csv, out, scheduler=doomed.scheduler_address, show_progress=False)
    assert "rerun the same command to resume" in str(err.value)
    assert doomed.scheduler_address in str(err.value)
    kept = _case_ids(journal.journal_path(out).read_bytes())
    assert len(kept) >= 2 and len(kept) == len(set(kept))
    batch.predict_cohort(cohort_csv, out, scheduler=cluster.scheduler_address, show_progress=False)
    assert out.read_bytes() == reference


def crash_on_marked_case(jobs, digest, stability, scenes_dir):
    """A task that kills its worker process (no exception, no cleanup) when it holds case crash*."""
    if any(job["case_id"].startswith("crash") for job in jobs):
        os._exit(70)
    return predict_cases(jobs, digest, stability, scenes_dir)


def test_a_case_that_kills_every_worker_gets_an_error_row_and_the_others_theirs(cluster, busbra_cases):
    pred = load_predictor(None)
    good = [
        {"case_id": c.case_id, "image": str(c.image), "mask": str(c.mask), "label": ""}
        for c in busbra_cases[:3]
    ]
    crash = {**good[0], "case_id": "crash_case"}
    rows: list[dict] = []
    with distributed.Client(cluster.scheduler_address) as client:
        digest = dask_runner.ship_bundle(client, pred.bundle)
        dask_runner.run_on_client(
            client,
            [good[0], crash, good[1], good[2]],
            rows.append,
            digest=digest,
            bundle_id=pred.bundle_id,
            cases_per_task=2,  # the crash takes good[0] down with it: that case is then run alone
            task=crash_on_marked_case,
        )
        client.wait_for_workers(2, timeout=60)
    by_id = {r["case_id"]: r for r in rows}
    assert len(rows) == 4 and set(by_id) == {"crash_case", *(g["case_id"] for g in good)}
    assert by_id["crash_case"]["status"] == "error"
    assert by_id["crash_case"]["error"] == dask_runner.CRASH_MESSAGE
    assert all(by_id[g["case_id"]]["status"] == "ok" for g in good)


def test_scheduler_option_precedence_and_local_form(monkeypatch):
    monkeypatch.setenv(dask_runner.SCHEDULER_ENV, "tcp://from-env:8786")
    assert dask_runner.scheduler_option(None) == "tcp://from-env:8786"
    assert dask_runner.scheduler_option("local:2") == "local:2"  # the option wins
    monkeypatch.setenv(dask_runner.SCHEDULER_ENV, "  ")
    assert dask_runner.scheduler_option(None) is None  # blank: the local pool
    assert dask_runner.local_workers("local:3") == 3
    assert dask_runner.local_workers("tcp://h:8786") is None
    for bad in ("local:0", "local:", "local:two"):
        with pytest.raises(dask_runner.InputError, match="local:N"):
            dask_runner.local_workers(bad)


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, cohort_csv):
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(dask_runner.SchedulerError, match="cannot reach the Dask scheduler"):
            batch.predict_cohort(
                cohort_csv, tmp_path / "r.csv", scheduler="tcp://127.0.0.1:9", show_progress=False
            )
