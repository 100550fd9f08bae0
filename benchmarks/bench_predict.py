"""Warm per-case latency of a prediction, broken down by stage, and the cold start.

Usage: ``.venv/bin/python benchmarks/bench_predict.py [--bundle DIR] [--cases N]``

Warm: one process, the bundle loaded and two warm-up predictions done. For every case the image
and its lesion are put into a plain-Python MRML scene (slicer-core), then, alternating the order
per case:

- the stages one after the other through their public functions (lesion slice, radiomics,
  deep features + Grad-CAM, fusion; then ``Predictor.predict`` for the whole computation and
  ``scene.case_scene.write_outputs`` for scene writing; reading the nodes back and the bundle re-verification
  that ``api.predict_nodes`` does on every call are timed separately too);
- the real end-to-end call ``api.predict_nodes`` (nodes in, tables and heatmap written).

Cold: a fresh ``python`` subprocess per run: imports, bundle load (verification included), reading
one case and its first prediction with Grad-CAM; timed from just before the process is spawned.
The same child then imports slicer, builds a scene and writes the outputs (reported, not a target:
inside Slicer the application and its scene already exist).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchcommon as bc

STAGES = (
    ("lesion slice", "lesion"),
    ("radiomics (pyradiomics)", "radiomics"),
    ("deep features + Grad-CAM", "deep"),
    ("fusion (frozen pipeline)", "fusion"),
    ("scene writing (write_outputs)", "write"),
)
EXTRA = (
    ("Predictor.predict (no scene)", "predict"),
    ("nodes -> arrays (predict_nodes)", "read_nodes"),
    ("bundle re-verification (load_predictor)", "verify"),
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the bundled model)")
    p.add_argument("--cases", type=int, default=20, help="real cases for the warm benchmark (default 20)")
    p.add_argument(
        "--dataset",
        choices=("busbra", "breast"),
        default="busbra",
        help="busbra: 8-bit grayscale PNG (default); breast: RGBA PNG with spacing and age",
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed predictions first (default 2)")
    p.add_argument("--cold-runs", type=int, default=5, help="fresh-process cold starts (default 5; 0 skips)")
    p.add_argument("--threads", type=int, default=None, help="BLAS and SimpleITK threads")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also write cProfile statistics of the warm end-to-end calls to this file",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    p.add_argument("--cold-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@dataclass
class SceneCase:
    """A case read from disk and put into the scene."""

    volume: Any
    mask: Any
    volume_node: Any
    segmentation_node: Any
    segment_id: str
    clinical: dict[str, str]


class WarmBench:
    """One scene and one loaded predictor; times the stages and the end-to-end call per case."""

    def __init__(self, bundle: Path) -> None:
        from DLRPredictorLib.inference import predictor
        from DLRPredictorLib.scene import adapter as scene_adapter

        self.bundle = bundle
        self.pred = predictor.load_predictor(bundle)
        self.known = [v.name for v in self.pred.clinical_variables]
        self.scene = scene_adapter.create_scene()
        scene_adapter.install_globals(self.scene)

    def add_case(self, case: bc.BenchCase) -> SceneCase:
        """Read a case from disk and put it into the scene (untimed set-up)."""
        from DLRPredictorLib.inputs import images, lesion
        from DLRPredictorLib.scene import scene_io

        volume = images.read_image(case.image, spacing_mm=case.spacing_mm)
        mask = lesion.read_mask(case.mask, volume)
        vnode = scene_io.add_volume_node(self.scene, volume, case.case_id)
        seg, sid = scene_io.add_segmentation_from_mask(self.scene, mask, vnode, f"{case.case_id} lesion")
        return SceneCase(volume, mask, vnode, seg, sid, bc.clinical_for(case, self.known))

    def remove_case(self, c: SceneCase) -> None:
        """Remove the case's input nodes (the output nodes are re-used by the next case)."""
        self.scene.RemoveNode(c.segmentation_node)
        self.scene.RemoveNode(c.volume_node)

    def stages(self, c: SceneCase) -> dict[str, float]:
        """The stages in sequence through their public functions; seconds per stage."""
        from DLRPredictorLib.deep.heatmap import heatmap_to_slice, heatmap_volume
        from DLRPredictorLib.features import radiomics as rf
        from DLRPredictorLib.inference import predictor
        from DLRPredictorLib.inputs.crops import lesion_crop
        from DLRPredictorLib.scene import scene_io
        from DLRPredictorLib.scene.case_scene import write_outputs

        pred, t = self.pred, {}
        volume, mask, vnode, clinical = c.volume, c.mask, c.volume_node, c.clinical

        def lesion_stage() -> Any:
            return pred.lesion_slice(volume, mask), pred.pipeline.check_clinical(clinical)

        (lesion, values), t["lesion"] = _timed(lesion_stage)
        params = pred.pipeline.radiomics_parameters
        features, t["radiomics"] = _timed(lambda: rf.extract_features(lesion, params))

        def deep_stage() -> Any:
            if not pred.pipeline.uses_cnn:
                return None
            model = pred.deep_model()
            crop, box = lesion_crop(lesion, pred.pipeline.crop_spec())
            vector, cam, _prob = model.features_and_gradcam(crop)
            cam_slice = heatmap_to_slice(cam, box, lesion.image.shape)
            heatmap_volume(cam_slice, volume.shape, lesion.slice_index)
            return vector

        vector, t["deep"] = _timed(deep_stage)
        _out, t["fusion"] = _timed(lambda: pred.pipeline.predict(features, vector, values))
        res, t["predict"] = _timed(lambda: pred.predict(volume, mask, clinical, heatmap=True))
        _nodes, t["write"] = _timed(lambda: write_outputs(self.scene, vnode, pred, res))

        def read_nodes() -> Any:
            return (
                scene_io.image_from_volume_node(vnode),
                scene_io.mask_from_segment(c.segmentation_node, c.segment_id, vnode),
            )

        _arrays, t["read_nodes"] = _timed(read_nodes)
        _p, t["verify"] = _timed(lambda: predictor.load_predictor(self.bundle))
        return t

    def end_to_end(self, c: SceneCase) -> tuple[float, Any]:
        """Seconds of one ``api.predict_nodes`` call, and its result."""
        from DLRPredictorLib import api

        res, dt = _timed(
            lambda: api.predict_nodes(
                c.volume_node, c.segmentation_node, c.segment_id, clinical=c.clinical, bundle_path=self.bundle
            )
        )
        return dt, res


