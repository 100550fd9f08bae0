"""Cohort throughput on Dask (``predict --scheduler``) beside the local fork-server pool, one run.

Usage: ``.venv/bin/python benchmarks/bench_dask.py [--bundle DIR] [--cases N] [--rounds R]``

The same manifest of N BUS-BRA images is predicted, in rounds, by three configurations in turn
(A, B, C, A, B, C, ...: other load on the machine hits all three alike), and the medians compared:

- A ``pool``: ``batch.predict_cohort(jobs=2)``: the local pool of 2 worker processes;
- B ``dask1``: ``predict_cohort(scheduler=ADDRESS)`` on a LocalCluster of 1 worker process;
- C ``dask2``: the same on a LocalCluster of 2 worker processes (one thread each).

What a timed run includes, alike for all three: the client's bundle verification (cached in the
process after the first run, for all three), the input fingerprints, the start of the run's
workers (A: forked from the already-running fork server, which holds the loaded bundle; B and C:
the client connecting, the bundle shipped to each worker and re-verified there: the workers
of a cluster are long-lived, as a real cluster's are), every case, and the results file. Not
included: starting the fork server (A) and the clusters' processes (B, C), each done once
before the rounds, and one warm-up run per configuration. The cold ``--scheduler local:2``
command (cluster start-up included) is timed once at the end, beside a cold pool run.

Besides wall time, each run's CPU time is summed over every process of the run (this process,
the fork server and the workers it reaped; the clusters' nannies and workers): on a machine
that others load, CPU per case moves less than wall time, and the difference between the
configurations is the CPU the scheduler, the client and the nannies add per case.
The scheduler's own cost per task is measured apart: N empty tasks on the 2-worker cluster.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import benchcommon as bc

CONFIGS = ("pool", "dask1", "dask2")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the bundled model)")
    p.add_argument("--cases", type=int, default=300, help="real BUS-BRA images (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three configurations (default 3)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return p.parse_args(argv)


def _tree_cpu() -> float:
    """CPU seconds of this process, its descendants, and the descendants they have reaped.

    Pool workers exit at the end of a run and are reaped by the fork server: their time is in
    the server's children times. Cluster processes (nannies, workers) live on: their own times.
    """
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for proc in me.children(recursive=True):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _timed(manifest: Path, out: Path, bundle: Path, **kwargs: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of one predict_cohort run."""
    from DLRPredictorLib.cohort import batch

    for stale in (out, out.with_name(out.name + ".journal")):
        stale.unlink(missing_ok=True)
    cpu = _tree_cpu()
    start = time.perf_counter()
    summary = batch.predict_cohort(manifest, out, bundle, show_progress=False, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    time.sleep(0.2)  # the fork server reaps its exited workers (their CPU time) on SIGCHLD
    cpu = _tree_cpu() - cpu
    if summary.n_ok != summary.n_cases:
        raise SystemExit(f"{summary.n_error} cases failed: {summary.line()}")
    return elapsed, cpu


def _empty(x: int) -> int:
    return x


def _task_overhead_ms(address: str, n: int) -> float:
    """Wall milliseconds per empty task, N tasks submitted at once to the cluster (2 workers)."""
    from distributed import Client, wait

    with Client(address) as client:
        wait(client.map(_empty, range(50), pure=False))  # connections warm
        start = time.perf_counter()
        wait(client.map(_empty, range(n), pure=False))
        return 1000.0 * (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = _parse(argv)
    bundle = bc.resolve_bundle(args.bundle).resolve()
    cases = bc.select_cases("busbra", args.cases)
    import dask
    from distributed import LocalCluster
    from DLRPredictorLib.cohort import dask_runner, pool
    from DLRPredictorLib.inference import predictor

    known = [v.name for v in predictor.load_predictor(bundle).clinical_variables]
    bc.compile_package()
    print(bc.machine_line())
    with tempfile.TemporaryDirectory(prefix="dlr-bench-dask-") as tmp:
        work = Path(tmp)
        manifest = bc.write_manifest(cases, work / "manifest.csv", known)
        warm = bc.write_manifest(cases[:8], work / "warm.csv", known)
        print(f"bundle: {bundle}; cohort: {len(cases)} busbra images; {args.rounds} rounds of A/B/C")
        cold_pool = _timed(manifest, work / "cold_pool.csv", bundle, jobs=2)[0]  # fork server start included
        settings = {"distributed.scheduler.allowed-failures": dask_runner.ALLOWED_FAILURES}
        with dask.config.set(settings):
            kw = {"processes": True, "threads_per_worker": 1, "dashboard_address": ":0", "silence_logs": 40}
            one, two = LocalCluster(n_workers=1, **kw), LocalCluster(n_workers=2, **kw)
        try:
            options = {
                "pool": {"jobs": 2},
                "dask1": {"scheduler": one.scheduler_address},
                "dask2": {"scheduler": two.scheduler_address},
            }
            pool.start_worker_server(bundle)
            for name in CONFIGS:
                _timed(warm, work / f"warm_{name}.csv", bundle, **options[name])
            times: dict[str, list[float]] = {name: [] for name in CONFIGS}
            cpus: dict[str, list[float]] = {name: [] for name in CONFIGS}
            for r in range(args.rounds):
                for name in CONFIGS:
                    wall_s, cpu_s = _timed(manifest, work / f"{name}.csv", bundle, **options[name])
                    times[name].append(wall_s)
                    cpus[name].append(cpu_s)
                line = ", ".join(f"{n} {times[n][-1]:.1f} s ({cpus[n][-1]:.1f} CPU s)" for n in CONFIGS)
                print(f"round {r + 1}: {line}; load {os.getloadavg()[0]:.1f}", flush=True)
            same = all((work / f"{n}.csv").read_bytes() == (work / "pool.csv").read_bytes() for n in CONFIGS)
            per_task = _task_overhead_ms(two.scheduler_address, 1000)
        finally:
            one.close()
            two.close()
        cold_dask = _timed(manifest, work / "cold_dask.csv", bundle, scheduler="local:2")[0]
    n = len(cases)
    wall = {name: bc.median(times[name]) for name in CONFIGS}
    rate = {name: n / wall[name] for name in CONFIGS}
    cpu_ms = {name: 1000.0 * bc.median(cpus[name]) / n for name in CONFIGS}
    rows = [
        (
            name,
            f"{wall[name]:.1f}",
            f"{rate[name]:.1f}",
            f"{rate[name] / rate['pool']:.3f}",
            f"{cpu_ms[name]:.1f}",
        )
        for name in CONFIGS
    ]
    print()
    bc.print_table(("configuration (median)", "wall s", "cases/s", "vs pool", "CPU ms/case"), rows)
    print(f"results files identical to the pool's, byte for byte: {'yes' if same else 'NO'}")
    extra_ms = 1000.0 * (wall["dask2"] - wall["pool"]) / n
    print(f"scheduler overhead per case at 2 workers (dask2 - pool wall time / cases): {extra_ms:.1f} ms")
    print(
        f"CPU per case, all processes (dask2 - pool): {cpu_ms['dask2'] - cpu_ms['pool']:.1f} ms "
        f"({100.0 * (cpu_ms['dask2'] / cpu_ms['pool'] - 1.0):.1f} %)"
    )
    print(f"empty task round trip on the 2-worker cluster (1000 tasks at once): {per_task:.2f} ms per task")
    print(
        f"cold commands (start-up included), {n} cases: pool {cold_pool:.1f} s, "
        f"--scheduler local:2 {cold_dask:.1f} s"
    )
    print(f"\n{bc.machine_line()}")
    targets = [
        bc.Target(
            "LocalCluster(2) / local pool(2) throughput", rate["dask2"] / rate["pool"], 0.85, "x", True
        ),
        bc.Target(
            "LocalCluster 2 workers / 1 worker throughput", rate["dask2"] / rate["dask1"], 1.8, "x", True
        ),
    ]
    return bc.exit_status(bc.print_targets(targets) and same, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
