"""Cohort prediction inside the 3D Slicer application, headless.

    Slicer --no-main-window --python-script <module dir>/Resources/Scripts/slicer_batch.py \
        predict MANIFEST.csv --out RESULTS.csv [--bundle DIR] [--stability] [--scenes DIR] \
        [--heatmap dl-signature|cnn-head] [--scheduler ADDRESS|local:N]

Uses the application's own scene (slicer.mrmlScene) and modules and never opens a dialog. Each
case is loaded into the scene as a volume and a segmentation, predicted with the module's logic
API (the same `api.predict_nodes` as the GUI), written to the results CSV with the same journal
and resume rules as `dlrpredictor predict`, and removed from the scene again. Exit status: 0 when
every case succeeded, 1 when some failed, 2 for an unusable manifest or bundle (or --heatmap
without --scenes: the heatmap goes only into the scenes, as with `dlrpredictor predict`).

With ``--scheduler`` (or ``$DLR_SCHEDULER``; the option wins) the cases run on that Dask cluster
as ``dlrpredictor predict --scheduler`` runs them (same rows, journal and resume): the workers
predict with the same engine outside the application, so no case passes through its scene.
"""

import argparse
import sys
from pathlib import Path

# DLRPredictorLib lives next to DLRPredictor.py, two folders up from this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slicer_batch.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="predict every case of a manifest CSV")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--stability", action="store_true")
    p.add_argument("--scenes", type=Path, default=None)
    p.add_argument("--heatmap", default=None, help="with --scenes: dl-signature (default) or cnn-head")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address or local:N")
    return parser


def _predict_in_scene(scene, pred, job, stability, scenes_dir, *, heatmap_kind):
    """One case through the application's scene; its nodes are removed afterwards."""
    from DLRPredictorLib.base.case_ids import case_file_stem
    from DLRPredictorLib.inputs import images, lesion
    from DLRPredictorLib.scene import scene_io
    from DLRPredictorLib.scene.case_scene import write_outputs

    volume = images.read_image(job["image"], spacing_mm=job.get("spacing_mm"))
    mask = lesion.read_mask(job["mask"], volume, segment=job.get("segment") or None)
    result = pred.predict(
        volume, mask, job.get("clinical"), stability=stability, heatmap_kind=heatmap_kind, case=job["case_id"]
    )
    guard = scene_io.SceneGuard(scene)
    try:
        with guard:
            vnode = scene_io.add_volume_node(scene, volume, job["case_id"])
            scene_io.add_segmentation_from_mask(scene, mask, vnode, "Lesion segmentation")
            write_outputs(scene, vnode, pred, result)
            if scenes_dir is not None:
                scene_io.save_scene(scene, Path(scenes_dir) / f"{case_file_stem(job['case_id'])}.mrb")
    finally:
        guard.remove_added_nodes()  # the cohort never accumulates nodes in the application
    return result


def _multi_input_scene_writer(scene):
    """Writes a multi-input case's .mrb through the application's scene: every input's image and
    segmentation, its heatmap on its own grid, the prediction table; the nodes are removed again."""

    def write(path, inputs, pred, result):
        from DLRPredictorLib.scene import scene_io
        from DLRPredictorLib.scene.multi_input_scene import write_multi_input_outputs

        guard = scene_io.SceneGuard(scene)
        try:
            with guard:
                nodes = {}
                for name, (volume, mask) in inputs.items():
                    nodes[name] = scene_io.add_volume_node(scene, volume, f"Image {name}")
                    scene_io.add_segmentation_from_mask(
                        scene, mask, nodes[name], f"Lesion segmentation {name}"
                    )
                write_multi_input_outputs(scene, nodes, pred, result)
                path.parent.mkdir(parents=True, exist_ok=True)
                scene_io.save_scene(scene, path)
        finally:
            guard.remove_added_nodes()
        return path

    return write


def main(argv):
    import slicer
    from DLRPredictorLib.base.errors import DLRError
    from DLRPredictorLib.bundle.multi_input import is_multi_input_bundle
    from DLRPredictorLib.cohort import batch
    from DLRPredictorLib.cohort.dask_runner import scheduler_option
    from DLRPredictorLib.cohort.multi_input_batch import predict_multi_input_cohort

    args = _parser().parse_args(argv)
    scheduler = scheduler_option(args.scheduler)
    try:
        heatmap_kind = batch.scene_heatmap_kind(args.heatmap, args.scenes)
        if is_multi_input_bundle(args.bundle):  # a multi-input manifest, one case per row, in process
            summary = predict_multi_input_cohort(
                args.manifest,
                args.out,
                bundle_path=args.bundle,
                scenes_dir=args.scenes,
                heatmap_kind=args.heatmap,
                write_scene=_multi_input_scene_writer(slicer.mrmlScene),
            )
        elif scheduler:
            summary = batch.predict_cohort(
                args.manifest,
                args.out,
                bundle_path=args.bundle,
                stability=args.stability,
                scenes_dir=args.scenes,
                scheduler=scheduler,
                heatmap_kind=args.heatmap,
            )
        else:
            summary = batch.predict_cohort_in_process(
                args.manifest,
                args.out,
                bundle_path=args.bundle,
                stability=args.stability,
                predict_job=lambda pred, job: _predict_in_scene(
                    slicer.mrmlScene, pred, job, args.stability, args.scenes, heatmap_kind=heatmap_kind
                ),
            )
    except DLRError as exc:
        print(f"slicer_batch.py: error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0 if summary.n_error == 0 else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    try:
        import slicer

        slicer.app.exit(code)  # inside the application: leave the event loop with the status
    except (ImportError, AttributeError):
        pass
    sys.exit(code)