def run_warm(
    args: argparse.Namespace, bundle: Path, cases: list[bc.BenchCase]
) -> tuple[dict[str, list[float]], list[float], set[str]]:
    """Warm-up, then stages and end-to-end per case (order alternating). Returns the samples."""
    bench = WarmBench(bundle)
    samples: dict[str, list[float]] = {key: [] for _, key in (*STAGES, *EXTRA)}
    e2e: list[float] = []
    models: set[str] = set()
    profiler = cProfile.Profile() if args.profile else None
    for i in range(args.warmup):
        c = bench.add_case(cases[i % len(cases)])
        bench.stages(c)
        bench.end_to_end(c)
        bench.remove_case(c)
    for i, case in enumerate(cases):
        c = bench.add_case(case)
        if i % 2:
            if profiler:
                profiler.enable()
            dt, res = bench.end_to_end(c)
            if profiler:
                profiler.disable()
            t = bench.stages(c)
        else:
            t = bench.stages(c)
            if profiler:
                profiler.enable()
            dt, res = bench.end_to_end(c)
            if profiler:
                profiler.disable()
        e2e.append(dt)
        models.add(res.model_used)
        for key, value in t.items():
            samples[key].append(value)
        bench.remove_case(c)
    if profiler:
        _write_profile(profiler, args.profile)
    return samples, e2e, models


def _write_profile(profiler: cProfile.Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(path))
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)
    print(f"\ncProfile of the warm predict_nodes calls (saved to {path}):")
    print("\n".join(line for line in buf.getvalue().splitlines() if line.strip()))


# ------------------------------------------------------------------------------------ cold start


def cold_child(spec_json: str) -> None:
    """Runs in the fresh subprocess: prints JSON milestones in seconds since the parent spawned it."""
    spec = json.loads(spec_json)
    t_spawn = float(spec["t_spawn"])
    marks: dict[str, float] = {"interpreter": time.time() - t_spawn}
    from DLRPredictorLib.inference import predictor
    from DLRPredictorLib.inputs import images, lesion

    marks["imports"] = time.time() - t_spawn
    if spec.get("threads"):
        predictor.set_threads(int(spec["threads"]))
    pred = predictor.load_predictor(spec["bundle"])
    marks["bundle_load"] = time.time() - t_spawn
    volume = images.read_image(spec["image"], spacing_mm=spec["spacing_mm"])
    mask = lesion.read_mask(spec["mask"], volume)
    clinical = {k: v for k, v in spec["clinical"].items() if k in [c.name for c in pred.clinical_variables]}
    pred.predict(volume, mask, clinical, heatmap=True)
    marks["first_prediction"] = time.time() - t_spawn
    from DLRPredictorLib import api
    from DLRPredictorLib.scene import adapter as scene_adapter
    from DLRPredictorLib.scene import scene_io

    scene = scene_adapter.create_scene()
    scene_adapter.install_globals(scene)
    vnode = scene_io.add_volume_node(scene, volume, "Image")
    seg, sid = scene_io.add_segmentation_from_mask(scene, mask, vnode, "Lesion")
    api.predict_nodes(vnode, seg, sid, clinical=clinical, bundle_path=spec["bundle"])
    marks["first_predict_nodes"] = time.time() - t_spawn
    print("COLD " + json.dumps(marks), flush=True)


