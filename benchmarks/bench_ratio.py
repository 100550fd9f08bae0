"""The full DLR predict against pyradiomics' own extraction alone, side by side in one run.

Usage: ``.venv/bin/python benchmarks/bench_ratio.py [--bundle DIR] [--cases N] [--repeats R]``

Same BUS-BRA cases (8-bit grayscale PNG, the pyradiomics input needs no conversion), same
parameter file (the bundle's own ``radiomics.yaml``), interleaved: every repeat of every case runs
each variant once, the order rotating between repeats so that drift in machine load hits all
variants alike.

- DLR full: ``images.read_image`` + ``lesion.read_mask`` + ``Predictor.predict`` with Grad-CAM
  (radiomics, CNN features, Grad-CAM, fusion; no scene).
- DLR batch row: ``cohort.rows.predict_cohort_row`` as the cohort CLI runs it (no Grad-CAM).
- pyradiomics alone: ``SimpleITK.ReadImage`` of image and mask (image cast to float64, mask
  binarised to label 1) and ``RadiomicsFeatureExtractor(<bundle>/radiomics.yaml).execute``
  called directly.

The features of both sides are compared key by key on every case (first repeat), to show that
the two sides compute the same thing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchcommon as bc

VARIANTS = ("dlr_full", "dlr_batch", "pyradiomics")
LABELS = {
    "dlr_full": "DLR full predict (read + features + CNN + Grad-CAM + fusion)",
    "dlr_batch": "DLR batch row (predict_cohort_row, no Grad-CAM)",
    "pyradiomics": "pyradiomics alone (sitk read + extractor.execute)",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the bundled model)")
    p.add_argument("--cases", type=int, default=20, help="BUS-BRA cases (default 20)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant per case (default 3)")
    p.add_argument("--threads", type=int, default=None, help="BLAS and SimpleITK threads")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target fails")
    return p.parse_args(argv)


def parameter_file(bundle: Path) -> Path:
    """The bundle's pyradiomics parameter file (``extra.radiomics_parameters`` of its manifest)."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return bundle / manifest.get("extra", {}).get("radiomics_parameters", "radiomics.yaml")


class Sides:
    """The three variants, ready to run on a case."""

    def __init__(self, bundle: Path) -> None:
        from DLRPredictorLib.inference import predictor
        from radiomics.featureextractor import RadiomicsFeatureExtractor

        self.pred = predictor.load_predictor(bundle)
        self.known = [v.name for v in self.pred.clinical_variables]
        self.params = parameter_file(bundle)
        self.extractor = RadiomicsFeatureExtractor(str(self.params))
        self.label = int(self.extractor.settings.get("label", 1))

    def dlr_full(self, case: bc.BenchCase) -> dict[str, float]:
        from DLRPredictorLib.inputs import images, lesion

        volume = images.read_image(case.image, spacing_mm=case.spacing_mm)
        mask = lesion.read_mask(case.mask, volume)
        res = self.pred.predict(volume, mask, bc.clinical_for(case, self.known), heatmap=True)
        return res.features

    def dlr_batch(self, case: bc.BenchCase) -> dict[str, float]:
        from DLRPredictorLib.cohort.rows import predict_cohort_row

        job = {
            "case_id": case.case_id,
            "image": str(case.image),
            "mask": str(case.mask),
            "spacing_mm": case.spacing_mm,
            "clinical": bc.clinical_for(case, self.known),
        }
        return predict_cohort_row(self.pred, job).features

    def pyradiomics(self, case: bc.BenchCase) -> dict[str, float]:
        import SimpleITK as sitk

        # float64 as DLRPredictor passes it: on the 8-bit image itself pyradiomics' binning computes
        # `maximum + 2 * binWidth` in uint8, which overflows at 255 and changes the bin edges.
        image = sitk.Cast(sitk.ReadImage(str(case.image)), sitk.sitkFloat64)
        mask = sitk.Cast(sitk.ReadImage(str(case.mask)) != 0, sitk.sitkUInt8) * self.label
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_binary_pattern.*")
            result = self.extractor.execute(image, mask, label=self.label)
        return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}

    def run(self, variant: str) -> Callable[[bc.BenchCase], dict[str, float]]:
        return getattr(self, variant)


def largest_difference(dlr: dict[str, float], pyrad: dict[str, float]) -> tuple[float, str]:
    """The largest relative difference over the common feature keys, and its key."""
    worst, worst_key = 0.0, ""
    for k in sorted(set(dlr) & set(pyrad)):
        a, b = dlr[k], pyrad[k]
        if math.isnan(a) and math.isnan(b):
            continue
        diff = abs(a - b) / max(1e-12, abs(a), abs(b))
        if diff > worst:
            worst, worst_key = diff, k
    return worst, worst_key


