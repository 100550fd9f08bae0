"""The one check that an output path of a command never overwrites one of its inputs.

``dlrpredictor predict --out cohort.csv cohort.csv`` would replace the manifest with the results;
a ``--scenes`` or ``--report`` folder inside the bundle folder would add files that make the
bundle fail verification. Each command calls :func:`refuse_overwriting_inputs` before any work.
"""

from __future__ import annotations

import os
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
