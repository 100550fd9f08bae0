"""Qt-free logic of the Slicer module for multi-input bundles: one image + segmentation per input.

The module's parameter node holds as many image + segmentation pairs as the bundle declares. The
first declared input uses the node's own ``inputVolume`` / ``segmentationNode`` / ``segmentId``
(the pair the Segment Editor edits by default, as with a one-input bundle); every other input is
kept as node references of the same node (``DLRPredictor.input.<NAME>.volume`` and
``.segmentation``, which a saved scene keeps and remaps) and a parameter ``.segment``. The
outputs are the prediction table (``predictionTable``) and, per input, its features table and
heatmap (references ``DLRPredictor.output.<NAME>.features`` / ``.heatmap``; the first input's
heatmap is also ``heatmapVolume``, the overlay the display settings control).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

INPUT_PREFIX = "DLRPredictor.input."
OUTPUT_PREFIX = "DLRPredictor.output."

Pair = tuple[Any, Any, str]


def set_input_pair(
    parameter_node: Any, name: str, volume: Any, segmentation: Any, segment_id: str = "", *, first: bool
) -> None:
    """Store one input's image, segmentation and segment id in the parameter node.

    Args:
        parameter_node: the module's parameter node (its ``parameterNode`` is the MRML node).
        name: the input name the bundle declares.
        first: whether it is the bundle's first input (kept in the node's own fields).
        volume, segmentation: the nodes, or None to clear.
        segment_id: the lesion segment ("" = the only one).
    """
    if first:
        parameter_node.inputVolume = volume
        parameter_node.segmentationNode = segmentation
        parameter_node.segmentId = segment_id
        return
    raw = parameter_node.parameterNode
    raw.SetNodeReferenceID(f"{INPUT_PREFIX}{name}.volume", volume.GetID() if volume else None)
    raw.SetNodeReferenceID(
        f"{INPUT_PREFIX}{name}.segmentation", segmentation.GetID() if segmentation else None
    )
    raw.SetParameter(f"{INPUT_PREFIX}{name}.segment", segment_id or "")


def input_pair(parameter_node: Any, name: str, first: bool) -> Pair:
    """(image node or None, segmentation node or None, segment id) of one input."""
    if first:
        return parameter_node.inputVolume, parameter_node.segmentationNode, parameter_node.segmentId or ""
    raw = parameter_node.parameterNode
    return (
        raw.GetNodeReference(f"{INPUT_PREFIX}{name}.volume"),
        raw.GetNodeReference(f"{INPUT_PREFIX}{name}.segmentation"),
        raw.GetParameter(f"{INPUT_PREFIX}{name}.segment") or "",
    )


def input_pairs(parameter_node: Any, names: list[str]) -> dict[str, Pair]:
    """The inputs whose image and segmentation are both chosen, in declaration order."""
    out = {}
    for i, name in enumerate(names):
        volume, segmentation, segment = input_pair(parameter_node, name, i == 0)
        if volume is not None and segmentation is not None:
            out[name] = (volume, segmentation, segment)
    return out


def multi_input_problems(parameter_node: Any, names: list[str], required: list[str]) -> list[str]:
    """Why Apply cannot run yet (empty: it can), one line per problem."""
    problems = []
    given = input_pairs(parameter_node, names)
    for i, name in enumerate(names):
        volume, segmentation, _ = input_pair(parameter_node, name, i == 0)
        if (volume is None) != (segmentation is None):
            problems.append(f"input {name}: choose {'a segmentation' if volume else 'an image'} too")
        elif name in required and name not in given:
            problems.append(f"input {name} is required: choose its image and segmentation")
    if not given and not problems:
        problems.append(f"choose the image and segmentation of at least one input ({', '.join(names)})")
    return problems


def predict_multi_input_parameter_node(
    parameter_node: Any, progress: Callable[[float, str], None] | None = None
) -> Any:
    """Predict the parameter node's inputs with its multi-input bundle; keep the outputs in it.

    Returns:
        The ``MultiInputPrediction``.

    Raises:
        InputError: an input whose image or lesion cannot be used (named), a required input
            missing; BundleError: a bad bundle.
    """
    from .base.errors import InputError
    from .inference.multi_input_predictor import load_multi_input_predictor
    from .module_support import DEFAULT_HEATMAP_KIND, HEATMAP_IMAGE_ATTRIBUTE
    from .scene.multi_input_scene import write_multi_input_outputs
    from .scene.segmentations import lesion_segment_id, mask_from_segment
    from .scene.volumes import check_volume_node, image_from_volume_node

    def say(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    say(0.05, "Verifying the multi-input bundle")
    pred = load_multi_input_predictor(parameter_node.bundlePath)
    names = pred.input_names
    problems = multi_input_problems(parameter_node, names, pred.bundle.required_inputs)
    if problems:
        raise InputError("; ".join(problems))
    pairs = input_pairs(parameter_node, names)
    arrays, nodes = {}, {}
    for name, (volume_node, segmentation_node, segment) in pairs.items():
        say(0.15, f"Reading input {name}")
        try:
            check_volume_node(volume_node, f"input {name} image")
            segment_id = lesion_segment_id(segmentation_node, segment or None, f"input {name} segmentation")
            volume = image_from_volume_node(volume_node)
            arrays[name] = (volume, mask_from_segment(segmentation_node, segment_id, volume_node))
        except InputError as exc:
            raise type(exc)(f"input '{name}': {exc}") from exc
        nodes[name] = volume_node
    say(0.3, "Computing radiomics and deep features of every input")
    result = pred.predict(arrays, heatmap_kind=parameter_node.heatmapKind or DEFAULT_HEATMAP_KIND)
    say(0.9, "Writing tables and heatmaps")
    scene = parameter_node.parameterNode.GetScene()
    written = write_multi_input_outputs(
        scene, nodes, pred, result, heatmap_opacity=parameter_node.heatmapOpacity
    )
    raw = parameter_node.parameterNode
    was_modifying = raw.StartModify()
    try:
        parameter_node.predictionTable = written["prediction"]
        for name in names:
            for kind in ("features", "heatmap"):
                node = written["features" if kind == "features" else "heatmaps"].get(name)
                raw.SetNodeReferenceID(f"{OUTPUT_PREFIX}{name}.{kind}", node.GetID() if node else None)
        first = written["heatmaps"].get(names[0])
        parameter_node.heatmapVolume = first
    finally:
        raw.EndModify(was_modifying)
    for name, node in written["heatmaps"].items():
        node.SetAttribute(HEATMAP_IMAGE_ATTRIBUTE, nodes[name].GetID())
    return result


def output_node(parameter_node: Any, name: str, kind: str) -> Any:
    """An input's output node: ``kind`` "features" or "heatmap" (None before a prediction)."""
    return parameter_node.parameterNode.GetNodeReference(f"{OUTPUT_PREFIX}{name}.{kind}")
