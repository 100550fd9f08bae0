"""DLRPredictorLib: the plain-Python engine of the DLRPredictor 3D Slicer extension.

Everything here runs without Qt. Subpackages follow the data flow, and imports run only downward
in this list (``test_layering.py`` enforces it; docs/ARCHITECTURE.md has the map):

``base`` <- ``inputs`` <- ``features``, ``deep``, ``models``, ``evaluation`` <- ``bundle`` <-
``inference`` <- ``scene``, ``training`` <- ``cohort`` <- ``api``, ``cli``, ``demo``,
``module_support``.

MRML (``slicer``) is imported only by ``scene`` and torch only by ``deep`` and ``training``, both
lazily, so that importing this package is fast.
"""

from importlib import import_module
from typing import Any

from .base.version import __version__

#: Module paths of earlier releases that user scripts may still import
#: (``from DLRPredictorLib import images, lesion, scene_adapter, scene_io``): thin aliases, loaded
#: on first use so that importing the package stays cheap.
_ALIASES = {
    "errors": ".base.errors",
    "images": ".inputs.images",
    "lesion": ".inputs.lesion",
    "scene_adapter": ".scene.adapter",
    "scene_io": ".scene.scene_io",
}

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """Resolve an alias of an earlier module path (PEP 562)."""
    target = _ALIASES.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = import_module(target, __name__)
    globals()[name] = module
    return module
