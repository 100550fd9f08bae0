"""The whole ``dlrpredictor predict --jobs 1`` command against pyradiomics' extractor alone.

Usage: ``.venv/bin/python benchmarks/bench_command.py [--bundle DIR] [--cases N] [--runs R]``

What a user waits for, start-up included, on both sides, each a fresh process on the same cohort
CSV (N images spread evenly over BrEaST by default: RGBA pictures, median 537 x 623 pixels,
larger than BUS-BRA's):

- whole command: ``python -m DLRPredictorLib predict COHORT.csv --out RESULTS.csv --jobs 1
  --no-progress`` (``bench_batch.run_batch``): interpreter start, imports, bundle verification
  (hashing), the fork server and its worker, reading each image (RGBA -> luminance) and mask,
  radiomics, the network, fusion, the journal and the results CSV.
- pyradiomics alone: ``python benchmarks/pyradiomics_alone.py`` (see its docstring): interpreter
  start, importing pyradiomics, building the extractor from the bundle's own ``radiomics.yaml``,
  and per case reading image and mask with SimpleITK, the same luminance conversion, extraction on
  the whole image; then the features of every case written to a JSON file.

Runs interleave, the order alternating (drift in machine load hits both sides alike); one untimed
warm-up of each side on 3 cases first (page cache). Target: the median over runs of the per-run
ratio (whole command / pyradiomics alone) <= 1.3. The CPU time of each side, every process
included, is printed beside it: on a machine shared with other work the command's processes get
a larger share of the cores than pyradiomics' single one, which flatters its wall-time ratio; the
CPU ratio is not flattered that way. The radiomics features of both sides are compared on every
case afterwards (DLRPredictor's extraction run in this process, untimed).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bench_batch
import bench_ratio
import benchcommon as bc

ALONE_SCRIPT = Path(__file__).resolve().with_name("pyradiomics_alone.py")
#: prctl option: orphaned descendants are re-parented to this process (linux/prctl.h).
_PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux), so that their CPU counts.

    The command's fork server outlives the command by a moment and nobody waits for it; adopted,
    it is waited for here and its CPU time (its workers' included: it waits for them) is added to
    this process's children's usage.
    """
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_cpu_s() -> float:
    """User + system CPU seconds of every child waited for so far (orphans adopted first)."""
    while True:
        try:
            os.wait()  # an adopted fork server: it exits once its command is gone
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the bundled model)")
    p.add_argument("--cases", type=int, default=60, help="images in the cohort (default 60)")
    p.add_argument(
        "--dataset",
        choices=("busbra", "breast"),
        default="breast",
        help="breast: RGBA PNG with spacing and age (default); busbra: 8-bit grayscale PNG",
    )
    p.add_argument("--runs", type=int, default=3, help="timed runs of each side (default 3)")
    p.add_argument("--work", type=Path, default=None, help="keep cohort CSV, results and logs here")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target fails")
    return p.parse_args(argv)


@dataclass(frozen=True)
class AloneRun:
    """One run of pyradiomics alone: wall time and the child's own milestones."""

    wall_s: float
    imported_s: float
    extractor_s: float
    cpu_s: float


def run_alone(cohort: Path, params: Path, out: Path) -> AloneRun:
    """pyradiomics alone over the cohort CSV in a fresh process, timed from just before the spawn."""
    cmd = [sys.executable, str(ALONE_SCRIPT), str(cohort), str(params), str(out)]
    cpu = children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"pyradiomics alone failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    marks = json.loads(proc.stdout.strip().splitlines()[-1])
    return AloneRun(wall, float(marks["imported_s"]), float(marks["extractor_s"]), children_cpu_s() - cpu)


def run_command(cohort: Path, out: Path, bundle: Path) -> tuple[bench_batch.BatchRun, float]:
    """The whole command (``bench_batch.run_batch`` with one worker) and its CPU seconds, all processes."""
    cpu = children_cpu_s()
    run = bench_batch.run_batch(cohort, out, bundle, 1)
    return run, children_cpu_s() - cpu


def dlr_features(cases: list[bc.BenchCase], bundle: Path) -> dict[str, dict[str, float]]:
    """DLRPredictor's radiomics features of each case as the command computes them (in this process)."""
    from DLRPredictorLib.features import radiomics as rf
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import images, lesion

    pred = predictor.load_predictor(bundle)
    out = {}
    for case in cases:
        volume = images.read_image(case.image, spacing_mm=case.spacing_mm)
        mask = lesion.read_mask(case.mask, volume)
        out[case.case_id] = rf.extract_features(
            pred.lesion_slice(volume, mask), pred.pipeline.radiomics_parameters
        )
    return out


def feature_check(cases: list[bc.BenchCase], bundle: Path, alone_json: Path) -> str:
    """One line: the largest relative difference between the two sides' features over all cases."""
    alone = json.loads(alone_json.read_text(encoding="utf-8"))
    dlr = dlr_features(cases, bundle)
    worst = (0.0, "")
    common = 0
    for case in cases:
        a, b = dlr[case.case_id], alone[case.case_id]
        common = len(set(a) & set(b))
        diff, key = bench_ratio.largest_difference(a, b)
        worst = max(worst, (diff, f"{case.case_id} {key}"))
    if worst[0] == 0.0:
        return f"feature check on all {len(cases)} cases ({common} features): both sides identical"
    return (
        f"feature check on all {len(cases)} cases ({common} features): largest relative difference "
        f"{worst[0]:.2e} ({worst[1]})"
    )


