"""The logic API of the Slicer module and the Python console: MRML nodes (or arrays) in, results out.

Usage in Slicer's Python console (or in plain Python with ``scene_adapter.create_scene()``)::

    from DLRPredictorLib import api
    result = api.predict_nodes(volumeNode, segmentationNode, clinical={"age": 54, "birads": "4b"})
    print(result.probability, result.label, result.model_used)

All the computation happens before anything is written to the scene, and the writing runs inside
``scene_io.SceneGuard``: a failure leaves the node count and contents as they were. Re-running
with the same output names updates the same nodes instead of adding new ones.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base.case import ImageVolume
from .base.compat import zip_strict
from .base.errors import InputError, LesionError
from .inference.predictor import (
    CasePrediction,
    Predictor,
    StabilityResult,
    default_bundle_path,
    load_predictor,
)

ProgressCallback = Callable[[float, str], None]

__all__ = [
    "PredictionResult",
    "StabilityResult",
    "default_bundle_path",
    "load_predictor",
    "phantom_sample_paths",
    "predict_arrays",
    "predict_nodes",
]


@dataclass
class PredictionResult:
    """What `predict_nodes` returns: the prediction and the ids of the nodes it wrote."""

    probability: float
    label: str
    cutoff: float
    model_used: str
    signature_scores: dict[str, float]
    contributions: list[tuple[str, float]]
    nomogram_points: dict[str, float]
    total_points: float | None
    warnings: list[str]
    stability: StabilityResult | None
    provenance: dict[str, str]
    out_of_distribution: bool
    features_table_node_id: str | None = None
    prediction_table_node_id: str | None = None
    heatmap_node_id: str | None = None


def _progress(progress: ProgressCallback | None, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


def prediction_items(pred: Predictor, res: CasePrediction) -> list[tuple[str, str | float]]:
    """Rows of the prediction table: the answer first, then scores, explanation and provenance."""
    items: list[tuple[str, str | float]] = [
        (f"Probability ({pred.positive_class})", res.probability),
        ("Predicted label", res.label),
        ("Cutoff (frozen at training)", res.cutoff),
        ("Model used", res.model_used),
    ]
    items += [(f"Score {name}", value) for name, value in res.signature_scores.items()]
    if res.total_points is not None:
        items += [(f"Nomogram points {name}", value) for name, value in res.nomogram_points.items()]
        items.append(("Nomogram total points", res.total_points))
    scale = res.contribution_scale
    items += [(f"Contribution ({scale}) {name}", value) for name, value in res.contributions]
    items.append(("Out of training distribution", "yes" if res.out_of_distribution else "no"))
    items.append(("Distance to training data", res.ood_distance))
    if res.stability is not None:
        for name, p in zip_strict(res.stability.perturbations, res.stability.probabilities):
            items.append((f"Stability probability ({name})", p))
        items.append(("Stability spread", res.stability.spread))
        items.append(("Stability label changes", "yes" if res.stability.label_changes else "no"))
    items += [(f"Warning {i + 1}", w) for i, w in enumerate(res.warnings)]
    items += [(f"Provenance {k}", v) for k, v in res.provenance.items()]
    return items


def _lesion_mask(
    volume_node: Any, segmentation_node: Any, segment_id: str | None, labelmap_node: Any
) -> np.ndarray:
    from .scene import scene_io

    if segmentation_node is not None:
        seg = segmentation_node.GetSegmentation()
        if not segment_id:
            if seg.GetNumberOfSegments() != 1:
                raise LesionError(
                    f"segmentation '{segmentation_node.GetName()}' has {seg.GetNumberOfSegments()} segments: "
                    "choose the lesion segment"
                )
            segment_id = seg.GetNthSegmentID(0)
        return scene_io.mask_from_segment(segmentation_node, segment_id, volume_node)
    if labelmap_node is not None:
        return scene_io.mask_from_labelmap(labelmap_node, volume_node)
    raise LesionError("no lesion given: choose a segmentation and segment, or a labelmap")


def write_outputs(
    scene: Any,
    volume_node: Any,
    pred: Predictor,
    res: CasePrediction,
    output_prefix: str = "DLRPredictor",
    *,
    heatmap_opacity: float = 0.5,
    features_table_node: Any = None,
    prediction_table_node: Any = None,
    heatmap_node: Any = None,
) -> tuple[Any, Any, Any]:
    """Create or update the features table, prediction table and heatmap nodes (all or none).

    Returns:
        (features table node, prediction table node, heatmap node or None).
    """
    from .features import radiomics as rf
    from .scene import scene_io

    with scene_io.SceneGuard(scene):
        ftable = scene_io.write_features_table(
            scene,
            rf.feature_rows(res.features),
            res.provenance,
            f"{output_prefix} features",
            node=features_table_node,
        )
        ptable = scene_io.write_key_value_table(
            scene, prediction_items(pred, res), f"{output_prefix} prediction", node=prediction_table_node
        )
        hnode = None
        if res.heatmap is not None:
            hnode = scene_io.write_heatmap(
                scene,
                res.heatmap.astype(np.float32),
                volume_node,
                f"{output_prefix} Grad-CAM",
                opacity=heatmap_opacity,
                node=heatmap_node,
            )
    return ftable, ptable, hnode


def predict_nodes(
    volume_node: Any,
    segmentation_node: Any = None,
    segment_id: str | None = None,
    labelmap_node: Any = None,
    clinical: dict[str, str | float] | None = None,
    *,
    bundle_path: str | Path | None = None,
    stability: bool = False,
    heatmap_opacity: float = 0.5,
    output_prefix: str = "DLRPredictor",
    features_table_node: Any = None,
    prediction_table_node: Any = None,
    heatmap_node: Any = None,
    progress: ProgressCallback | None = None,
) -> PredictionResult:
    """Predict the lesion drawn on a volume node and write the results into its scene.

    Args:
        volume_node: scalar or vector (RGB) volume node.
        segmentation_node: segmentation holding the lesion (or give labelmap_node).
        segment_id: the lesion segment; optional when the segmentation has one segment.
        labelmap_node: a labelmap volume node as the lesion instead of a segmentation.
        clinical: clinical values by the bundle's variable names (e.g. age, birads).
        bundle_path: model bundle folder; None for the bundled default.
        stability: also predict on eroded / dilated contours.
        heatmap_opacity: foreground opacity of the Grad-CAM overlay.
        output_prefix: names of the output nodes (re-used when they exist).
        features_table_node, prediction_table_node, heatmap_node: explicit output nodes.
        progress: callback(fraction, message).

    Returns:
        The prediction with the output node ids.

    Raises:
        InputError: unusable volume, lesion or clinical values; BundleError: bad bundle.
    """
    from .scene import scene_io

    if volume_node is None:
        raise InputError("no input volume: choose the ultrasound image")
    scene = volume_node.GetScene()
    _progress(progress, 0.05, "Verifying the model bundle")
    pred = load_predictor(bundle_path)
    _progress(progress, 0.15, "Reading the image and the lesion")
    volume = scene_io.image_from_volume_node(volume_node)
    mask = _lesion_mask(volume_node, segmentation_node, segment_id, labelmap_node)
    _progress(progress, 0.3, "Computing radiomics and deep features")
    res = pred.predict(volume, mask, clinical, stability=stability, case=volume_node.GetName())
    _progress(progress, 0.9, "Writing tables and heatmap")
    ftable, ptable, hnode = write_outputs(
        scene,
        volume_node,
        pred,
        res,
        output_prefix,
        heatmap_opacity=heatmap_opacity,
        features_table_node=features_table_node,
        prediction_table_node=prediction_table_node,
        heatmap_node=heatmap_node,
    )
    _progress(progress, 1.0, "Done")
    return PredictionResult(
        probability=res.probability,
        label=res.label,
        cutoff=res.cutoff,
        model_used=res.model_used,
        signature_scores=res.signature_scores,
        contributions=res.contributions,
        nomogram_points=res.nomogram_points,
        total_points=res.total_points,
        warnings=res.warnings,
        stability=res.stability,
        provenance=res.provenance,
        out_of_distribution=res.out_of_distribution,
        features_table_node_id=ftable.GetID(),
        prediction_table_node_id=ptable.GetID(),
        heatmap_node_id=hnode.GetID() if hnode is not None else None,
    )


def predict_arrays(
    image: np.ndarray,
    mask: np.ndarray,
    spacing_mm: float | tuple[float, float] = 1.0,
    clinical: dict[str, str | float] | None = None,
    bundle_path: str | Path | None = None,
    *,
    stability: bool = False,
    heatmap: bool = True,
) -> CasePrediction:
    """Predict from plain arrays: a 2D (rows, cols) or RGB(A) image and a same-sized mask.

    Returns:
        The prediction; `heatmap` is (1, rows, cols) like the image.
    """
    from .inputs import images

    sp = (spacing_mm, spacing_mm) if np.isscalar(spacing_mm) else tuple(spacing_mm)  # type: ignore[arg-type]
    volume: ImageVolume = images.volume_from_array(
        np.asarray(image), spacing=(float(sp[0]), float(sp[1]), 1.0)
    )
    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[None]
    binary = (m > 0).astype(np.uint8)
    return load_predictor(bundle_path).predict(volume, binary, clinical, stability=stability, heatmap=heatmap)


def write_case_scene(
    path: Path, volume: ImageVolume, mask: np.ndarray, pred: Predictor, res: CasePrediction
) -> Path:
    """Write one case (image, lesion segmentation, tables, heatmap) as a .mrb scene."""
    from .scene import adapter as scene_adapter
    from .scene import scene_io

    scene = scene_adapter.create_scene()
    try:
        vnode = scene_io.add_volume_node(scene, volume, "Image")
        scene_io.add_segmentation_from_mask(scene, mask, vnode, "Lesion segmentation", "Lesion")
        write_outputs(scene, vnode, pred, res)
        path.parent.mkdir(parents=True, exist_ok=True)
        scene_io.save_scene(scene, path)
    finally:
        scene.Clear(1)
    return path


def phantom_sample_paths() -> dict[str, Path]:
    """The embedded synthetic phantom written once to a cache folder (for SampleData and tests)."""
    from .inputs import phantom

    folder = Path(os.environ.get("DLR_CACHE", tempfile.gettempdir())) / "DLRPredictor-phantom"
    return phantom.write_phantom(folder)  # deterministic and ~0.15 s: always rewritten, never stale
