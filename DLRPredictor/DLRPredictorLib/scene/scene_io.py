"""The public scene functions in one namespace: ``from DLRPredictorLib.scene import scene_io``.

A face only (the earlier module of this name, kept so that user scripts and the README's
examples keep working): the code lives in the modules named below, and the package imports those
modules directly.

Works the same in the Slicer application and on a plain-Python scene from
:func:`scene_adapter.create_scene`: every function takes its scene or nodes as arguments.

- ``geometry``: IJKToRAS <-> LPS spacing, origin and direction;
- ``volumes``: volume nodes <-> ImageVolume, get-or-create a node by name;
- ``segmentations``: lesion masks <-> segmentation and labelmap nodes;
- ``tables``: features and key-value tables, provenance attributes;
- ``heatmap``: the Grad-CAM overlay;
- ``guard``: :class:`SceneGuard`, no partial writes on failure;
- ``files``: .mrb / .mrml scene files.
"""

from __future__ import annotations

from .files import load_scene, save_scene
from .geometry import ijk_to_ras_matrix, lps_geometry
from .guard import SceneGuard
from .heatmap import HEATMAP_COLOR_NODE_ID, HEATMAP_HIDE_BELOW, set_foreground, write_heatmap
from .segmentations import (
    add_segmentation_from_mask,
    mask_from_labelmap,
    mask_from_segment,
    oriented_image_from_mask,
)
from .tables import (
    FEATURE_COLUMNS,
    KEY_VALUE_COLUMNS,
    PROVENANCE_ATTRIBUTE_PREFIX,
    TABLE_KIND_ATTRIBUTE,
    format_value,
    read_features_table,
    read_key_value_table,
    read_provenance,
    write_features_table,
    write_key_value_table,
)
from .volumes import add_volume_node, get_or_create_node, image_from_volume_node

__all__ = [
    "FEATURE_COLUMNS",
    "HEATMAP_COLOR_NODE_ID",
    "HEATMAP_HIDE_BELOW",
    "KEY_VALUE_COLUMNS",
    "PROVENANCE_ATTRIBUTE_PREFIX",
    "TABLE_KIND_ATTRIBUTE",
    "SceneGuard",
    "add_segmentation_from_mask",
    "add_volume_node",
    "format_value",
    "get_or_create_node",
    "ijk_to_ras_matrix",
    "image_from_volume_node",
    "load_scene",
    "lps_geometry",
    "mask_from_labelmap",
    "mask_from_segment",
    "oriented_image_from_mask",
    "read_features_table",
    "read_key_value_table",
    "read_provenance",
    "save_scene",
    "set_foreground",
    "write_features_table",
    "write_heatmap",
    "write_key_value_table",
]
