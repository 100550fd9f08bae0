"""How a `dlrpredictor predict` run ends when it is stopped, and where it may write.

- Ctrl-C (SIGINT) and SIGTERM end the run within seconds: exit 130 / 143, one line saying how many
  cases were done, every finished row kept in the journal; the rerun completes the cohort.
- A driver killed outright (SIGKILL) takes its fork server and workers with it.
- ``--out`` naming a folder, a path under a file or an unwritable place is refused before the run;
  a write that fails during it (disk full) is one line and leaves no temporary file.
- Two runs on one ``--out`` cannot interleave; ``--jobs`` is capped at the usable cores.

The stop tests drive real processes (the signal, the fork server and the workers are the point);
each wait is bounded, and every process a test saw is killed in ``finally`` even when it fails.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from DLRPredictorLib import cli
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.cohort import journal as journal_mod
from DLRPredictorLib.cohort import pool
from DLRPredictorLib.cohort.results_file import ResultsLock

LINUX = sys.platform.startswith("linux")
MODULE_DIR = str(Path(__file__).resolve().parents[2])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _for_the_shipped_bundle(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows without the clinical columns the shipped bundle does not declare (the synthetic
    cohort's age): the runs below predict with it, and each such column would add a warning line
    to the stderr they check."""
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs.cohort_csv import RESERVED_COLUMNS

    keep = set(RESERVED_COLUMNS) | {v.name for v in predictor.load_predictor().clinical_variables}
    return [{k: v for k, v in r.items() if k in keep} for r in rows]


@pytest.fixture(scope="module")
def big_cohort(tmp_path_factory, synthetic_cohort: Path) -> Path:
    """The synthetic cohort eight times over (320 cases, new ids): some ten seconds with --jobs 2."""
    rows = _for_the_shipped_bundle(_read_csv(synthetic_cohort))
    folder = synthetic_cohort.parent
    copies = []
    for k in range(8):
        for r in rows:
            image, mask = folder / r["image"], folder / r["mask"]
            copies.append({**r, "case_id": f"{r['case_id']}_{k}", "image": str(image), "mask": str(mask)})
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(copies[0]))
        writer.writeheader()
        writer.writerows(copies)
    return path


