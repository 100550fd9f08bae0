"""Result tables: the features table (SlicerRadiomics layout, provenance as attributes) and
key-value tables such as the prediction table.

Layout decisions:

- features table: columns ``Label``, ``Input image type``, ``Feature Class``, ``Feature Name``,
  ``Value``, exactly as SlicerRadiomics' exportToTable writes them. Provenance (bundle id,
  software versions, settings) is stored as node attributes ``DLRPredictor.provenance.<key>``:
  they are saved in the .mrml and keep the feature rows uniform for anyone reading the table.
- key-value table: columns ``Name`` and ``Value``.
- Values are text columns. Numbers are written with Python's shortest round-trip ``repr`` so that
  ``float(cell)`` gives back exactly the same number after a save and reload; a double column is
  saved by Slicer's table writer with only 6 significant digits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..base.compat import zip_strict
from .volumes import get_or_create_node

# Exactly SlicerRadiomics' exportToTable columns, so tables from both modules read alike.
FEATURE_COLUMNS: tuple[str, ...] = ("Label", "Input image type", "Feature Class", "Feature Name", "Value")
KEY_VALUE_COLUMNS: tuple[str, str] = ("Name", "Value")
PROVENANCE_ATTRIBUTE_PREFIX = "DLRPredictor.provenance."
#: Node attribute naming what DLRPredictor wrote into a node ("features", "key-value", "heatmap").
TABLE_KIND_ATTRIBUTE = "DLRPredictor.table"


def format_value(value: str | float) -> str:
    """Text of a table cell: strings as they are, numbers so that ``float(text)`` is exact.

    Args:
        value: a string or a number (bool is written as "yes" / "no").

    Returns:
        The cell text.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def _fill_table(node: Any, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    import vtk

    arrays = []
    for column in columns:
        array = vtk.vtkStringArray()
        array.SetName(column)
        arrays.append(array)
    for row in rows:
        for array, text in zip_strict(arrays, row):
            array.InsertNextValue(text)
    table = vtk.vtkTable()
    for array in arrays:
        table.AddColumn(array)
    was_modifying = node.StartModify()
    node.SetAndObserveTable(table)
    node.Modified()
    node.EndModify(was_modifying)


def write_features_table(
    scene: Any,
    rows: list[tuple[str, str, str, float]],
    provenance: dict[str, str],
    name: str,
    *,
    node: Any = None,
    label: str = "Lesion",
) -> Any:
    """Create or update the features table (SlicerRadiomics layout, provenance as attributes).

    Args:
        scene: the MRML scene.
        rows: (image type, feature class, feature name, value), e.g. ("original", "shape2D",
            "Elongation", 0.81).
        provenance: provenance text by key; stored as ``DLRPredictor.provenance.<key>`` attributes
            (previous provenance attributes are removed).
        name: node name; an existing table of that name is updated.
        node: an explicit table node to update instead.
        label: the "Label" column (the lesion segment's name), as SlicerRadiomics writes it.

    Returns:
        The vtkMRMLTableNode.
    """
    node = node if node is not None else get_or_create_node(scene, "vtkMRMLTableNode", name)
    text_rows = [(str(label), str(t), str(c), str(f), format_value(v)) for t, c, f, v in rows]
    _fill_table(node, FEATURE_COLUMNS, text_rows)
    for attribute in list(node.GetAttributeNames() or ()):
        if attribute.startswith(PROVENANCE_ATTRIBUTE_PREFIX):
            node.RemoveAttribute(attribute)
    for key, value in provenance.items():
        node.SetAttribute(PROVENANCE_ATTRIBUTE_PREFIX + str(key), str(value))
    node.SetAttribute(TABLE_KIND_ATTRIBUTE, "features")
    return node


def read_features_table(node: Any) -> list[tuple[str, str, str, float]]:
    """The rows of a table written by :func:`write_features_table`.

    Args:
        node: the features table node.

    Returns:
        (image type, feature class, feature name, value) rows.
    """
    return [
        (
            node.GetCellText(r, 1),
            node.GetCellText(r, 2),
            node.GetCellText(r, 3),
            float(node.GetCellText(r, 4)),
        )
        for r in range(node.GetNumberOfRows())
    ]


def read_provenance(node: Any) -> dict[str, str]:
    """The provenance attributes of a features table.

    Args:
        node: the features table node.

    Returns:
        Provenance text by key.
    """
    return {
        attribute[len(PROVENANCE_ATTRIBUTE_PREFIX) :]: node.GetAttribute(attribute)
        for attribute in (node.GetAttributeNames() or ())
        if attribute.startswith(PROVENANCE_ATTRIBUTE_PREFIX)
    }


def write_key_value_table(
    scene: Any, items: list[tuple[str, str | float]], name: str, node: Any = None
) -> Any:
    """Create or update a two-column ("Name", "Value") table, e.g. the prediction table.

    Args:
        scene: the MRML scene.
        items: (name, value) pairs; numbers are written so that ``float(text)`` is exact.
        name: node name; an existing table of that name is updated.
        node: an explicit table node to update instead.

    Returns:
        The vtkMRMLTableNode.
    """
    node = node if node is not None else get_or_create_node(scene, "vtkMRMLTableNode", name)
    _fill_table(node, KEY_VALUE_COLUMNS, [(str(k), format_value(v)) for k, v in items])
    node.SetAttribute(TABLE_KIND_ATTRIBUTE, "key-value")
    return node


def read_key_value_table(node: Any) -> list[tuple[str, str]]:
    """The (name, value text) rows of a table written by :func:`write_key_value_table`.

    Args:
        node: the table node.

    Returns:
        (name, value text) pairs in table order.
    """
    return [(node.GetCellText(r, 0), node.GetCellText(r, 1)) for r in range(node.GetNumberOfRows())]
