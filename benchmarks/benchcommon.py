"""Shared helpers of the benchmark scripts: bundle and data lookup, case lists, tables, targets.

The benchmark scripts import this file as a sibling module (``python benchmarks/bench_*.py`` puts
``benchmarks/`` first on ``sys.path``). Nothing here touches torch or slicer.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # DLRPredictorLib comes from .venv (editable)

EXIT_NO_BUNDLE = 2
EXIT_TARGET_FAILED = 1


@dataclass(frozen=True)
class BenchCase:
    """One real image with its lesion mask and the clinical values the data set has."""

    case_id: str
    image: Path
    mask: Path
    spacing_mm: float | None = None
    clinical: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A performance target of the project and the value measured for it."""

    name: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def passed(self) -> bool:
        """Whether the measured value meets the limit (NaN never passes)."""
        if math.isnan(self.value):  # nothing was measured
            return False
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


def shared_data_root() -> Path:
    """``../shared/data`` beside the repository, or ``$DLR_SHARED_DATA`` (as the test fixtures)."""
    return Path(os.environ.get("DLR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def resolve_bundle(bundle: Path | None) -> Path:
    """The bundle folder to benchmark; exits with status 2 and one clear line when it is missing.

    Args:
        bundle: ``--bundle`` as given, or None for ``predictor.default_bundle_path()``.

    Returns:
        The folder (it holds a ``manifest.json``).
    """
    from DLRPredictorLib.inference import predictor

    path = Path(bundle) if bundle is not None else predictor.default_bundle_path()
    if not (path / "manifest.json").is_file():
        what = "the given bundle" if bundle is not None else "the default bundle"
        print(
            f"error: {what} {path} does not exist (no manifest.json there); build it with "
            "scripts/build_default_bundle.sh or pass --bundle DIR (a bundle made by `dlrpredictor train`)",
            file=sys.stderr,
        )
        sys.exit(EXIT_NO_BUNDLE)
    return path


def require_data(dataset: str) -> Path:
    """The data root; prints a SKIPPED line and exits 0 when the real data is absent.

    Args:
        dataset: "busbra" or "breast".

    Returns:
        The shared data root.
    """
    root = shared_data_root()
    folder = root / ("BUS-BRA" if dataset == "busbra" else "BrEaST-Lesions-USG")
    if not folder.is_dir():
        print(
            f"SKIPPED: real breast-ultrasound data not found at {folder} (a user's clone has no shared/; "
            "set DLR_SHARED_DATA to the folder holding BUS-BRA/ and BrEaST-Lesions-USG/)"
        )
        sys.exit(0)
    return root


def busbra_cases(root: Path) -> list[BenchCase]:
    """Every BUS-BRA image (8-bit grayscale PNG, no spacing) with its BI-RADS category."""
    base = root / "BUS-BRA"
    with open(base / "bus_data.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [
        BenchCase(
            case_id=r["ID"],
            image=base / "Images" / f"{r['ID']}.png",
            mask=base / "Masks" / f"mask_{r['ID'][4:]}.png",
            clinical={"birads": r["BIRADS"]},
        )
        for r in rows
    ]


def breast_cases(root: Path) -> list[BenchCase]:
    """BrEaST images with a tumour mask (RGBA PNG, pixel size in mm, age and BI-RADS)."""
    base = root / "BrEaST-Lesions-USG"
    with open(base / "clinical.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cases = []
    for r in rows:
        if r["Classification"] not in ("benign", "malignant") or not r["Mask_tumor_filename"]:
            continue
        clinical = {"birads": r["BIRADS"]}
        if r["Age"].replace(".", "", 1).isdigit():
            clinical["age"] = r["Age"]
        cases.append(
            BenchCase(
                case_id=f"breast{int(r['CaseID']):03d}",
                image=base / "images_and_masks" / r["Image_filename"],
                mask=base / "images_and_masks" / r["Mask_tumor_filename"].split("&")[0],
                spacing_mm=float(r["Pixel_size"]) * 10.0,  # the table gives cm per pixel
                clinical=clinical,
            )
        )
    return cases


def select_cases(dataset: str, n: int) -> list[BenchCase]:
    """``n`` cases spread evenly over a data set (deterministic; all scanners are represented).

    Args:
        dataset: "busbra" or "breast".
        n: number of cases (at most the data set's size).

    Returns:
        The cases, in data-set order.
    """
    root = require_data(dataset)
    every = busbra_cases(root) if dataset == "busbra" else breast_cases(root)
    n = max(1, min(int(n), len(every)))
    return [every[(i * len(every)) // n] for i in range(n)]


def clinical_for(case: BenchCase, known: Sequence[str]) -> dict[str, str]:
    """The case's clinical values restricted to the variables the bundle declares."""
    return {k: v for k, v in case.clinical.items() if k in known}


def write_manifest(cases: Sequence[BenchCase], path: Path, clinical_names: Sequence[str]) -> Path:
    """A cohort manifest CSV (absolute paths) for ``dlrpredictor predict``.

    Args:
        cases: the cases.
        path: CSV to write.
        clinical_names: clinical variables of the bundle (other values are left out).

    Returns:
        The path written.
    """
    names = [n for n in clinical_names if any(n in c.clinical for c in cases)]
    columns = ["case_id", "image", "mask", "spacing_mm", *names]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for c in cases:
            row = {"case_id": c.case_id, "image": str(c.image), "mask": str(c.mask)}
            row["spacing_mm"] = "" if c.spacing_mm is None else repr(c.spacing_mm)
            row.update({n: c.clinical.get(n, "") for n in names})
            writer.writerow(row)
    return path


def median(values: Sequence[float]) -> float:
    """Median, NaN for an empty list."""
    return float(statistics.median(values)) if values else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (q in 0..1), NaN for an empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A compact left/right aligned text table (first column left, others right)."""
    text = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        return "  ".join(cells)

    print(line(text[0]))
    print("  ".join("-" * w for w in widths))
    for r in text[1:]:
        print(line(r))


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def print_targets(targets: Sequence[Target]) -> bool:
    """Print each target with PASS/FAIL.

    Returns:
        True when every target passed.
    """
    print("\nTargets (prediction end to end; 2 CPU cores, typical 2D ultrasound images):")
    rows = []
    for t in targets:
        op = ">=" if t.higher_is_better else "<="
        verdict = "PASS" if t.passed else "FAIL"
        rows.append((t.name, f"{_number(t.value)} {t.unit}", f"{op} {t.limit:g} {t.unit}", verdict))
    print_table(("target", "measured", "limit", "result"), rows)
    return all(t.passed for t in targets)


def compile_package() -> None:
    """Byte-compile DLRPredictorLib (as ``scripts/setup.sh`` and any pip install do).

    Called once before timing: an edit since the set-up, in an environment that never writes
    bytecode caches (PYTHONDONTWRITEBYTECODE), would otherwise add its compilation to every
    timed process start.
    """
    import compileall

    compileall.compile_dir(str(REPO_ROOT / "DLRPredictor" / "DLRPredictorLib"), quiet=2)


def machine_line() -> str:
    """CPU count and load average: timings on a loaded machine are not comparable."""
    load = os.getloadavg()
    cpus = os.cpu_count() or 1
    note = ""
    if load[0] > 0.5 * cpus:
        note = f"  WARNING: the machine is busy (load {load[0]:.1f} on {cpus} CPUs): timings are disturbed"
    return (
        f"machine: {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}{note}"
    )


def threads_line() -> str:
    """BLAS threads of this process, and whether anything imported torch (a prediction needs none)."""
    from threadpoolctl import threadpool_info

    blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
    return (
        f"BLAS threads: {', '.join(map(str, blas)) or 'n/a'} (each prediction holds 1 while it runs); "
        f"torch imported: {'yes' if 'torch' in sys.modules else 'no'}"
    )


def exit_status(all_passed: bool, strict: bool) -> int:
    """0, or 1 when ``--strict`` was given and a target failed."""
    return EXIT_TARGET_FAILED if (strict and not all_passed) else 0