def compare_features(dlr: dict[str, float], pyrad: dict[str, float]) -> str:
    """One line: common keys and the largest relative difference between the two sides."""
    common = set(dlr) & set(pyrad)
    worst, worst_key = largest_difference(dlr, pyrad)
    only = len(set(dlr) ^ set(pyrad))
    where = f" ({worst_key})" if worst_key else ""
    return (
        f"feature check on the first case: {len(common)} common features, {only} on one side only, "
        f"largest relative difference {worst:.2e}{where}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = _parse(argv)
    bundle = bc.resolve_bundle(args.bundle)
    cases = bc.select_cases("busbra", args.cases)
    logging.getLogger("radiomics").setLevel(logging.ERROR)  # both sides use the same logger
    if args.threads:
        from DLRPredictorLib.inference import predictor

        predictor.set_threads(args.threads)
    bc.compile_package()
    print(bc.machine_line())
    sides = Sides(bundle)
    print(f"bundle: {bundle}; parameter file: {sides.params}")
    print(f"{len(cases)} BUS-BRA cases x {args.repeats} repeats, variants interleaved")
    # Warm-up (extractor, CNN load, torch import) and the equivalence check.
    first = {v: sides.run(v)(cases[0]) for v in VARIANTS}
    print(compare_features(first["dlr_full"], first["pyradiomics"]))
    times: dict[str, dict[str, list[float]]] = {v: {c.case_id: [] for c in cases} for v in VARIANTS}
    worst = (0.0, "")
    for rep in range(args.repeats):
        for i, case in enumerate(cases):
            shift = (rep + i) % len(VARIANTS)
            out: dict[str, Any] = {}
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                fn: Callable[[bc.BenchCase], Any] = sides.run(variant)
                start = time.perf_counter()
                out[variant] = fn(case)
                times[variant][case.case_id].append(time.perf_counter() - start)
            if rep == 0:
                diff, key = largest_difference(out["dlr_full"], out["pyradiomics"])
                worst = max(worst, (diff, f"{case.case_id} {key}"))
    if worst[0] == 0.0:
        print(f"feature check on all {len(cases)} cases: DLR and pyradiomics features identical")
    else:
        print(
            f"feature check on all {len(cases)} cases: largest relative difference "
            f"{worst[0]:.2e} ({worst[1]})"
        )
    per_case = {v: [bc.median(times[v][c.case_id]) for c in cases] for v in VARIANTS}
    print(bc.threads_line())
    print("\nPer-case median over repeats, then median / 90th percentile over cases (ms):")
    rows = [
        (LABELS[v], f"{1000 * bc.median(per_case[v]):.1f}", f"{1000 * bc.quantile(per_case[v], 0.9):.1f}")
        for v in VARIANTS
    ]
    bc.print_table(("variant", "median", "p90"), rows)
    ratios_full = [a / b for a, b in zip(per_case["dlr_full"], per_case["pyradiomics"], strict=True)]
    ratios_batch = [a / b for a, b in zip(per_case["dlr_batch"], per_case["pyradiomics"], strict=True)]
    ratio_of_medians = bc.median(per_case["dlr_full"]) / bc.median(per_case["pyradiomics"])
    print("\nRatios to pyradiomics alone:")
    bc.print_table(
        ("ratio", "median of per-case ratios", "min", "max", "ratio of medians"),
        [
            (
                "DLR full / pyradiomics",
                f"{bc.median(ratios_full):.2f}",
                f"{min(ratios_full):.2f}",
                f"{max(ratios_full):.2f}",
                f"{ratio_of_medians:.2f}",
            ),
            (
                "DLR batch row / pyradiomics",
                f"{bc.median(ratios_batch):.2f}",
                f"{min(ratios_batch):.2f}",
                f"{max(ratios_batch):.2f}",
                f"{bc.median(per_case['dlr_batch']) / bc.median(per_case['pyradiomics']):.2f}",
            ),
        ],
    )
    print(f"\n{bc.machine_line()}")
    targets = [
        bc.Target(
            "full DLR predict / pyradiomics alone (median of per-case ratios)",
            bc.median(ratios_full),
            1.3,
            "x",
        )
    ]
    return bc.exit_status(bc.print_targets(targets), args.strict)


if __name__ == "__main__":
    sys.exit(main())
