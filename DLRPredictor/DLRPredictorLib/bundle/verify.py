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
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BundleError
from . import limits, trust
from .manifest import (
    MANIFEST_NAME,
    REINSTALL,
    SIGNATURE_NAME,
    VerifiedBundle,
    decode_manifest,
    one_line,
    parse_json,
    validate_manifest,
)
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


def load_bundle(
    path: Path | str,
    *,
    expected_manifest_sha256: str | None = None,
    expected_digest: str | None = None,
    trusted_keys: Path | str | None = None,
) -> VerifiedBundle:
    """Verify a bundle folder completely and return its verified content.

    A bundle folder shipped with DLRPredictor must have its pinned digest
    (``trust.SHIPPED_BUNDLE_DIGESTS``) whatever the arguments.

    Args:
        path: the bundle folder (or its manifest.json).
        expected_manifest_sha256: when given, manifest.json must have exactly this sha256.
        expected_digest: when given, the bundle's content digest must be exactly this.
        trusted_keys: folder of trusted public keys (PEM) for signature.json; default
            ``$DLR_TRUSTED_KEYS``.

    Returns:
        The verified bundle, holding the bytes of every listed file.

    Raises:
        BundleError: anything that makes the bundle unsafe or unusable (see the module notes).
    """
    return verify_folder(
        Path(path),
        expected_manifest_sha256,
        check_versions=True,
        expected_digest=expected_digest,
        trusted_keys=trust.trusted_keys_dir(trusted_keys),
    )


def verify_folder(
    root: Path,
    expected_manifest_sha256: str | None,
    *,
    check_versions: bool,
    expected_digest: str | None = None,
    trusted_keys: Path | None = None,
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
    for name in sorted(found - set(listed) - {MANIFEST_NAME, SIGNATURE_NAME}):
        raise BundleError(
            f"bundle folder '{root}' holds the file '{name}' that {MANIFEST_NAME} does not list: "
            f"refused; remove it or reinstall the bundle"
        )
    for name in sorted(listed):
        check_allowed_type(name)
    for name in sorted(set(listed) - found):
        raise BundleError(f"bundle file '{name}' listed in {MANIFEST_NAME} is missing; {REINSTALL}")
    total = sum(int(entry["bytes"]) for entry in listed.values())
    if total > limits.MAX_BUNDLE_BYTES:
        raise BundleError(
            f"bundle '{root}' lists {total} bytes of files, more than the {limits.MAX_BUNDLE_BYTES} "
            f"a bundle may hold: refused"
        )

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

    digest = trust.content_digest(manifest, {name: entry["sha256"] for name, entry in listed.items()})
    pin = expected_digest or trust.shipped_pin(root)
    if pin is not None and digest != pin.lower():
        raise BundleError(
            f"bundle '{root}' is not the expected one: its content digest is {digest}, not the "
            f"pinned {pin.lower()} (a file or manifest.json was changed, even with its sha256 "
            f"updated): {REINSTALL}"
        )
    level = trust.UNSIGNED
    trust_warnings: tuple[str, ...] = (trust.UNSIGNED_WARNING,)
    if SIGNATURE_NAME in found:
        from .signature import MAX_SIGNATURE_BYTES, check_signature

        signed = _read_regular(root, SIGNATURE_NAME, limit=MAX_SIGNATURE_BYTES)
        if len(signed) > MAX_SIGNATURE_BYTES:
            raise BundleError(f"bundle file '{SIGNATURE_NAME}' is larger than a signature: refused")
        level, warning = check_signature(signed, digest, trusted_keys)
        trust_warnings = () if warning is None else (warning,)
    if pin is not None:
        level, trust_warnings = trust.PINNED, ()
    warnings = check_software(manifest["software"]) if check_versions else []
    return VerifiedBundle(
        root.resolve(), manifest, data, warnings, digest=digest, trust=level, trust_warnings=trust_warnings
    )


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
    """Refuse a file whose reading would run code, or hang or exhaust the machine (``limits``).

    Array files needing pickle, malformed or lying array headers, zip bombs, deeply nested JSON
    and YAML alias bombs are refused here, at verification, from their structure alone.
    """
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".npz":
            limits.check_npz(content)
            with np.load(io.BytesIO(content), allow_pickle=False) as npz:
                for key in npz.files:
                    npz[key]  # raises ValueError for object arrays (they need pickle)
        elif suffix == ".npy":
            limits.check_npy(content)
            np.load(io.BytesIO(content), allow_pickle=False)
        elif suffix == ".safetensors":
            limits.check_safetensors(content, lambda text: parse_json(text, name))
        elif suffix == ".json":
            parse_json(_utf8(name, content), name)
        elif suffix in (".yaml", ".yml"):
            limits.check_yaml(_utf8(name, content))
    except ValueError as e:
        if suffix in (".json", ".yaml", ".yml"):
            raise BundleError(f"bundle file '{name}' is refused: {one_line(e)}") from e
        why = "holds an object array, which needs pickle (it can run code when loaded)"
        if "pickle" not in str(e).lower():
            why = f"is not a valid array file ({one_line(e)})"
        raise BundleError(f"bundle file '{name}' {why}: refused") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise BundleError(f"bundle file '{name}' is not a valid array file ({one_line(e)}): refused") from e


def _utf8(name: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"bundle file '{name}' is not UTF-8 text ({e.reason}); {REINSTALL}") from e


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
