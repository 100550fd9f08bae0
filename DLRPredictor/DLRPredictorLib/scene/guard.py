"""Failure safety of scene writing: nodes added inside a failed block are removed again.

Callers compute everything first, then write inside :class:`SceneGuard`. The guard removes the
nodes added inside it when the block raises; a node updated in place is not rolled back, which is
why writing comes only after all computation succeeded.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any


class SceneGuard:
    """Remove every node added inside the block when the block raises, then re-raise.

    Display and storage nodes added with them are removed too, so a failure leaves the node
    count unchanged. Nodes that existed before and were updated in place are not rolled back:
    compute everything first and write only at the end.

    Example::

        with SceneGuard(scene):
            write_features_table(scene, rows, provenance, "features")
            write_heatmap(scene, heatmap, image_node, "heatmap")
    """

    def __init__(self, scene: Any) -> None:
        """Args: scene: the MRML scene to guard."""
        self.scene = scene
        self._ids: set[str] = set()

    def __enter__(self) -> SceneGuard:
        self._ids = set(_node_ids(self.scene))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.remove_added_nodes()  # the exception then propagates (None does not swallow it)

    def remove_added_nodes(self) -> int:
        """Remove the nodes added since entry.

        Returns:
            How many nodes the scene lost (removing a node also removes its display and
            storage nodes).
        """
        before = self.scene.GetNumberOfNodes()
        added = [node_id for node_id in _node_ids(self.scene) if node_id not in self._ids]
        # Displayable nodes first: their display / storage nodes then go with them.
        added.sort(key=lambda node_id: not self.scene.GetNodeByID(node_id).IsA("vtkMRMLDisplayableNode"))
        for node_id in added:
            node = self.scene.GetNodeByID(node_id)
            if node is not None:
                self.scene.RemoveNode(node)
        return before - self.scene.GetNumberOfNodes()


def _node_ids(scene: Any) -> list[str]:
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]