def _run_sides(
    args: argparse.Namespace, cohort: Path, params: Path, bundle: Path, features: Path
) -> tuple[list[tuple[bench_batch.BatchRun, float]], list[AloneRun]]:
    """The timed runs, interleaved, the order alternating."""
    command: list[tuple[bench_batch.BatchRun, float]] = []
    alone: list[AloneRun] = []
    for rep in range(args.runs):
        for side in ("command", "alone") if rep % 2 == 0 else ("alone", "command"):
            if side == "command":
                run, cpu = run_command(cohort, cohort.with_name("results.csv"), bundle)
                command.append((run, cpu))
                note = f", first error row: {run.first_error}" if run.first_error else ""
                print(
                    f"  run {rep + 1}: whole command {run.wall_s:.2f} s, CPU {cpu:.2f} s "
                    f"({run.n_ok}/{run.n_rows} ok, first row after {run.first_row_s:.2f} s){note}",
                    flush=True,
                )
            else:
                a = run_alone(cohort, params, features)
                alone.append(a)
                print(
                    f"  run {rep + 1}: pyradiomics alone {a.wall_s:.2f} s, CPU {a.cpu_s:.2f} s "
                    f"(pyradiomics imported after {a.imported_s:.2f} s, extractor ready after "
                    f"{a.extractor_s:.2f} s)",
                    flush=True,
                )
    return command, alone


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = _parse(argv)
    bundle = bc.resolve_bundle(args.bundle).resolve()
    cases = bc.select_cases(args.dataset, args.cases)
    from DLRPredictorLib.inference import predictor

    known = [v.name for v in predictor.load_predictor(bundle).clinical_variables]
    params = bench_ratio.parameter_file(bundle)
    bc.compile_package()
    adopted = adopt_orphans()
    print(bc.machine_line())
    with tempfile.TemporaryDirectory(prefix="dlr-bench-command-") as tmp:
        work = args.work.resolve() if args.work else Path(tmp)
        cohort = bc.write_manifest(cases, work / "cohort.csv", known)
        features = work / "pyradiomics_features.json"
        print(f"bundle: {bundle}; parameter file: {params.name}; cohort: {len(cases)} {args.dataset} images")
        warm = bc.write_manifest(cases[:3], work / "warmup.csv", known)
        run_command(warm, work / "warmup_results.csv", bundle)
        run_alone(warm, params, work / "warmup_features.json")
        print(f"{args.runs} run(s) of each side, order alternating (one untimed warm-up of each on 3 cases)")
        command, alone = _run_sides(args, cohort, params, bundle, features)
        print(feature_check(cases, bundle, features))
    ratios = [c.wall_s / a.wall_s for (c, _), a in zip(command, alone, strict=True)]
    cpu_ratios = [cpu / a.cpu_s for (_, cpu), a in zip(command, alone, strict=True)]
    print(f"\nWhole command vs pyradiomics alone, {len(cases)} {args.dataset} images, fresh processes (s):")
    rows = [
        (
            f"run {i + 1}",
            f"{c.wall_s:.2f}",
            f"{c.first_row_s:.2f}",
            f"{a.wall_s:.2f}",
            f"{a.extractor_s:.2f}",
            f"{r:.2f}",
            f"{cpu:.2f}",
            f"{a.cpu_s:.2f}",
            f"{rc:.2f}",
        )
        for i, ((c, cpu), a, r, rc) in enumerate(zip(command, alone, ratios, cpu_ratios, strict=True))
    ]
    rows.append(
        (
            "median",
            f"{bc.median([c.wall_s for c, _ in command]):.2f}",
            f"{bc.median([c.first_row_s for c, _ in command]):.2f}",
            f"{bc.median([a.wall_s for a in alone]):.2f}",
            f"{bc.median([a.extractor_s for a in alone]):.2f}",
            f"{bc.median(ratios):.2f}",
            f"{bc.median([cpu for _, cpu in command]):.2f}",
            f"{bc.median([a.cpu_s for a in alone]):.2f}",
            f"{bc.median(cpu_ratios):.2f}",
        )
    )
    headers = ("", "command", "first row", "pyradiomics", "extractor ready", "RATIO", "command CPU")
    bc.print_table((*headers, "pyradiomics CPU", "CPU ratio"), rows)
    if not adopted:
        print("(CPU: the command's fork server could not be adopted here; its CPU is left out)")
    print(f"\n{bc.machine_line()}")
    targets = [
        bc.Target(
            f"whole predict --jobs 1 / pyradiomics alone ({len(cases)} images, median of runs)",
            bc.median(ratios),
            1.3,
            "x",
        )
    ]
    return bc.exit_status(bc.print_targets(targets), args.strict)


if __name__ == "__main__":
    sys.exit(main())
