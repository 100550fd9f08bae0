"""Verify a model bundle completely before any use: names, types, content, sizes, sha256.

A bundle is a folder holding ``manifest.json`` (validated by
``Resources/Schemas/bundle.schema.json``) and the files it lists, each with its sha256 and size.

Verification (:func:`load_bundle`) refuses, with a message naming the file:
- a manifest.json that does not parse, is schema-invalid, or has a newer ``format_version``;
- a listed file that is missing, or whose size or sha256 differs;
- a file in the folder that is not listed, a symbolic link, or a path leaving the folder;
- a file type that can run code when loaded (pickle, joblib, torch checkpoints, Python, native
  libraries, HDF5/Keras, object arrays inside .npy/.npz) or any type outside :data:`SAFE_SUFFIXES`;
- nothing for a different software version: a different MAJOR version of numpy, scikit-learn,
  pyradiomics, LightGBM, XGBoost or SimpleITK only gives a warning
  (:attr:`VerifiedBundle.warnings`): fitted steps travel as plain JSON and .npz arrays of numeric
  dtypes (readable alike by numpy 1.x, e.g. in Slicer 5.4-5.8, and 2.x), never as pickled
  objects, but results may drift slightly. The torch and torchvision versions are recorded as
  provenance only: a prediction applies the network's safetensors weights in numpy
  (``resnet_numpy``) and needs no torch at all.

Each file is read once; its bytes are hashed and kept in memory, and every later read parses
those same bytes, so nothing can change between the check and the use.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BundleError
from .manifest import MANIFEST_NAME, REINSTALL, VerifiedBundle, decode_manifest, one_line, validate_manifest
from .software import check_software

#: The only file types a bundle may hold: none of them runs code when read.
SAFE_SUFFIXES = frozenset(
    {".json", ".md", ".txt", ".yaml", ".yml", ".csv", ".npz", ".npy", ".safetensors", ".png"}
)

_CODE_REASONS = {
    ".pkl": "a Python pickle, which can run any code when loaded",
    ".pickle": "a Python pickle, which can run any code when loaded",
    ".joblib": "a joblib file (pickle inside), which can run any code when loaded",
    ".pt": "a PyTorch checkpoint (pickle inside), which can run any code when loaded",
    ".pth": "a PyTorch checkpoint (pickle inside), which can run any code when loaded",
    ".ckpt": "a checkpoint (pickle inside), which can run any code when loaded",
    ".bin": "a PyTorch binary checkpoint (pickle inside), which can run any code when loaded",
    ".py": "Python code",
    ".pyc": "compiled Python code",
    ".pyo": "compiled Python code",
    ".pyd": "a native Python extension (program code)",
    ".so": "a native library (program code)",
    ".dll": "a native library (program code)",
    ".dylib": "a native library (program code)",
    ".exe": "a program",
    ".sh": "a shell script",
    ".bat": "a Windows script",
    ".h5": "an HDF5/Keras model, which can hold code (Lambda layers) run when loaded",
    ".hdf5": "an HDF5/Keras model, which can hold code (Lambda layers) run when loaded",
    ".keras": "a Keras model, which can hold code run when loaded",
}


def load_bundle(path: Path | str, *, expected_manifest_sha256: str | None = None) -> VerifiedBundle:
    """Verify a bundle folder completely and return its verified content.

    Args:
        path: the bundle folder (or its manifest.json).
        expected_manifest_sha256: when given (e.g. the pinned hash of the bundle shipped with
            the extension), manifest.json must have exactly this sha256.

    Returns:
        The verified bundle, holding the bytes of every listed file.

    Raises:
        BundleError: anything that makes the bundle unsafe or unusable (see the module notes).
    """
    return verify_folder(Path(path), expected_manifest_sha256, check_versions=True)


def verify_folder(
    root: Path, expected_manifest_sha256: str | None, *, check_versions: bool
) -> VerifiedBundle:
    """:func:`load_bundle`; ``check_versions=False`` skips the software comparison (for the writer)."""
    if root.name == MANIFEST_NAME and root.is_file():
        root = root.parent
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise BundleError(
            f"model bundle folder '{root}' {what}; choose the folder that holds {MANIFEST_NAME}"
        )

    # Checked before walking the folder, so that pointing at a large unrelated folder fails fast.
    if not (root / MANIFEST_NAME).exists():
        raise BundleError(f"'{root}' is not a model bundle: it has no {MANIFEST_NAME}; reinstall the bundle")
    found = _scan_folder(root)
    manifest_bytes = _read_regular(root, MANIFEST_NAME, limit=16 << 20)
    if (
        expected_manifest_sha256 is not None
        and sha256_bytes(manifest_bytes) != expected_manifest_sha256.lower()
    ):
        raise BundleError(
            f"bundle file '{MANIFEST_NAME}' in '{root}' is not the expected one (its sha256 differs): "
            f"{REINSTALL}"
        )
    manifest = decode_manifest(manifest_bytes)
    validate_manifest(manifest)

    listed: dict[str, dict[str, Any]] = manifest["files"]
    for name in sorted(found | set(listed)):
        check_code_type(name)
    for name in sorted(found - set(listed) - {MANIFEST_NAME}):
        raise BundleError(
            f"bundle folder '{root}' holds the file '{name}' that {MANIFEST_NAME} does not list: "
            f"refused; remove it or reinstall the bundle"
        )
    for name in sorted(listed):
        check_allowed_type(name)
    for name in sorted(set(listed) - found):
        raise BundleError(f"bundle file '{name}' listed in {MANIFEST_NAME} is missing; {REINSTALL}")

    data: dict[str, bytes] = {}
    for name, entry in listed.items():
        content = _read_regular(root, name, limit=int(entry["bytes"]))
        if len(content) != entry["bytes"]:
            raise BundleError(
                f"bundle file '{name}' has {len(content)} bytes but {MANIFEST_NAME} records "
                f"{entry['bytes']}: {REINSTALL}"
            )
        if sha256_bytes(content) != entry["sha256"]:
            raise BundleError(f"bundle file '{name}' does not match its checksum: {REINSTALL}")
        check_content(name, content)
        data[name] = content

    warnings = check_software(manifest["software"]) if check_versions else []
    return VerifiedBundle(root.resolve(), manifest, data, warnings)


def sha256_file(path: Path | str) -> str:
    """SHA-256 of a file, read in chunks.

    Args:
        path: the file.

    Returns:
        The lowercase hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """SHA-256 of bytes, as a lowercase hex digest."""
    return hashlib.sha256(data).hexdigest()


