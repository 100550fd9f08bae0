"""A multi-input prediction into a scene: one heatmap and features table per input, one answer.

Each input's heatmap volume takes that input's own image grid (its volume node's IJKToRAS), so
two views or two modalities each get their overlay where they were drawn; the prediction table
holds the answer, the model used and every input's signature scores. The writing runs inside
:class:`SceneGuard`: a failure leaves no new node behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..inference.multi_input_predictor import MultiInputPrediction, MultiInputPredictor
from .files import save_scene
from .guard import SceneGuard
from .heatmap import write_heatmap
from .segmentations import add_segmentation_from_mask
from .tables import write_features_table, write_key_value_table
from .volumes import add_volume_node


def multi_input_items(pred: MultiInputPredictor, res: MultiInputPrediction) -> list[tuple[str, str | float]]:
    """Rows of the prediction table: the answer, the model used, then every input's scores."""
    items: list[tuple[str, str | float]] = [
        (f"Probability ({pred.positive_class})", res.probability),
        ("Predicted label", res.label),
        ("Cutoff (frozen at training)", res.cutoff),
        ("Model used", res.model_used),
        ("Inputs used", ", ".join(res.inputs_used)),
    ]
    items += [(f"Score {name}", value) for name, value in res.signature_scores.items()]
    for name, one in res.per_input.items():
        items.append((f"Out of training distribution {name}", "yes" if one.out_of_distribution else "no"))
        items.append((f"Distance to training data {name}", one.ood_distance))
    items += [(f"Warning {i + 1}", w) for i, w in enumerate(res.warnings)]
    items += [(f"Provenance {k}", v) for k, v in res.provenance.items()]
    return items


def write_multi_input_outputs(
    scene: Any,
    volume_nodes: Mapping[str, Any],
    pred: MultiInputPredictor,
    res: MultiInputPrediction,
    output_prefix: str = "DLRPredictor",
    *,
    heatmap_opacity: float = 0.5,
) -> dict[str, Any]:
    """Create or update the prediction table and, per input, its features table and heatmap.

    Args:
        scene: the MRML scene.
        volume_nodes: input name -> the image node that was predicted (its heatmap's grid).
        pred: the predictor that answered.
        res: its prediction.
        output_prefix: names of the output nodes (re-used when they exist).
        heatmap_opacity: foreground opacity of each Grad-CAM overlay.

    Returns:
        {"prediction": table node, "features": {input: node}, "heatmaps": {input: node}}.
    """
    from ..features import radiomics as rf

    out: dict[str, Any] = {"features": {}, "heatmaps": {}}
    with SceneGuard(scene):
        out["prediction"] = write_key_value_table(
            scene, multi_input_items(pred, res), f"{output_prefix} prediction"
        )
        for name, one in res.per_input.items():
            out["features"][name] = write_features_table(
                scene, rf.feature_rows(one.features), one.provenance, f"{output_prefix} features {name}"
            )
            if one.heatmap is not None:
                out["heatmaps"][name] = write_heatmap(
                    scene,
                    one.heatmap.astype(np.float32),
                    volume_nodes[name],
                    f"{output_prefix} Grad-CAM {name}",
                    opacity=heatmap_opacity,
                    kind=one.provenance.get("heatmap"),
                )
    return out


def write_multi_input_case_scene(
    path: Path,
    inputs: Mapping[str, tuple[ImageVolume, np.ndarray]],
    pred: MultiInputPredictor,
    res: MultiInputPrediction,
) -> Path:
    """Write one multi-input case (every image, its lesion segmentation, heatmap) as a .mrb scene."""
    from . import adapter as scene_adapter

    scene = scene_adapter.create_scene()
    try:
        nodes = {}
        for name, (volume, mask) in inputs.items():
            nodes[name] = add_volume_node(scene, volume, f"Image {name}")
            add_segmentation_from_mask(scene, mask, nodes[name], f"Lesion segmentation {name}", "Lesion")
        write_multi_input_outputs(scene, nodes, pred, res)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_scene(scene, path)
    finally:
        scene.Clear(1)
    return path
