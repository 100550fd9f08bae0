"""The one check that an output path of a command never overwrites one of its inputs.

``dlrpredictor predict --out cohort.csv cohort.csv`` would replace the manifest with the results;
a ``--scenes`` or ``--report`` folder inside the bundle folder would add files that make the
bundle fail verification. Each command calls :func:`refuse_overwriting_inputs` before any work.
``dlrpredictor train --out DIR`` replaces DIR as a whole: :func:`refuse_replacing_inputs` also
refuses a DIR that holds an input (the manifest's own folder, say), which the replacement would
delete. :func:`refuse_unwritable_folder` refuses an output folder that cannot be written, before
any case runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import InputError


def _real(path: Path | str) -> Path:
    # realpath: a symbolic link or "a/../b" naming an input is the input.
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def refuse_overwriting_inputs(
    outputs: Mapping[str, Path | str | None],
    input_files: Iterable[Path | str | None],
    input_folders: Iterable[Path | str | None] = (),
) -> None:
    """Refuse an output that is an input file, or that is or lies inside an input folder.

    Args:
        outputs: option name (e.g. ``--out``) -> the output path (None: not asked for).
        input_files: the files the command reads (the manifest, every image and mask).
        input_folders: folders the command reads (the bundle folder, a DICOM series folder).

    Raises:
        InputError: one line naming the option, the path and the input it would overwrite.
    """
    files = {_real(p): str(p) for p in input_files if p}
    folders = {_real(p): str(p) for p in input_folders if p}
    for option, out in outputs.items():
        if not out:
            continue
        target = _real(out)
        if target in files:
            raise InputError(
                f"{option} '{out}' is the input '{files[target]}': it would be overwritten; "
                "choose another path"
            )
        for folder, shown in folders.items():
            if target == folder or folder in target.parents:
                raise InputError(
                    f"{option} '{out}' is inside the input folder '{shown}': writing there would "
                    "change an input; choose another path"
                )


def refuse_replacing_inputs(
    outputs: Mapping[str, Path | str | None], inputs: Iterable[Path | str | None]
) -> None:
    """Refuse an output folder that is replaced as a whole while it is, or holds, an input.

    Args:
        outputs: option name (e.g. ``--out``) -> the folder that will be replaced (None: none).
        inputs: every file and folder the command reads.

    Raises:
        InputError: one line naming the option, the folder and the input it would delete.
    """
    paths = {_real(p): str(p) for p in inputs if p}
    for option, out in outputs.items():
        if not out:
            continue
        target = _real(out)
        for path, shown in paths.items():
            if path == target or target in path.parents:
                raise InputError(
                    f"{option} '{out}' holds the input '{shown}': replacing that folder would delete "
                    "it; choose a new folder"
                )


def refuse_unwritable_folder(option: str, folder: Path | str | None) -> None:
    """Create the output folder if needed and refuse it when a file cannot be written there.

    Args:
        option: the option that names it (e.g. ``--scenes``).
        folder: the folder (None: not asked for).

    Raises:
        InputError: one line: the path is a file, or the folder cannot be created or written.
    """
    if not folder:
        return
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} '{folder}' is a file, not a folder; choose a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # access() can be wrong (root, ACLs, read-only mounts): only a real write tells.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as e:
        raise InputError(
            f"{option} '{folder}' cannot be written ({e.strerror or e}); choose a writable folder"
        ) from None
