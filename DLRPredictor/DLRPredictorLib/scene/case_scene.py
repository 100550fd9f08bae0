"""One case's prediction into a scene: the features table, the prediction table, the heatmap.

Used by ``api.predict_nodes`` (the module and the console), by cohort runs that write one .mrb
scene per case, and by the Slicer batch script. Everything is computed before it is called; the
writing runs inside :class:`SceneGuard`, so a failure leaves no new node behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.compat import zip_strict
from ..inference.predictor import Predictor
from ..inference.results import CasePrediction
from .files import save_scene
from .guard import SceneGuard
from .heatmap import write_heatmap
from .segmentations import add_segmentation_from_mask
from .tables import write_features_table, write_key_value_table
from .volumes import add_volume_node


def prediction_items(pred: Predictor, res: CasePrediction) -> list[tuple[str, str | float]]:
    """Rows of the prediction table: the answer first, then scores, explanation and provenance.

    Args:
        pred: the predictor that answered (for the positive class's name).
        res: its prediction.

    Returns:
        (name, value) pairs in table order.
    """
    if res.class_probabilities is not None:  # K-class: every class, then the rule's class
        items: list[tuple[str, str | float]] = [
            *((f"Probability ({c})", p) for c, p in res.class_probabilities.items()),
            ("Predicted class", res.label),
        ]
    else:
        items = [(f"Probability ({pred.positive_class})", res.probability), ("Predicted label", res.label)]
    items += [
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

    Args:
        scene: the MRML scene.
        volume_node: the image that was predicted (the heatmap takes its grid).
        pred: the predictor that answered.
        res: its prediction.
        output_prefix: names of the output nodes (re-used when they exist).
        heatmap_opacity: foreground opacity of the Grad-CAM overlay.
        features_table_node, prediction_table_node, heatmap_node: explicit output nodes.

    Returns:
        (features table node, prediction table node, heatmap node or None).
    """
    from ..features import radiomics as rf

    with SceneGuard(scene):
        ftable = write_features_table(
            scene,
            rf.feature_rows(res.features),
            res.provenance,
            f"{output_prefix} features",
            node=features_table_node,
        )
        ptable = write_key_value_table(
            scene, prediction_items(pred, res), f"{output_prefix} prediction", node=prediction_table_node
        )
        hnode = None
        if res.heatmap is not None:
            kind = res.provenance.get("heatmap")
            hnode = write_heatmap(
                scene,
                res.heatmap.astype(np.float32),
                volume_node,
                f"{output_prefix} Grad-CAM",
                opacity=heatmap_opacity,
                node=heatmap_node,
                kind=kind,
            )
    return ftable, ptable, hnode


def write_case_scene(
    path: Path, volume: ImageVolume, mask: np.ndarray, pred: Predictor, res: CasePrediction
) -> Path:
    """Write one case (image, lesion segmentation, tables, heatmap) as a .mrb scene.

    Args:
        path: the .mrb file to write (its folder is created).
        volume: the image.
        mask: the lesion mask in the image's grid.
        pred: the predictor that answered.
        res: its prediction.

    Returns:
        ``path``.
    """
    from . import adapter as scene_adapter

    scene = scene_adapter.create_scene()
    try:
        vnode = add_volume_node(scene, volume, "Image")
        add_segmentation_from_mask(scene, mask, vnode, "Lesion segmentation", "Lesion")
        write_outputs(scene, vnode, pred, res)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_scene(scene, path)
    finally:
        scene.Clear(1)
    return path
