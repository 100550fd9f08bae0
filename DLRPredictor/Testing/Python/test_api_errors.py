"""Bad input to the Python API: a DLRError that names the argument, and the scene left as it was.

Every public entry point of ``api`` (``predict_nodes``, ``predict_arrays``, ``load_predictor`` and
the ``Predictor.predict`` it returns) is given wrong types and wrong values for each argument, one
at a time, the other arguments being valid. What is pinned for each: the error is a ``DLRError``
(never a bare TypeError, ValueError, AttributeError or IndexError from deeper code), its message
names the argument, and the real MRML scene holds the same nodes afterwards. The shipped bundle is
used (its one clinical variable is BI-RADS); every case fails before any feature is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import slicer
from DLRPredictorLib import api
from DLRPredictorLib.base.errors import DLRError
from DLRPredictorLib.inputs import phantom
from DLRPredictorLib.scene import scene_io

CLINICAL = {"birads": "4b"}
VOLUME, MASK = phantom.make_phantom(seed=11, shape=(96, 128), spacing_mm=0.1)
IMAGE2D, MASK2D = VOLUME.array[0], MASK[0]


def _with(array: np.ndarray, value: float) -> np.ndarray:
    out = np.array(array, dtype=float)
    out[0, 0] = value
    return out


@dataclass
class Nodes:
    """The nodes of the scene that the node cases draw on."""

    image: Any
    rgb: Any
    seg: Any
    segment_id: str
    labelmap: Any
    empty_volume: Any
    empty_labelmap: Any
    table: Any
    outside: Any  # a volume node that belongs to no scene


def _nodes(scene) -> Nodes:
    image = scene_io.add_volume_node(scene, VOLUME, "Image")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "RGB image")
    rgb.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(scene_io.ijk_to_ras_matrix(VOLUME)))
    grey = np.ascontiguousarray(np.repeat(VOLUME.array.astype(np.uint8)[..., None], 3, axis=-1))
    slicer.util.updateVolumeFromArray(rgb, grey)
    seg, segment_id = scene_io.add_segmentation_from_mask(scene, MASK, image, "Lesion segmentation", "Lesion")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Lesion labelmap")
    labelmap.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(scene_io.ijk_to_ras_matrix(VOLUME)))
    slicer.util.updateVolumeFromArray(labelmap, np.ascontiguousarray(MASK))
    outside = slicer.vtkMRMLScalarVolumeNode()
    outside.SetName("Not in the scene")
    slicer.util.updateVolumeFromArray(outside, np.ascontiguousarray(VOLUME.array))
    return Nodes(
        image=image,
        rgb=rgb,
        seg=seg,
        segment_id=segment_id,
        labelmap=labelmap,
        empty_volume=scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "No data"),
        empty_labelmap=scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "No labels"),
        table=scene.AddNewNodeByClass("vtkMRMLTableNode", "A table"),
        outside=outside,
    )


Override = Callable[[Nodes], dict[str, Any]]
NO_LESION = {"segmentation_node": None, "segment_id": None}

# (id, the argument the message must name, the arguments that replace the valid ones); a bad
# clinical value is named by its variable (e.g. "BI-RADS"), the thing the user corrects.
NODE_CASES: list[tuple[str, str, Override]] = [
    ("volume None", "volume_node", lambda n: {"volume_node": None}),
    ("volume str", "volume_node", lambda n: {"volume_node": "Image"}),
    ("volume array", "volume_node", lambda n: {"volume_node": IMAGE2D}),
    ("volume dict", "volume_node", lambda n: {"volume_node": {}}),
    ("volume is a segmentation", "volume_node", lambda n: {"volume_node": n.seg}),
    ("volume is a labelmap", "volume_node", lambda n: {"volume_node": n.labelmap}),
    ("volume is a table", "volume_node", lambda n: {"volume_node": n.table}),
    ("volume without data", "volume_node", lambda n: {"volume_node": n.empty_volume}),
    ("volume in no scene", "volume_node", lambda n: {"volume_node": n.outside}),
    ("segmentation is a volume", "segmentation_node", lambda n: {"segmentation_node": n.image}),
    ("segmentation is a labelmap", "segmentation_node", lambda n: {"segmentation_node": n.labelmap}),
    ("segmentation str", "segmentation_node", lambda n: {"segmentation_node": "Lesion segmentation"}),
    ("segmentation array", "segmentation_node", lambda n: {"segmentation_node": MASK}),
    ("segmentation is a table", "segmentation_node", lambda n: {"segmentation_node": n.table}),
    ("segment id int", "segment_id", lambda n: {"segment_id": 0}),
    ("segment id float", "segment_id", lambda n: {"segment_id": 1.5}),
    ("segment id list", "segment_id", lambda n: {"segment_id": [n.segment_id]}),
    ("segment id bytes", "segment_id", lambda n: {"segment_id": b"Lesion"}),
    ("segment id unknown", "segment_id", lambda n: {"segment_id": "NoSuchSegment"}),
    ("segment id is the name", "segment_id", lambda n: {"segment_id": "Lesion"}),
    ("no lesion", "segmentation_node", lambda n: NO_LESION),
    ("labelmap is a segmentation", "labelmap_node", lambda n: {**NO_LESION, "labelmap_node": n.seg}),
    ("labelmap is an RGB volume", "labelmap_node", lambda n: {**NO_LESION, "labelmap_node": n.rgb}),
    ("labelmap without data", "labelmap_node", lambda n: {**NO_LESION, "labelmap_node": n.empty_labelmap}),
    ("labelmap str", "labelmap_node", lambda n: {**NO_LESION, "labelmap_node": "Lesion labelmap"}),
    ("labelmap array", "labelmap_node", lambda n: {**NO_LESION, "labelmap_node": MASK}),
    ("labelmap is a table", "labelmap_node", lambda n: {**NO_LESION, "labelmap_node": n.table}),
    ("clinical list", "clinical", lambda n: {"clinical": ["birads", "4b"]}),
    ("clinical str", "clinical", lambda n: {"clinical": "birads=4b"}),
    ("clinical unknown key", "clinical", lambda n: {"clinical": {**CLINICAL, "weight": 70}}),
    ("clinical int key", "clinical", lambda n: {"clinical": {1: 57}}),
    ("bundle_path int", "bundle_path", lambda n: {"bundle_path": 5}),
    ("bundle_path list", "bundle_path", lambda n: {"bundle_path": ["Models"]}),
    ("stability str", "stability", lambda n: {"stability": "yes"}),
    ("opacity str", "heatmap_opacity", lambda n: {"heatmap_opacity": "0.5"}),
    ("opacity None", "heatmap_opacity", lambda n: {"heatmap_opacity": None}),
    ("opacity above 1", "heatmap_opacity", lambda n: {"heatmap_opacity": 2.0}),
    ("opacity negative", "heatmap_opacity", lambda n: {"heatmap_opacity": -0.1}),
    ("opacity NaN", "heatmap_opacity", lambda n: {"heatmap_opacity": float("nan")}),
    ("prefix None", "output_prefix", lambda n: {"output_prefix": None}),
    ("prefix int", "output_prefix", lambda n: {"output_prefix": 5}),
    ("features table is a volume", "features_table_node", lambda n: {"features_table_node": n.image}),
    ("prediction table str", "prediction_table_node", lambda n: {"prediction_table_node": "Table"}),
    ("heatmap node is a table", "heatmap_node", lambda n: {"heatmap_node": n.table}),
    ("heatmap node is a segmentation", "heatmap_node", lambda n: {"heatmap_node": n.seg}),
    ("progress str", "progress", lambda n: {"progress": "print"}),
    ("progress int", "progress", lambda n: {"progress": 5}),
]

ARRAY_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("image None", "image", {"image": None}),
    ("image str", "image", {"image": "image.png"}),
    ("image dict", "image", {"image": {"pixels": 1}}),
    ("image ragged list", "image", {"image": [[1.0, 2.0], [3.0]]}),
    ("image object array", "image", {"image": IMAGE2D.astype(object)}),
    ("image complex", "image", {"image": IMAGE2D.astype(complex)}),
    ("image bool", "image", {"image": MASK2D.astype(bool)}),
    ("image 0-d", "image", {"image": np.float32(3.0)}),
    ("image 1-d", "image", {"image": IMAGE2D[0]}),
    ("image 4-d", "image", {"image": np.zeros((2, 2, 96, 128))}),
    ("image empty", "image", {"image": np.zeros((0, 0))}),
    ("image NaN", "image", {"image": _with(IMAGE2D, np.nan)}),
    ("image inf", "image", {"image": _with(IMAGE2D, np.inf)}),
    ("image constant", "image", {"image": np.full((96, 128), 7.0)}),
    ("mask None", "mask", {"mask": None}),
    ("mask str", "mask", {"mask": "mask.png"}),
    ("mask dict", "mask", {"mask": {"lesion": 1}}),
    ("mask object array", "mask", {"mask": MASK2D.astype(object)}),
    ("mask complex", "mask", {"mask": MASK2D.astype(complex)}),
    ("mask 0-d", "mask", {"mask": np.uint8(1)}),
    ("mask 4-d", "mask", {"mask": MASK[None]}),
    ("mask empty array", "mask", {"mask": np.zeros((0, 0), np.uint8)}),
    ("mask NaN", "mask", {"mask": _with(MASK2D, np.nan)}),
    ("mask inf", "mask", {"mask": _with(MASK2D, np.inf)}),
    ("mask probabilities", "mask", {"mask": MASK2D * 0.6}),
    ("mask negative", "mask", {"mask": MASK2D.astype(np.int16) - 1}),
    ("mask other shape", "mask", {"mask": MASK2D[:-1]}),
    ("mask transposed", "mask", {"mask": MASK2D.T}),
    ("mask no lesion", "mask", {"mask": np.zeros_like(MASK2D)}),
    ("spacing 0", "spacing_mm", {"spacing_mm": 0}),
    ("spacing negative", "spacing_mm", {"spacing_mm": -0.1}),
    ("spacing NaN", "spacing_mm", {"spacing_mm": float("nan")}),
    ("spacing inf", "spacing_mm", {"spacing_mm": float("inf")}),
    ("spacing three values", "spacing_mm", {"spacing_mm": (0.1, 0.1, 0.1)}),
    ("spacing no values", "spacing_mm", {"spacing_mm": ()}),
    ("spacing one bad of two", "spacing_mm", {"spacing_mm": (0.1, 0.0)}),
    ("spacing text", "spacing_mm", {"spacing_mm": "fine"}),
    ("spacing decimal comma", "spacing_mm", {"spacing_mm": "0,1"}),
    ("spacing None", "spacing_mm", {"spacing_mm": None}),
    ("spacing bool", "spacing_mm", {"spacing_mm": True}),
    ("spacing complex", "spacing_mm", {"spacing_mm": 0.1j}),
    ("spacing dict", "spacing_mm", {"spacing_mm": {"x": 0.1}}),
    ("clinical list", "clinical", {"clinical": [("birads", "4b")]}),
    ("clinical number", "clinical", {"clinical": 57}),
    ("clinical unknown key", "clinical", {"clinical": {"weight": 70}}),
    ("clinical int key", "clinical", {"clinical": {0: 57}}),
    ("clinical list value", "BI-RADS", {"clinical": {"birads": ["4b"]}}),
    ("clinical complex value", "BI-RADS", {"clinical": {"birads": 4j}}),
    ("clinical dict value", "BI-RADS", {"clinical": {"birads": {"4b": 1}}}),
    ("bundle_path dict", "bundle_path", {"bundle_path": {}}),
    ("stability str", "stability", {"stability": "no"}),
    ("heatmap int", "heatmap", {"heatmap": 2}),
]

PREDICT_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("volume array", "volume", {"volume": VOLUME.array}),
    ("volume None", "volume", {"volume": None}),
    ("volume str", "volume", {"volume": "image.png"}),
    ("mask None", "mask", {"mask": None}),
    ("mask str", "mask", {"mask": "mask.png"}),
    ("mask object array", "mask", {"mask": MASK.astype(object)}),
    ("mask probabilities", "mask", {"mask": MASK * 0.5}),
    ("mask other shape", "mask", {"mask": MASK[:, :-1]}),
    ("clinical list", "clinical", {"clinical": ["birads"]}),
    ("clinical empty list", "clinical", {"clinical": []}),
    ("clinical tuple key", "clinical", {"clinical": {("birads",): "4b"}}),
    ("stability str", "stability", {"stability": "no"}),
]


def _node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def _assert_refused(call: Callable[[], Any], argument: str, scene) -> None:
    before = _node_ids(scene)
    with pytest.raises(DLRError) as caught:
        call()
    assert argument in str(caught.value), f"the message does not name {argument}: {caught.value}"
    assert _node_ids(scene) == before


@pytest.mark.parametrize(
    ("argument", "override"), [c[1:] for c in NODE_CASES], ids=[c[0] for c in NODE_CASES]
)
def test_predict_nodes_refuses_bad_input(scene, argument: str, override: Override) -> None:
    n = _nodes(scene)
    kwargs = {
        "volume_node": n.image,
        "segmentation_node": n.seg,
        "segment_id": n.segment_id,
        "clinical": CLINICAL,
    }
    kwargs.update(override(n))
    _assert_refused(lambda: api.predict_nodes(**kwargs), argument, scene)


@pytest.mark.parametrize(
    ("argument", "override"), [c[1:] for c in ARRAY_CASES], ids=[c[0] for c in ARRAY_CASES]
)
def test_predict_arrays_refuses_bad_input(scene, argument: str, override: dict[str, Any]) -> None:
    _nodes(scene)
    kwargs = {"image": IMAGE2D, "mask": MASK2D, "spacing_mm": 0.1, "clinical": CLINICAL, **override}
    _assert_refused(lambda: api.predict_arrays(**kwargs), argument, scene)


@pytest.mark.parametrize(
    ("argument", "override"), [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES]
)
def test_predictor_predict_refuses_bad_input(scene, argument: str, override: dict[str, Any]) -> None:
    _nodes(scene)
    predictor = api.load_predictor()
    kwargs = {"volume": VOLUME, "mask": MASK, "clinical": CLINICAL, **override}
    _assert_refused(lambda: predictor.predict(**kwargs), argument, scene)


@pytest.mark.parametrize("bundle_path", [5, 0.5, ["Models"], {"path": "x"}, b"Models"], ids=repr)
def test_load_predictor_refuses_a_bundle_path_that_is_no_path(bundle_path: Any) -> None:
    with pytest.raises(DLRError, match="bundle_path"):
        api.load_predictor(bundle_path)


def test_valid_variants_still_predict_alike() -> None:
    """A bool, float 0/1 or label-valued mask, a spacing pair, a one-value list and numeric text agree."""
    reference = api.predict_arrays(IMAGE2D, MASK2D, spacing_mm=0.1, heatmap=False)
    variants = [{"mask": m} for m in (MASK2D.astype(bool), MASK2D.astype(np.float32), MASK2D * 255)]
    variants += [{"spacing_mm": s} for s in ((0.1, 0.1), [0.1], np.array([0.1, 0.1]), "0.1")]
    for variant in variants:
        kwargs = {"mask": MASK2D, "spacing_mm": 0.1, **variant}
        out = api.predict_arrays(IMAGE2D, heatmap=False, **kwargs)
        # Exact: every variant becomes the same uint8 mask and the same float spacing before the one
        # deterministic predict path runs (one BLAS thread per crop, see the README).
        assert out.probability == reference.probability, variant