def check_code_type(name: str) -> None:
    """Refuse a file type that can run code when loaded, naming why."""
    suffix = Path(name).suffix.lower()
    if suffix in _CODE_REASONS:
        raise BundleError(
            f"bundle file '{name}' is {_CODE_REASONS[suffix]}: refused; bundles carry only formats "
            f"that run no code when loaded"
        )


def check_allowed_type(name: str) -> None:
    """Refuse any file type outside :data:`SAFE_SUFFIXES`."""
    check_code_type(name)
    suffix = Path(name).suffix.lower()
    if suffix not in SAFE_SUFFIXES:
        raise BundleError(
            f"bundle file '{name}' has a type ('{suffix or 'no extension'}') that a bundle may not hold: "
            f"refused; accepted types: {', '.join(sorted(SAFE_SUFFIXES))}"
        )


def check_content(name: str, content: bytes) -> None:
    """Refuse array files whose loading would need pickle, and malformed safetensors headers."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".npz":
            with zipfile.ZipFile(io.BytesIO(content)) as z:
                members = z.namelist()
            if any(not m.endswith(".npy") for m in members):
                raise ValueError("it holds members that are not arrays")
            with np.load(io.BytesIO(content), allow_pickle=False) as npz:
                for key in npz.files:
                    npz[key]  # raises ValueError for object arrays (they need pickle)
        elif suffix == ".npy":
            np.load(io.BytesIO(content), allow_pickle=False)
        elif suffix == ".safetensors":
            n = int.from_bytes(content[:8], "little")
            if (
                len(content) < 8
                or n > len(content) - 8
                or not isinstance(json.loads(content[8 : 8 + n]), dict)
            ):
                raise ValueError("its header is malformed")
    except ValueError as e:
        why = "holds an object array, which needs pickle (it can run code when loaded)"
        if "pickle" not in str(e).lower():
            why = f"is not a valid array file ({one_line(e)})"
        raise BundleError(f"bundle file '{name}' {why}: refused") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise BundleError(f"bundle file '{name}' is not a valid array file ({one_line(e)}): refused") from e


def _scan_folder(root: Path) -> set[str]:
    """Relative POSIX paths of every regular file; symbolic links and special files are refused."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for entry in [*dirnames, *filenames]:
            full = base / entry
            rel = full.relative_to(root).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(
                    f"bundle entry '{rel}' is a symbolic link, which could point outside the bundle: "
                    f"refused; reinstall the bundle as plain files"
                )
            if entry in filenames:
                if not stat.S_ISREG(mode):
                    raise BundleError(f"bundle entry '{rel}' is not a regular file: refused")
                found.add(rel)
    return found


def _read_regular(root: Path, name: str, limit: int) -> bytes:
    """Read at most limit+1 bytes of a regular file without following a final symbolic link."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(root.joinpath(*name.split("/")), flags)
    except OSError as e:
        raise BundleError(f"bundle file '{name}' cannot be opened ({e.strerror}): {REINSTALL}") from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BundleError(f"bundle entry '{name}' is not a regular file: refused")
        return f.read(limit + 1)
