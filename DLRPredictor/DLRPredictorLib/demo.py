"""`dlrpredictor demo`: the main job on the embedded synthetic phantom, into a saved MRML scene.

It does what a radiologist does in the module, headless: load the image into a scene, take the
lesion as a segment of a segmentation node, predict with the bundled model (and the phantom's
values of the clinical variables the bundle declares, e.g. BI-RADS), write the features table,
the prediction table and the Grad-CAM heatmap into the scene, and save the scene as an .mrb that
opens in 3D Slicer.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .api import load_predictor, predict_nodes
from .inputs import images, lesion, phantom
from .scene import adapter as scene_adapter
from .scene.files import save_scene
from .scene.segmentations import add_segmentation_from_mask
from .scene.volumes import add_volume_node


def run_demo(out: Path, bundle_path: Path | None = None, heatmap_kind: str = "dl-signature") -> str:
    """Run the demo and return a printable summary.

    Args:
        out: output folder (phantom files, scene .mrb, results).
        bundle_path: model bundle; None for the bundled default.
        heatmap_kind: the score the heatmap explains ("dl-signature" or "cnn-head").

    Returns:
        Several lines describing the result and the files written.
    """
    out = Path(out)
    # The phantom's manifest and the prediction carry the clinical values this bundle declares.
    variables = load_predictor(bundle_path).clinical_variables
    declared = [v.name for v in variables]
    paths = phantom.write_phantom(out / "phantom", clinical_columns=declared)
    with open(paths["manifest"], newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    volume = images.read_image(paths["image"])
    mask = lesion.read_mask(paths["mask"], volume)
    scene = scene_adapter.create_scene()
    try:
        vnode = add_volume_node(scene, volume, "Phantom B-mode")
        seg, segment_id = add_segmentation_from_mask(scene, mask, vnode, "Lesion segmentation", "Lesion")
        clinical = {name: first[name] for name in declared if first[name]}
        result = predict_nodes(
            vnode,
            seg,
            segment_id,
            clinical=clinical,
            bundle_path=bundle_path,
            stability=True,
            heatmap_kind=heatmap_kind,
        )
        scene_path = save_scene(scene, out / "demo_scene.mrb")
    finally:
        scene.Clear(1)
    scores = ", ".join(f"{k} {v:.3f}" for k, v in result.signature_scores.items())
    given = ", ".join(f"{v.display} {clinical[v.name]}" for v in variables if v.name in clinical)
    lines = [
        f"DLRPredictor demo on the synthetic phantom ({given or 'no clinical values'})",
        f"probability of malignancy: {result.probability:.3f} -> {result.label} (cutoff {result.cutoff:.3f})",
        f"model used: {result.model_used}",
        f"signature scores: {scores}",
    ]
    if result.total_points is not None:
        lines.append(f"nomogram total points: {result.total_points:.1f}")
    if result.stability is not None:
        probs = result.stability.probabilities
        changes = "yes" if result.stability.label_changes else "no"
        lines.append(
            f"contour stability: probability {min(probs):.3f}-{max(probs):.3f}, label changes: {changes}"
        )
    lines += [f"warning: {w}" for w in result.warnings]
    if "heatmap" in result.provenance:
        lines.append(f"heatmap: Grad-CAM of the {result.provenance['heatmap']}")
    lines.append(f"scene with image, lesion, features table, prediction table and heatmap: {scene_path}")
    return "\n".join(lines)
