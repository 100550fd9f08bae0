"""Write a model bundle atomically: into a hidden sibling folder, verified, then renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from ..base.errors import BundleError
from ..base.json_values import to_json_value
from .manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    check_relative_name,
    one_line,
    validate_manifest,
)
from .software import software_versions
from .verify import check_allowed_type, check_content, sha256_bytes, verify_folder

_DEFAULT_ROLES = {
    ".safetensors": "weights",
    ".npz": "arrays",
    ".npy": "arrays",
    ".json": "model",
    ".yaml": "parameters",
    ".yml": "parameters",
    ".md": "documentation",
    ".txt": "documentation",
    ".csv": "table",
    ".png": "figure",
}


def write_bundle(out_dir: Path | str, manifest: Mapping[str, Any], files: Mapping[str, bytes | Path]) -> Path:
    """Write a verified bundle atomically.

    ``files`` entries of ``manifest`` are filled with sha256, size and role (a role already given
    in ``manifest["files"][name]["role"]`` is kept); ``format_version``, ``created`` and
    ``software`` are filled when absent. Everything is written to a hidden sibling folder,
    verified with :func:`load_bundle`, and only then renamed to ``out_dir``. An existing
    ``out_dir`` is replaced only if it is empty or a bundle (has manifest.json); on any failure
    ``out_dir`` is left as it was and no partial folder remains.

    Args:
        out_dir: the bundle folder to create or replace.
        manifest: manifest content (see Resources/Schemas/bundle.schema.json).
        files: relative POSIX path -> content (bytes) or a file to copy; must include model_card.md.

    Returns:
        ``out_dir``.

    Raises:
        BundleError: invalid manifest, an unsafe file name or type, or the folder cannot be written.
    """
    out_dir = Path(out_dir)
    man = _normalise(manifest)
    man.setdefault("format_version", FORMAT_VERSION)
    man.setdefault("created", date.today().isoformat())
    man.setdefault("software", software_versions())
    if man["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"cannot write bundle format version {man['format_version']}; only {FORMAT_VERSION}"
        )

    contents: dict[str, bytes] = {}
    for name, value in files.items():
        check_relative_name(name)
        check_allowed_type(name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            contents[name] = bytes(value)
        else:
            try:
                contents[name] = Path(value).read_bytes()
            except OSError as e:
                raise BundleError(
                    f"cannot write bundle: '{value}' (for '{name}') cannot be read ({e.strerror})"
                ) from e
        check_content(name, contents[name])
    if MODEL_CARD_NAME not in contents:
        raise BundleError(f"cannot write bundle: the files must include {MODEL_CARD_NAME}")
    given = man.get("files")
    declared = given if isinstance(given, dict) else {}
    roles = {k: v.get("role") for k, v in declared.items() if isinstance(v, dict)}
    for name in declared:
        if name not in contents:
            raise BundleError(f"cannot write bundle: manifest lists '{name}' but no content was given for it")
    man["files"] = {
        name: {
            "sha256": sha256_bytes(content),
            "bytes": len(content),
            "role": roles.get(name) or _DEFAULT_ROLES.get(Path(name).suffix.lower(), "data"),
        }
        for name, content in sorted(contents.items())
    }
    validate_manifest(man)

    def fill(tmp: Path) -> None:
        for name, content in contents.items():
            target = tmp.joinpath(*name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as f:
                f.write(content)
        text = json.dumps(man, indent=2, ensure_ascii=False) + "\n"
        with open(tmp / MANIFEST_NAME, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
        # The writer never produces what the reader would refuse. Versions are not compared: a
        # bundle may record the (other) environment it was built in.
        verify_folder(tmp, None, check_versions=False)

    return write_folder_atomically(out_dir, MANIFEST_NAME, "a model bundle", fill)


def write_folder_atomically(out_dir: Path, marker: str, what: str, fill: Callable[[Path], None]) -> Path:
    """Write a bundle folder through a hidden sibling, then rename it into place.

    Args:
        out_dir: the folder to create or replace: an existing one only when it is empty or holds
            ``marker`` (a bundle of that kind), so that no other folder is ever overwritten.
        marker: the file that identifies a bundle of this kind (e.g. manifest.json).
        what: the kind in messages, e.g. "a model bundle".
        fill: writes and verifies the bundle in the hidden sibling it is given.

    Returns:
        ``out_dir``.

    Raises:
        BundleError: ``out_dir`` is not replaceable or cannot be written; whatever ``fill`` raises.
            On any failure ``out_dir`` is left as it was and no partial folder remains.
    """
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise BundleError(f"cannot write bundle: '{out_dir}' exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / marker).is_file():
        raise BundleError(
            f"cannot write bundle: '{out_dir}' is a folder that is not {what}; "
            f"choose a new or empty folder (it is never overwritten)"
        )
    tag = uuid.uuid4().hex[:12]
    tmp = out_dir.parent / f".{out_dir.name}.partial-{tag}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        fill(tmp)
        _replace_folder(tmp, out_dir, tag)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"cannot write bundle to '{out_dir}': {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _replace_folder(tmp: Path, out_dir: Path, tag: str) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    backup = out_dir.parent / f".{out_dir.name}.old-{tag}"
    os.replace(out_dir, backup)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        os.replace(backup, out_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _normalise(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON values (NaN refused), round-tripped so that what is validated is what is written."""
    try:
        return json.loads(json.dumps(to_json_value(manifest, non_finite="error"), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise BundleError(
            f"cannot write bundle: the manifest cannot be stored as JSON ({one_line(e)})"
        ) from e
