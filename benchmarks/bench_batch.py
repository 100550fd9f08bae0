"""Cohort throughput of ``dlrpredictor predict`` with 1 and 2 workers, and its peak memory.

Usage: ``.venv/bin/python benchmarks/bench_batch.py [--bundle DIR] [--cases N] [--repeats R]``

A manifest of N BUS-BRA images (spread evenly over the data set, absolute paths) is written to
a temporary folder; then ``python -m DLRPredictorLib predict MANIFEST --out RESULTS --jobs J
--no-progress`` runs as a subprocess for J = 1 and J = 2, alternating the order between repeats.

- Throughput: N / wall time of the whole command (start-up, bundle verification, worker
  start-up included: what a user waits for). The steady-state rate (rows landing in the
  results journal, first to last) is shown too, with the two ends it leaves out: the time to
  the first row (start-up) and from the last row to the command's exit.
- Peak memory: measured in separate runs (one per worker count, after the timed ones), because
  sampling it is not free: one sample of the process tree's PSS reads every process's
  ``smaps_rollup`` and cost about 50 ms of CPU while workers still imported torch (measured),
  which on 2 cores busy with 2 workers took about a tenth of their CPU and capped the measured scaling (1.78x
  steady state with the sampler on). The timed runs only watch the results journal grow.
  In the memory runs /proc is sampled every 0.1 s over the command and all its descendants (fork
  server, workers). The target is the peak of the summed PSS (proportional set size): the
  physical memory the batch occupies, each shared page (libraries, pages the
  fork server shares with its workers) counted once over all processes. The summed VmRSS counts
  every shared page once per process, so it overstates the total; it is shown as an upper bound,
  with the largest single process (``wait4``'s ru_maxrss).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchcommon as bc


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the bundled model)")
    p.add_argument(
        "--cases", type=int, default=300, help="real images in the cohort (default 300: a study-sized cohort)"
    )
    p.add_argument(
        "--dataset",
        choices=("busbra", "breast"),
        default="busbra",
        help="busbra: 8-bit grayscale PNG (default); breast: RGBA PNG with spacing and age",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per worker count (default 3)")
    p.add_argument("--work", type=Path, default=None, help="keep manifest, results and logs here")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ /proc sampling


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue  # the process ended meanwhile
        # Field 4 is the parent id; the command name (field 2) may hold spaces, so split after ')'.
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _kib(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class MemorySampler:
    """Samples the row count of the results journal and, with ``memory``, the tree's memory."""

    root: int
    journal: Path
    interval: float = 0.1
    memory: bool = True
    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_processes: int = 0
    row_times: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _journal_offset: int = 0
    _journal_lines: int = 0

    def _sample(self) -> None:
        if self.memory:
            pids = _tree(self.root)
            rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_pss_kib = max(self.peak_pss_kib, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
        try:  # only the bytes appended since the last sample: cheap at any journal size
            with open(self.journal, "rb") as f:
                f.seek(self._journal_offset)
                new = f.read()
            self._journal_offset += len(new)
            self._journal_lines += new.count(b"\n")
        except OSError:
            pass
        rows = max(0, self._journal_lines - 1)  # minus the header
        now = time.perf_counter()
        while len(self.row_times) < rows:
            self.row_times.append(now)

    def run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------------------------ one run


@dataclass
class BatchRun:
    """What one ``dlrpredictor predict`` run measured."""

    jobs: int
    wall_s: float
    n_ok: int
    n_rows: int
    peak_rss_mb: float
    peak_pss_mb: float
    largest_process_mb: float
    steady_cases_per_s: float
    first_row_s: float
    after_last_row_s: float
    first_error: str

    @property
    def cases_per_s(self) -> float:
        """Cases per second of the whole command."""
        return self.n_rows / self.wall_s


def _read_results(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_batch(manifest: Path, out: Path, bundle: Path, jobs: int, memory: bool = False) -> BatchRun:
    """One run of the cohort command in a subprocess, watched while it runs.

    Args:
        memory: also sample the memory of the process tree (costs CPU: not for timed runs).
    """
    for stale in (out, out.with_name(out.name + ".journal")):
        stale.unlink(missing_ok=True)  # no resume: every run predicts every case
    cmd = [
        sys.executable,
        "-m",
        "DLRPredictorLib",
        "predict",
        str(manifest),
        "--out",
        str(out),
        "--bundle",
        str(bundle),
        "--jobs",
        str(jobs),
        "--no-progress",
    ]
    log = out.with_name(out.name + f".jobs{jobs}.log")
    with open(log, "w", encoding="utf-8") as log_file:
        start = time.perf_counter()
        # Output to a file, not a pipe: nothing is read while waiting, so a full pipe cannot block.
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        # Rows are timed every 20 ms without memory (a few microseconds per look).
        interval = 0.1 if memory else 0.02
        sampler = MemorySampler(proc.pid, out.with_name(out.name + ".journal"), interval, memory)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        # wait4 gives the command's rusage including its waited-for workers: ru_maxrss is the
        # largest single process among them.
        _pid, status, usage = os.wait4(proc.pid, 0)
        end = time.perf_counter()
        wall = end - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        thread.join()
    rows = _read_results(out)
    if proc.returncode not in (0, 1) or not rows:
        tail = log.read_text(encoding="utf-8", errors="replace").strip()[-2000:]
        raise RuntimeError(f"dlrpredictor predict --jobs {jobs} failed (exit {proc.returncode}): {tail}")
    errors = [r["error"] for r in rows if r["status"] != "ok"]
    t = sampler.row_times
    steady = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 2 and t[-1] > t[0] else float("nan")
    return BatchRun(
        jobs=jobs,
        wall_s=wall,
        n_ok=len(rows) - len(errors),
        n_rows=len(rows),
        peak_rss_mb=sampler.peak_rss_kib / 1024,
        peak_pss_mb=sampler.peak_pss_kib / 1024,
        largest_process_mb=usage.ru_maxrss / 1024,
        steady_cases_per_s=steady,
        first_row_s=t[0] - start if t else float("nan"),
        after_last_row_s=end - t[-1] if t else float("nan"),
        first_error=errors[0] if errors else "",
    )


# ------------------------------------------------------------------------------------ report


def _median_run(runs: list[BatchRun], attr: str) -> float:
    return bc.median([float(getattr(r, attr)) for r in runs])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = _parse(argv)
    bundle = bc.resolve_bundle(args.bundle).resolve()
    cases = bc.select_cases(args.dataset, args.cases)
    from DLRPredictorLib.inference import predictor

    known = [v.name for v in predictor.load_predictor(bundle).clinical_variables]
    bc.compile_package()
    print(bc.machine_line())
    with tempfile.TemporaryDirectory(prefix="dlr-bench-batch-") as tmp:
        work = args.work.resolve() if args.work else Path(tmp)
        manifest = bc.write_manifest(cases, work / "manifest.csv", known)
        print(f"bundle: {bundle}; cohort: {len(cases)} {args.dataset} images")
        print(f"{args.repeats} run(s) per worker count, order alternating")
        runs: dict[int, list[BatchRun]] = {1: [], 2: []}
        for rep in range(args.repeats):
            for jobs in (1, 2) if rep % 2 == 0 else (2, 1):
                run = run_batch(manifest, work / f"results_jobs{jobs}.csv", bundle, jobs)
                runs[jobs].append(run)
                print(f"  --jobs {jobs}: {run.wall_s:.1f} s, {run.n_ok}/{run.n_rows} ok", flush=True)
                if run.first_error:
                    print(f"    first error row: {run.first_error}")
        print("memory runs (sampler on, not timed):")
        memory_runs: dict[int, BatchRun] = {}
        for jobs in (1, 2):
            run = run_batch(manifest, work / f"results_jobs{jobs}.csv", bundle, jobs, memory=True)
            memory_runs[jobs] = run
            print(
                f"  --jobs {jobs}: peak PSS {run.peak_pss_mb:.0f} MB (RSS {run.peak_rss_mb:.0f}), "
                f"{run.n_ok}/{run.n_rows} ok",
                flush=True,
            )
    print(f"\nCohort of {len(cases)} images (medians over {args.repeats} run(s)):")
    rows = []
    for jobs in (1, 2):
        r = runs[jobs]
        rows.append(
            (
                f"--jobs {jobs}",
                f"{_median_run(r, 'wall_s'):.1f}",
                f"{_median_run(r, 'cases_per_s'):.2f}",
                f"{_median_run(r, 'steady_cases_per_s'):.2f}",
                f"{_median_run(r, 'first_row_s'):.1f}",
                f"{_median_run(r, 'after_last_row_s'):.1f}",
                f"{memory_runs[jobs].peak_rss_mb:.0f}",
                f"{memory_runs[jobs].peak_pss_mb:.0f}",
                f"{memory_runs[jobs].largest_process_mb:.0f}",
            )
        )
    bc.print_table(
        (
            "workers",
            "wall s",
            "cases/s",
            "steady cases/s",
            "first row s",
            "after last s",
            "peak RSS MB",
            "peak PSS MB",
            "largest proc MB",
        ),
        rows,
    )
    speedup = _median_run(runs[2], "cases_per_s") / _median_run(runs[1], "cases_per_s")
    steady = _median_run(runs[2], "steady_cases_per_s") / _median_run(runs[1], "steady_cases_per_s")
    print(f"2 workers / 1 worker: {speedup:.2f}x on the whole command, {steady:.2f}x steady state")
    peak = max(r.peak_pss_mb for r in memory_runs.values())
    print(f"\n{bc.machine_line()}")
    targets = [
        bc.Target("2 workers / 1 worker throughput (whole command)", speedup, 1.7, "x", True),
        bc.Target("peak memory of the batch (sum of PSS)", peak, 1536, "MB"),
    ]
    return bc.exit_status(bc.print_targets(targets), args.strict)


if __name__ == "__main__":
    sys.exit(main())