def run_cold(args: argparse.Namespace, bundle: Path, case: bc.BenchCase) -> list[dict[str, float]]:
    """``--cold-runs`` fresh processes; their milestones."""
    runs = []
    for _ in range(args.cold_runs):
        spec = {
            "bundle": str(bundle),
            "image": str(case.image),
            "mask": str(case.mask),
            "spacing_mm": case.spacing_mm,
            "clinical": case.clinical,
            "threads": args.threads,
        }
        spec["t_spawn"] = time.time()
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--cold-child", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.time() - spec["t_spawn"]
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("COLD ")]
        if proc.returncode != 0 or not lines:
            tail = proc.stderr.strip()[-2000:]
            print(f"cold-start child failed (exit {proc.returncode}): {tail}", file=sys.stderr)
            continue
        marks = json.loads(lines[-1][5:])
        marks["process_exit"] = wall
        runs.append(marks)
    return runs


# ------------------------------------------------------------------------------------ report


def _ms(x: float) -> str:
    return f"{1000 * x:.1f}"


def report(
    samples: dict[str, list[float]], e2e: list[float], models: set[str], cold: list[dict[str, float]], n: int
) -> list[bc.Target]:
    """Print the tables; return the targets."""
    e2e_med = bc.median(e2e)
    print(f"\nWarm predict, {n} cases (median / 90th percentile over cases, ms; share of end-to-end median):")
    rows = []
    for label, key in STAGES:
        m = bc.median(samples[key])
        rows.append((label, _ms(m), _ms(bc.quantile(samples[key], 0.9)), f"{100 * m / e2e_med:.0f}%"))
    stage_sum = sum(bc.median(samples[k]) for _, k in STAGES)
    rows.append(("sum of the stage medians", _ms(stage_sum), "", f"{100 * stage_sum / e2e_med:.0f}%"))
    for label, key in EXTRA:
        m = bc.median(samples[key])
        rows.append((label, _ms(m), _ms(bc.quantile(samples[key], 0.9)), f"{100 * m / e2e_med:.0f}%"))
    rows.append(("END TO END api.predict_nodes", _ms(e2e_med), _ms(bc.quantile(e2e, 0.9)), "100%"))
    bc.print_table(("stage", "median", "p90", "share"), rows)
    print(f"model used: {', '.join(sorted(models))}")
    cold_med = float("nan")
    if cold:
        print(f"\nCold start, {len(cold)} fresh processes (seconds since spawn; median, min, max):")
        crow = []
        for key, label in (
            ("interpreter", "python started, script running"),
            ("imports", "DLRPredictorLib imported"),
            ("bundle_load", "bundle verified and loaded"),
            ("first_prediction", "FIRST PREDICTION (read + predict + Grad-CAM)"),
            ("first_predict_nodes", "+ import slicer, scene, predict_nodes"),
            ("process_exit", "process exited"),
        ):
            vals = [r[key] for r in cold]
            crow.append((label, f"{bc.median(vals):.2f}", f"{min(vals):.2f}", f"{max(vals):.2f}"))
        bc.print_table(("milestone", "median", "min", "max"), crow)
        cold_med = bc.median([r["first_prediction"] for r in cold])
    return [
        bc.Target("warm predict incl. Grad-CAM + scene (median)", e2e_med, 0.3, "s"),
        bc.Target("cold start to first prediction (median)", cold_med, 3.0, "s"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    args = _parse(argv)
    if args.cold_child:
        cold_child(args.cold_child)
        return 0
    bundle = bc.resolve_bundle(args.bundle)
    cases = bc.select_cases(args.dataset, args.cases)
    if args.threads:
        from DLRPredictorLib.inference import predictor

        predictor.set_threads(args.threads)
    bc.compile_package()
    print(bc.machine_line())
    print(f"bundle: {bundle}; data: {args.dataset}, {len(cases)} cases; warm-up {args.warmup}")
    samples, e2e, models = run_warm(args, bundle, cases)
    print(bc.threads_line())
    cold = run_cold(args, bundle, cases[0]) if args.cold_runs > 0 else []
    targets = report(samples, e2e, models, cold, len(cases))
    print(f"\n{bc.machine_line()}")
    return bc.exit_status(bc.print_targets(targets), args.strict)


if __name__ == "__main__":
    sys.exit(main())
