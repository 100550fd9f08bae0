""".mrb and .mrml scene files: written complete or not at all, read into a fresh scene."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..base.errors import DLRError, InputError


def save_scene(scene: Any, path: str | Path) -> Path:
    """Save the scene with all its data as a .mrb bundle, or as a .mrml file with a Data folder.

    The file appears only once complete: it is written under a temporary name in the same folder
    and renamed.

    Args:
        scene: the MRML scene.
        path: ``*.mrb`` (one file), or ``*.mrml`` (the scene file, data in ``Data/`` next to it).

    Returns:
        The written path.

    Raises:
        InputError: unsupported extension. DLRError: the scene could not be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mrb", ".mrml"):
        raise InputError(f"scene file {path.name} must end with .mrb or .mrml")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=path.parent))
    try:
        bundle = staging / f"{path.stem}.mrb"
        if not scene.WriteToMRB(str(bundle)):
            raise DLRError(f"could not write scene {path}: check the folder is writable and has space")
        if suffix == ".mrb":
            os.replace(bundle, path)
        else:
            _unpack_as_mrml(bundle, staging / "unpacked", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _unpack_as_mrml(bundle: Path, folder: Path, path: Path) -> None:
    """Unpack a bundle's data next to ``path`` and move its .mrml there last."""
    with zipfile.ZipFile(bundle) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise DLRError(f"unexpected entry {member!r} in the scene bundle")
        archive.extractall(folder)
    roots = [p for p in folder.iterdir() if p.is_dir()]
    root = roots[0] if len(roots) == 1 else folder
    mrml_files = sorted(root.glob("*.mrml"))
    if not mrml_files:
        raise DLRError(f"could not write scene {path}: the bundle holds no .mrml file")
    for item in root.iterdir():
        if item.suffix.lower() == ".mrml":
            continue
        target = path.parent / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            os.replace(item, target)
    os.replace(mrml_files[0], path)


def load_scene(path: str | Path) -> Any:
    """Load a .mrb or .mrml scene into a fresh plain-Python scene.

    Args:
        path: a scene file written by :func:`save_scene` or by Slicer.

    Returns:
        A new scene from ``scene_adapter.create_scene()`` holding the file's nodes and data.

    Raises:
        InputError: missing file or unsupported extension. DLRError: the file could not be read.
    """
    from . import adapter as scene_adapter

    path = Path(path)
    if not path.is_file():
        raise InputError(f"scene file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".mrb", ".mrml"):
        raise InputError(f"scene file {path.name} must end with .mrb or .mrml")
    scene = scene_adapter.create_scene()
    if suffix == ".mrb":
        ok = scene.ReadFromMRB(str(path.resolve()))
    else:
        scene.SetURL(str(path.resolve()))
        ok = scene.Import()
    if not ok:
        scene.Clear(1)
        raise DLRError(f"could not read scene {path}: the file is damaged or not a Slicer scene")
    return scene