def _journal_rows(out: Path) -> int:
    journal = out.with_name(out.name + ".journal")
    if not journal.exists():
        return 0
    return max(0, journal.read_text(encoding="utf-8").count("\n") - 1)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _descendants(root: int) -> list[int]:
    """Every living process whose parent chain leads to ``root`` (a /proc scan)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[0] != "Z":
                parents[int(entry)] = stat[1]
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _alive(pids: list[int]) -> list[int]:
    """The pids still running (a zombie has ended: only its parent has not collected it)."""
    return [pid for pid in pids if (stat := _proc_stat(pid)) is not None and stat[0] != "Z"]


@contextmanager
def _predict_process(cohort: Path, out: Path, stderr: Path) -> Iterator[subprocess.Popen]:
    """A `python -m DLRPredictorLib predict --jobs 2` process; it and all it started are killed on exit."""
    env = dict(os.environ, PYTHONPATH=MODULE_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "DLRPredictorLib", "predict", str(cohort), "--out", str(out)]
    with open(stderr, "w", encoding="utf-8") as err:
        # SIGINT as a user's shell gives it: a test run started in the background of a
        # non-interactive shell (a CI script's `cmd &`) inherits SIGINT ignored, Python then leaves
        # it ignored, and the run under test would never see the Ctrl-C these tests send. A Python
        # handler here becomes the default action in the child (exec resets caught signals).
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            proc = subprocess.Popen(
                [*argv, "--jobs", "2", "--no-progress"], stdout=subprocess.DEVNULL, stderr=err, env=env
            )
        finally:
            signal.signal(signal.SIGINT, previous)
    seen: list[int] = []
    try:
        proc.seen = seen  # type: ignore[attr-defined]  # filled by _wait_for_rows
        yield proc
    finally:
        for pid in [proc.pid, *seen, *_descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(timeout=30)


def _wait_for_rows(proc: subprocess.Popen, out: Path, n: int = 1, timeout: float = 120) -> None:
    """Wait until ``n`` rows are journalled; remember the processes the run has started by then."""
    deadline = time.monotonic() + timeout
    while _journal_rows(out) < n:
        assert proc.poll() is None, f"the run ended early ({proc.returncode})"
        assert time.monotonic() < deadline, "no journal row in time"
        time.sleep(0.02)
    proc.seen[:] = _descendants(proc.pid)  # type: ignore[attr-defined]


def _run_predict(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=MODULE_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "DLRPredictorLib", "predict", *args, "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _alive(pids)


# --------------------------------------------------------------------------- stopping


@pytest.mark.skipif(not LINUX, reason="the fork server and /proc are Linux's")
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_run_ends_at_once_keeps_its_rows_and_the_rerun_completes(tmp_path, big_cohort, sig, status):
    out = tmp_path / "results.csv"
    n_cases = len(_read_csv(big_cohort))
    with _predict_process(big_cohort, out, tmp_path / "stderr.txt") as proc:
        _wait_for_rows(proc, out)
        started = list(proc.seen)  # type: ignore[attr-defined]
        assert len(started) >= 3  # the fork server and two workers (and the resource tracker)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == status
        err = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
        assert _wait_gone(started, timeout=10) == []
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = re.fullmatch(
        rf"dlrpredictor predict: interrupted: (\d+) of {n_cases} cases done; "
        "rerun the same command to resume",
        lines[0],
    )
    assert match, lines[0]
    done = int(match.group(1))
    assert done >= 1 and done == _journal_rows(out)  # what it says it did is what the journal holds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv.journal", "stderr.txt"]

    rerun = _run_predict(str(big_cohort), "--out", str(out), "--jobs", "2")

    assert rerun.returncode == 0, rerun.stderr
    rows = _read_csv(out)
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in _read_csv(big_cohort)]  # one row each
    assert all(r["status"] == "ok" for r in rows)
    assert f"; {done} reused, 0 recomputed: " in rerun.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "stderr.txt"]


@pytest.mark.skipif(not LINUX, reason="the fork server and /proc are Linux's")
def test_a_killed_driver_leaves_no_process_behind(tmp_path, big_cohort):
    out = tmp_path / "results.csv"
    with _predict_process(big_cohort, out, tmp_path / "stderr.txt") as proc:
        _wait_for_rows(proc, out)
        started = list(proc.seen)  # type: ignore[attr-defined]
        parents = {pid: stat[1] for pid in started if (stat := _proc_stat(pid)) is not None}
        server = [
            pid
            for pid, parent in parents.items()
            if parent == proc.pid and b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(server) == 1 and list(parents.values()).count(server[0]) >= 2  # the server, 2 workers

        proc.kill()
        proc.wait(timeout=10)

        # Before the fix the server and the workers kept each other alive for ever.
        assert _wait_gone(started, timeout=10) == []
    assert _journal_rows(out) >= 1


@pytest.mark.skipif(not LINUX, reason="real concurrent processes; the lock is tested in-process below too")
def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(tmp_path, big_cohort):
    out = tmp_path / "results.csv"
    with _predict_process(big_cohort, out, tmp_path / "stderr.txt") as first:
        _wait_for_rows(first, out)

        second = _run_predict(str(big_cohort), "--out", str(out), "--jobs", "1", timeout=120)

        assert first.poll() is None  # the refusal happened while the first was running
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"dlrpredictor predict: error: another run is writing results.csv (pid {first.pid}); "
            "wait for it or choose another --out"
        ]
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=10) == 130
    assert not (tmp_path / "results.csv.lock").exists()  # released on exit


def test_the_lock_names_its_holder_and_is_removed_on_release(tmp_path):
    out = tmp_path / "results.csv"
    first = ResultsLock(out).acquire()
    assert (tmp_path / "results.csv.lock").read_text().strip() == str(os.getpid())
    with pytest.raises(InputError) as refused:
        ResultsLock(out).acquire()  # flock: a second open file is refused even in one process
    assert str(refused.value) == (
        f"another run is writing results.csv (pid {os.getpid()}); wait for it or choose another --out"
    )
    first.release()
    assert list(tmp_path.iterdir()) == []
    with ResultsLock(out):
        pass
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- where it writes


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("dlrpredictor predict: error: "), stderr
    return lines[0]


@pytest.fixture
def two_cases(tmp_path, synthetic_cohort: Path) -> Path:
    rows = _for_the_shipped_bundle(_read_csv(synthetic_cohort)[:2])
    for r in rows:
        r["image"] = str(synthetic_cohort.parent / r["image"])
        r["mask"] = str(synthetic_cohort.parent / r["mask"])
    path = tmp_path / "in" / "cohort.csv"
    path.parent.mkdir()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("place", ["folder", "under_a_file", "read_only"])
def test_an_unwritable_out_is_one_line_and_exit_2_before_the_run(tmp_path, capsys, two_cases, place):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder").mkdir()
    if place == "read_only" and os.geteuid() == 0 and not LINUX:
        pytest.skip("no place is read-only for root here")
    out, expected = {
        "folder": (
            tmp_path / "folder",
            f"--out '{tmp_path / 'folder'}' is a folder; name the results CSV inside it",
        ),
        "under_a_file": (tmp_path / "a_file" / "r.csv", f"'{tmp_path / 'a_file'}' is not a folder"),
        # Root writes through permission bits; sysfs refuses a new file to anyone.
        "read_only": (
            Path("/sys/r.csv") if os.geteuid() == 0 else tmp_path / "ro" / "r.csv",
            "cannot write in '",
        ),
    }[place]
    if place == "read_only" and os.geteuid() != 0:
        out.parent.mkdir(mode=0o555)
    before = sorted(tmp_path.rglob("*"))

    assert cli.main(["predict", str(two_cases), "--out", str(out), "--no-progress"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert expected in line, line
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no probe or lock left


@pytest.mark.parametrize("failing", ["results", "journal"])
def test_a_full_disk_is_one_line_exit_2_and_leaves_no_temporary_file(
    tmp_path, capsys, monkeypatch, two_cases, failing
):
    out = tmp_path / "out" / "results.csv"
    real_fsync, real_write = os.fsync, journal_mod.Journal.write

    def fsync(fd: int) -> None:  # the results' temporary file is full when it is synced
        if ".results.csv.tmp" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    def write(self: journal_mod.Journal, row: dict) -> None:  # the journal is full after one row
        if _journal_rows(out) >= 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, row)

    if failing == "results":
        if not LINUX:
            pytest.skip("the temporary file is told by its /proc/self/fd link")
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        monkeypatch.setattr(journal_mod.Journal, "write", write)

    code = cli.main(["predict", str(two_cases), "--out", str(out), "--jobs", "1", "--no-progress"])

    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"dlrpredictor predict: error: cannot write the results '{out}' (No space left on device); "
        "the cases finished so far are kept in its journal: make room and rerun the same command to resume"
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.csv.journal"]  # no temporary, no lock
    assert _journal_rows(out) == (2 if failing == "results" else 1)


# --------------------------------------------------------------------------- --jobs


@pytest.mark.parametrize(
    ("cores", "requested", "expected", "warning"),
    [
        (2, 2, 2, None),
        (2, 8, 2, "--jobs 8 is more than the 2 usable cores of this machine; using 2"),
        (64, 40, 32, "--jobs 40 is more than the limit of 32 worker processes; using 32"),
        (64, 32, 32, None),
        (3, None, 3, None),  # the default is never warned about
    ],
)
def test_jobs_are_capped_at_the_usable_cores_and_the_hard_limit(
    monkeypatch, cores, requested, expected, warning
):
    monkeypatch.setattr(pool, "usable_cores", lambda: cores)
    warnings: list[str] = []
    assert pool.worker_count(requested, warnings.append) == expected
    assert warnings == ([warning] if warning else [])


@pytest.mark.parametrize("requested", ["0", "-3"])
def test_zero_or_negative_jobs_are_refused_with_exit_2(tmp_path, capsys, two_cases, requested):
    out = tmp_path / "results.csv"
    code = cli.main(["predict", str(two_cases), "--out", str(out), "--jobs", requested, "--no-progress"])
    assert code == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"dlrpredictor predict: error: --jobs must be at least 1 (got {requested})"
    )
    assert not out.exists()


def test_the_interrupted_count_is_what_the_journal_holds(tmp_path):
    """A row that reached the file counts even when the signal came before its caller counted it."""
    path = tmp_path / "results.csv.journal"
    columns = ["case_id", "status"]
    first = journal_mod.Journal(path, columns)
    first.write({"case_id": "a", "status": "ok"})
    first.writer.writerow({"case_id": "b", "status": "ok"})  # written, then interrupted before sync
    first.close()
    assert first.rows_added() == 2
    again = journal_mod.Journal(path, columns)  # a resumed run appends to the same journal
    again.write({"case_id": "c", "status": "ok"})
    again.close()
    assert again.rows_added() == 1
    with open(path, "a", encoding="utf-8") as f:
        f.write("d,o")  # a torn last line (killed mid-write) is not a row
    assert again.rows_added() == 1
