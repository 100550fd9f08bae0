"""The logic API of the Slicer module and the Python console: MRML nodes (or arrays) in, results out.

Usage in Slicer's Python console (or in plain Python with ``scene_adapter.create_scene()``)::

    from DLRPredictorLib import api
    result = api.predict_nodes(volumeNode, segmentationNode, clinical={"birads": "4b"})
    print(result.probability, result.label, result.model_used)

All the computation happens before anything is written to the scene, and the writing
(``scene.case_scene.write_outputs``) runs inside ``SceneGuard``: a failure leaves the node count
and contents as they were. Re-running with the same output names updates the same nodes instead
of adding new ones.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .base.case import ImageVolume
from .base.errors import InputError, LesionError
from .deep.heatmap import check_heatmap_kind
from .inference.input_checks import (
    check_bundle_path,
    check_callback,
    check_flag,
    check_fraction,
    check_image_array,
    check_mask_array,
    check_spacing_pair,
    check_text,
)
from .inference.predictor import default_bundle_path, load_predictor
from .inference.results import CasePrediction, PredictionResult, StabilityResult

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


def _progress(progress: ProgressCallback | None, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


def _lesion_segment_id(segmentation_node: Any, segment_id: Any, labelmap_node: Any) -> str | None:
    """Check the lesion arguments before any work; the segment id to read (None for a labelmap)."""
    from .scene.segmentations import lesion_segment_id
    from .scene.volumes import check_volume_node

    if segmentation_node is not None:
        return lesion_segment_id(segmentation_node, segment_id)
    if labelmap_node is not None:
        check_volume_node(labelmap_node, "labelmap_node", labelmap=True)
        return None
    raise LesionError(
        "no lesion given: choose a segmentation and its segment (segmentation_node, segment_id) "
        "or a labelmap (labelmap_node)"
    )


def _lesion_mask(
    volume_node: Any, segmentation_node: Any, segment_id: str | None, labelmap_node: Any
) -> np.ndarray:
    from .scene.segmentations import mask_from_labelmap, mask_from_segment

    if segment_id is not None:  # a segmentation, checked by _lesion_segment_id
        return mask_from_segment(segmentation_node, segment_id, volume_node)
    return mask_from_labelmap(labelmap_node, volume_node)


def _check_node_options(
    output_prefix: Any, heatmap_opacity: Any, stability: Any, progress: Any, output_nodes: dict[str, Any]
) -> None:
    """The options of predict_nodes, checked before any work (InputError naming the argument)."""
    from .scene.volumes import is_node, refuse_node

    check_text(output_prefix, "output_prefix")
    check_fraction(heatmap_opacity, "heatmap_opacity")
    check_flag(stability, "stability")
    check_callback(progress, "progress")
    for argument, node in output_nodes.items():
        table = argument != "heatmap_node"
        kind = "vtkMRMLTableNode" if table else "vtkMRMLScalarVolumeNode"
        if node is not None and (not is_node(node, kind) or is_node(node, "vtkMRMLLabelMapVolumeNode")):
            raise refuse_node(node, argument, "a table node" if table else "a scalar volume node")


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
    heatmap_kind: str = "dl-signature",
    site: str | None = None,
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
        heatmap_kind: the score the heatmap explains: "dl-signature" (the DL signature the
            prediction table shows, the default) or "cnn-head" (the network's own fc head).
        site: the case's scanner or site, for a bundle that harmonises its radiomics (ComBat);
            one the training data lacked, or None, is predicted unharmonised with a warning.

    Returns:
        The prediction with the output node ids.

    Raises:
        InputError: an unusable argument (the message names it: a node of the wrong kind or
            without data, a segment id that is not one, bad clinical values or options);
        BundleError: bad bundle.
    """
    from .scene.case_scene import write_outputs
    from .scene.volumes import check_volume_node, image_from_volume_node

    check_volume_node(volume_node, "volume_node")
    scene = volume_node.GetScene()
    if scene is None:
        raise InputError(
            f"volume_node '{volume_node.GetName()}' belongs to no scene: add it to the scene first"
        )
    _check_node_options(
        output_prefix,
        heatmap_opacity,
        stability,
        progress,
        {
            "features_table_node": features_table_node,
            "prediction_table_node": prediction_table_node,
            "heatmap_node": heatmap_node,
        },
    )
    check_bundle_path(bundle_path)
    check_heatmap_kind(heatmap_kind)
    segment_id = _lesion_segment_id(segmentation_node, segment_id, labelmap_node)
    _progress(progress, 0.05, "Verifying the model bundle")
    pred = load_predictor(bundle_path)
    _progress(progress, 0.15, "Reading the image and the lesion")
    volume = image_from_volume_node(volume_node)
    mask = _lesion_mask(volume_node, segmentation_node, segment_id, labelmap_node)
    _progress(progress, 0.3, "Computing radiomics and deep features")
    res = pred.predict(
        volume,
        mask,
        clinical,
        stability=stability,
        case=volume_node.GetName(),
        heatmap_kind=heatmap_kind,
        site=site,
    )
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
    return PredictionResult.extend(
        res,
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
    heatmap_kind: str = "dl-signature",
    site: str | None = None,
) -> CasePrediction:
    """Predict from plain arrays: a 2D (rows, cols) or RGB(A) image and a same-sized mask.

    Args:
        image: grey levels (rows, cols) or (slices, rows, cols), or RGB(A) with colour last.
        mask: 0 outside the lesion, 1 (or True, or a positive label number) inside.
        spacing_mm: the pixel size in mm: one number, or two in SimpleITK's order (column width,
            row height), as ``ImageVolume.spacing[:2]``; the cohort CSV's rule for each.
        clinical: clinical values by the bundle's variable names.
        bundle_path: model bundle folder; None for the bundled default.
        stability: also predict on eroded / dilated contours.
        heatmap: compute the Grad-CAM heatmap.
        heatmap_kind: the score it explains: "dl-signature" (default) or "cnn-head".
        site: the case's scanner or site, for a bundle that harmonises its radiomics (ComBat);
            one the training data lacked, or None, is predicted unharmonised with a warning.

    Returns:
        The prediction; `heatmap` is (1, rows, cols) like the image.

    Raises:
        InputError: an unusable argument (the message names it); BundleError: bad bundle.
    """
    from .inputs import images

    pixels = check_image_array(image)
    m = check_mask_array(mask)
    sp = check_spacing_pair(spacing_mm)
    check_bundle_path(bundle_path)
    volume: ImageVolume = images.volume_from_array(pixels, spacing=(sp[0], sp[1], 1.0))
    if m.ndim == 2:
        m = m[None]
    binary = (m > 0).astype(np.uint8)
    return load_predictor(bundle_path).predict(
        volume, binary, clinical, stability=stability, heatmap=heatmap, heatmap_kind=heatmap_kind, site=site
    )


def phantom_sample_paths() -> dict[str, Path]:
    """The embedded synthetic phantom written once to a cache folder (for SampleData and tests)."""
    from .inputs import phantom

    folder = Path(os.environ.get("DLR_CACHE", tempfile.gettempdir())) / "DLRPredictor-phantom"
    return phantom.write_phantom(folder)  # deterministic and ~0.15 s: always rewritten, never stale
