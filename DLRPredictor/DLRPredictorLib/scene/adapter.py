"""A plain-Python MRML scene from slicer-core that behaves like the Slicer application's.

Used by the tests, the CLI and the headless batch only; never by code that runs inside the real
Slicer application (there, ``slicer.mrmlScene`` and ``slicer.modules`` already exist).

What the application does at start-up and what :func:`create_scene` repeats:

- a ``vtkSlicerApplicationLogic`` observes the scene;
- the Colors logic (``vtkSlicerColorLogic``) is set on it and adds the default colour nodes
  (Grey, Iron, Rainbow, PET-Heat, ... ; the file-based tables such as Inferno or GenericColors
  need the application's share folder and do not exist here);
- the Data, Volumes, Segmentations, SubjectHierarchy and Tables module logics are created on the
  same scene and application logic and registered with ``SetModuleLogic``. Registering them also
  registers their node classes (segmentation, segment editor, table, ...) with the scene, without
  which a saved scene cannot be imported again. The Data logic is what removes a node's display
  and storage nodes together with it, as in the application;
- a cache manager and data I/O manager with a private cache folder: ``ReadFromMRB`` unpacks the
  bundle there and fails without one.

:func:`install_globals` provides ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()``,
which several ``slicer.util`` helpers read, and does nothing inside the application.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

#: Module logics created for each scene, by the name the application registers them under.
MODULE_LOGIC_CLASSES: dict[str, str] = {
    "Data": "vtkSlicerDataModuleLogic",
    "Volumes": "vtkSlicerVolumesLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
    "Tables": "vtkSlicerTablesLogic",
}


@dataclass
class SceneLogics:
    """The application and module logics that keep a plain-Python scene working.

    Attributes:
        app_logic: the ``vtkSlicerApplicationLogic`` observing the scene.
        modules: module logics by registered name ("Colors", "Data", "Volumes",
            "Segmentations", "SubjectHierarchy", "Tables").
    """

    app_logic: Any
    modules: dict[str, Any]


# The logics must stay referenced from Python as long as the scene is used: nothing on the C++
# side owns them. Keyed weakly by the scene object so that a dropped scene releases them.
_LOGICS: weakref.WeakKeyDictionary[Any, SceneLogics] = weakref.WeakKeyDictionary()


_CACHE_DIRECTORY: list[str] = []


def _cache_directory() -> str:
    """One private cache folder per process, removed at exit (``ReadFromMRB`` unpacks there)."""
    if not _CACHE_DIRECTORY:
        folder = tempfile.mkdtemp(prefix="dlrpredictor-mrml-cache-")
        # Without this sentinel file the cache manager warns on every scene that it will not clean
        # the folder; this folder is ours alone.
        (Path(folder) / ".slicer-cache").touch()
        atexit.register(shutil.rmtree, folder, True)
        _CACHE_DIRECTORY.append(folder)
    return _CACHE_DIRECTORY[0]


def in_slicer_application() -> bool:
    """Whether this code runs inside the real Slicer application (``slicer.app`` exists).

    Returns:
        True inside Slicer (GUI or ``--no-main-window``), False in plain Python.
    """
    import slicer

    return getattr(slicer, "app", None) is not None


def create_scene() -> Any:
    """Create a new MRML scene with the application and module logics of Slicer.

    Returns:
        A ``vtkMRMLScene``. Keep a reference to it while using it: its logics live as long as
        the scene object does (see :func:`get_logics`).
    """
    import slicer
    import vtk

    scene = slicer.vtkMRMLScene()
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(_cache_directory())
    data_io = slicer.vtkDataIOManager()
    data_io.SetCacheManager(cache)
    scene.SetCacheManager(cache)
    scene.SetDataIOManager(data_io)

    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)

    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app_logic)
    # Without the application's share folder the Colors logic logs an error about the missing
    # colour files (Inferno, GenericColors, ...) on every scene; the built-in tables still load.
    warnings_shown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        colors.SetMRMLScene(scene)
        colors.AddDefaultColorNodes()  # already done by SetMRMLScene; a no-op kept for clarity
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(warnings_shown)
    app_logic.SetColorLogic(colors)
    app_logic.SetModuleLogic("Colors", colors)

    modules: dict[str, Any] = {"Colors": colors}
    for name, class_name in MODULE_LOGIC_CLASSES.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        modules[name] = logic

    _LOGICS[scene] = SceneLogics(app_logic=app_logic, modules=modules)
    return scene


def get_logics(scene: Any) -> SceneLogics:
    """The logics of a scene made by :func:`create_scene`.

    Args:
        scene: a scene returned by :func:`create_scene` (the same Python object).

    Returns:
        Its :class:`SceneLogics`.

    Raises:
        KeyError: if the scene was not made by :func:`create_scene`.
    """
    try:
        return _LOGICS[scene]
    except KeyError:
        raise KeyError("this MRML scene was not created by scene_adapter.create_scene()") from None


def install_globals(scene: Any) -> None:
    """Make ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` refer to ``scene``.

    ``slicer.util`` helpers such as ``arrayFromSegmentBinaryLabelmap`` or ``getNode`` read these
    names. Inside the real Slicer application this does nothing: the application owns them.

    Args:
        scene: a scene returned by :func:`create_scene`.
    """
    import slicer

    if in_slicer_application():
        return
    logics = get_logics(scene)
    slicer.mrmlScene = scene
    slicer.modules = SimpleNamespace(
        **{
            name.lower(): SimpleNamespace(logic=(lambda logic=logic: logic))
            for name, logic in logics.modules.items()
        }
    )
