"""Model bundles: write them atomically, and verify them completely before any use.

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

import copy
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BundleError
from ..inputs.cohort_csv import RESERVED_COLUMNS

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_CARD_NAME = "model_card.md"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "Resources" / "Schemas" / "bundle.schema.json"

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

# Packages whose major-version change warns: their fitted steps travel as arrays/JSON. torch and
# torchvision are not among them: applying a bundle does not use them.
_WARN_MAJOR = ("numpy", "scikit-learn", "pyradiomics", "SimpleITK", "lightgbm", "xgboost")

# Distribution names to try for each recorded package (forks ship under other names).
_DISTRIBUTIONS = {
    "numpy": ("numpy",),
    "scikit-learn": ("scikit-learn",),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "pyradiomics": ("pyradiomics", "pyradiomics-bhklab"),
    "SimpleITK": ("SimpleITK", "simpleitk"),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost", "xgboost-cpu"),
}
_MODULES = {
    "numpy": "numpy",
    "scikit-learn": "sklearn",
    "torch": "torch",
    "torchvision": "torchvision",
    "pyradiomics": "radiomics",
    "SimpleITK": "SimpleITK",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
}
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
_REINSTALL = "the bundle was altered or damaged; reinstall it"


@dataclass(frozen=True)
class ClinicalVariable:
    """One clinical input the bundle declares (a manifest column with this name).

    Attributes:
        name: column / field name, e.g. ``age``.
        type: ``"numeric"`` or ``"categorical"``.
        required: whether the full model needs it (otherwise the image-only model is used).
        unit: unit of a numeric value, e.g. ``years``.
        minimum: smallest accepted numeric value, or None.
        maximum: largest accepted numeric value, or None.
        allowed: accepted categorical values.
        description: text for the user.
    """

    name: str
    type: str
    required: bool
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[str, ...] = ()
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The variable as a plain dict (allowed as a list)."""
        d = asdict(self)
        d["allowed"] = list(self.allowed)
        return d


class VerifiedBundle:
    """A bundle whose every file was checked; holds the verified bytes of each file.

    Created only by :func:`load_bundle`. All ``read_*`` methods parse the bytes that were hashed,
    never the files on disk again.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], data: dict[str, bytes], warnings: list[str]):
        self._path = path
        self._manifest = manifest
        self._data = data
        self._warnings = tuple(warnings)

    def __repr__(self) -> str:
        return f"VerifiedBundle(id={self.id!r}, version={self.version!r}, path={str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The bundle folder."""
        return self._path

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the validated manifest.json content."""
        return copy.deepcopy(self._manifest)

    @property
    def id(self) -> str:
        """The bundle id (written to every result row as ``bundle_id``)."""
        return str(self._manifest["id"])

    @property
    def version(self) -> str:
        """The bundle version string."""
        return str(self._manifest["version"])

    @property
    def cutoff(self) -> float:
        """The frozen probability cutoff of the positive class."""
        return float(self._manifest["cutoff"])

    @property
    def files(self) -> tuple[str, ...]:
        """Names of the verified files (relative POSIX paths), manifest.json excluded."""
        return tuple(self._data)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Non-fatal findings of verification (e.g. a different scikit-learn major version)."""
        return self._warnings

    @property
    def clinical_variables(self) -> tuple[ClinicalVariable, ...]:
        """The clinical inputs the bundle declares, in manifest order."""
        out = []
        for v in self._manifest["inputs"]["clinical_variables"]:
            out.append(
                ClinicalVariable(
                    name=v["name"],
                    type=v["type"],
                    required=bool(v["required"]),
                    unit=v.get("unit"),
                    minimum=None if v.get("minimum") is None else float(v["minimum"]),
                    maximum=None if v.get("maximum") is None else float(v["maximum"]),
                    allowed=tuple(v.get("allowed", ())),
                    description=v.get("description", ""),
                )
            )
        return tuple(out)

    def read_bytes(self, name: str) -> bytes:
        """The verified bytes of a listed file.

        Args:
            name: the file's relative path as listed in manifest.json.

        Returns:
            The file content that was hashed.

        Raises:
            BundleError: the bundle has no such file.
        """
        try:
            return self._data[name]
        except KeyError:
            raise BundleError(
                f"bundle '{self.id}' has no file '{name}'; its files are: {', '.join(self._data)}"
            ) from None

    def read_text(self, name: str) -> str:
        """A listed file decoded as UTF-8 text.

        Raises:
            BundleError: no such file, or it is not UTF-8 text.
        """
        try:
            return self.read_bytes(name).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BundleError(f"bundle file '{name}' is not UTF-8 text ({e.reason}); {_REINSTALL}") from e

    def read_json(self, name: str) -> Any:
        """A listed JSON file, parsed (duplicate keys and NaN are refused).

        Raises:
            BundleError: no such file, or it is not valid JSON.
        """
        return _parse_json(self.read_text(name), name)

    def read_yaml(self, name: str) -> Any:
        """A listed YAML file, parsed with ``yaml.safe_load`` (no Python objects).

        Raises:
            BundleError: no such file, or it is not valid YAML.
        """
        import yaml

        try:
            return yaml.safe_load(self.read_text(name))
        except yaml.YAMLError as e:
            raise BundleError(f"bundle file '{name}' is not valid YAML: {_one_line(e)}") from e

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        """Arrays of a listed .npz, .safetensors or .npy file (a .npy gives {stem: array}).

        Object arrays are never unpickled (``allow_pickle=False``).

        Raises:
            BundleError: no such file, not an array file, or unreadable.
        """
        data = self.read_bytes(name)
        suffix = Path(name).suffix.lower()
        try:
            if suffix == ".npz":
                with np.load(io.BytesIO(data), allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            if suffix == ".npy":
                return {Path(name).stem: np.load(io.BytesIO(data), allow_pickle=False)}
            if suffix == ".safetensors":
                from safetensors.numpy import load

                return load(data)
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise BundleError(f"bundle file '{name}' cannot be read as arrays: {_one_line(e)}") from e
        raise BundleError(f"bundle file '{name}' is not an array file (.npz, .npy or .safetensors)")


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


def software_versions() -> dict[str, str | None]:
    """Versions of the running environment, in the manifest's ``software`` form.

    Package metadata is read without importing the packages (torch costs seconds to import);
    a module without metadata is imported only if it is present. Absent packages are None.

    Returns:
        {"python", "numpy", "scikit-learn", "torch", "torchvision", "pyradiomics", "SimpleITK",
        "lightgbm", "xgboost", "dlrpredictor"} -> version string or None.
    """
    from ..base.version import __version__

    out: dict[str, str | None] = {"python": ".".join(str(p) for p in sys.version_info[:3])}
    for key, dists in _DISTRIBUTIONS.items():
        out[key] = _installed_version(dists, _MODULES[key])
    out["dlrpredictor"] = __version__
    return out


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
    return _verify(Path(path), expected_manifest_sha256, check_versions=True)


def _verify(root: Path, expected_manifest_sha256: str | None, *, check_versions: bool) -> VerifiedBundle:
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
    if expected_manifest_sha256 is not None and _sha256(manifest_bytes) != expected_manifest_sha256.lower():
        raise BundleError(
            f"bundle file '{MANIFEST_NAME}' in '{root}' is not the expected one (its sha256 differs): "
            f"{_REINSTALL}"
        )
    manifest = _decode_manifest(manifest_bytes)
    validate_manifest(manifest)

    listed: dict[str, dict[str, Any]] = manifest["files"]
    for name in sorted(found | set(listed)):
        _check_code_type(name)
    for name in sorted(found - set(listed) - {MANIFEST_NAME}):
        raise BundleError(
            f"bundle folder '{root}' holds the file '{name}' that {MANIFEST_NAME} does not list: "
            f"refused; remove it or reinstall the bundle"
        )
    for name in sorted(listed):
        _check_allowed_type(name)
    for name in sorted(set(listed) - found):
        raise BundleError(f"bundle file '{name}' listed in {MANIFEST_NAME} is missing; {_REINSTALL}")

    data: dict[str, bytes] = {}
    for name, entry in listed.items():
        content = _read_regular(root, name, limit=int(entry["bytes"]))
        if len(content) != entry["bytes"]:
            raise BundleError(
                f"bundle file '{name}' has {len(content)} bytes but {MANIFEST_NAME} records "
                f"{entry['bytes']}: {_REINSTALL}"
            )
        if _sha256(content) != entry["sha256"]:
            raise BundleError(f"bundle file '{name}' does not match its checksum: {_REINSTALL}")
        _check_content(name, content)
        data[name] = content

    warnings = check_software(manifest["software"]) if check_versions else []
    return VerifiedBundle(root.resolve(), manifest, data, warnings)


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Check a bundle manifest: format version, schema, and rules a schema cannot express.

    Args:
        manifest: the parsed manifest.json.

    Raises:
        BundleError: naming the failing field.
    """
    fv = manifest.get("format_version")
    if isinstance(fv, int) and not isinstance(fv, bool) and fv > FORMAT_VERSION:
        raise BundleError(
            f"this bundle has format version {fv}, newer than this DLRPredictor reads "
            f"(up to {FORMAT_VERSION}): update DLRPredictor to use it"
        )
    files = manifest.get("files")
    if isinstance(files, Mapping):
        for name in files:
            _check_relative_name(str(name))
    _validate_schema(manifest)

    seen_lower: dict[str, str] = {}
    for name in manifest["files"]:
        other = seen_lower.setdefault(name.lower(), name)
        if other != name:
            raise BundleError(
                f"bundle files '{other}' and '{name}' differ only in letter case, which some systems "
                f"cannot store: {_REINSTALL}"
            )
    names: set[str] = set()
    for i, v in enumerate(manifest["inputs"]["clinical_variables"]):
        where = f"inputs.clinical_variables[{i}]"
        if v["name"] in names:
            raise BundleError(f"bundle {MANIFEST_NAME}: clinical variable '{v['name']}' is declared twice")
        names.add(v["name"])
        if v["name"] in RESERVED_COLUMNS:
            raise BundleError(
                f"bundle {MANIFEST_NAME}: field '{where}.name' is '{v['name']}', a reserved manifest "
                f"column ({', '.join(RESERVED_COLUMNS)})"
            )
        lo, hi = v.get("minimum"), v.get("maximum")
        if lo is not None and hi is not None and lo > hi:
            raise BundleError(f"bundle {MANIFEST_NAME}: field '{where}' has minimum {lo} above maximum {hi}")


def check_software(recorded: Mapping[str, str | None]) -> list[str]:
    """Compare the bundle's build versions with the running ones (rule in the module notes).

    Args:
        recorded: the manifest's ``software`` object.

    Returns:
        Warnings for the differences (none is fatal).
    """
    running = software_versions()
    warnings: list[str] = []
    for key in _WARN_MAJOR:
        built, now = recorded.get(key), running.get(key)
        if not built:
            continue
        if not now:
            warnings.append(f"the bundle was built with {key} {built}, which is not installed here")
            continue
        if _major(built) == _major(now) or _major(built) is None or _major(now) is None:
            continue
        warnings.append(
            f"the bundle was built with {key} {built} and {key} {now} is installed; results may "
            f"differ slightly from the bundle's reported metrics"
        )
    return warnings


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
        _check_relative_name(name)
        _check_allowed_type(name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            contents[name] = bytes(value)
        else:
            try:
                contents[name] = Path(value).read_bytes()
            except OSError as e:
                raise BundleError(
                    f"cannot write bundle: '{value}' (for '{name}') cannot be read ({e.strerror})"
                ) from e
        _check_content(name, contents[name])
    if MODEL_CARD_NAME not in contents:
        raise BundleError(f"cannot write bundle: the files must include {MODEL_CARD_NAME}")
    declared = man.get("files") if isinstance(man.get("files"), dict) else {}
    roles = {k: v.get("role") for k, v in declared.items() if isinstance(v, dict)}
    for name in declared:
        if name not in contents:
            raise BundleError(f"cannot write bundle: manifest lists '{name}' but no content was given for it")
    man["files"] = {
        name: {
            "sha256": _sha256(content),
            "bytes": len(content),
            "role": roles.get(name) or _DEFAULT_ROLES.get(Path(name).suffix.lower(), "data"),
        }
        for name, content in sorted(contents.items())
    }
    validate_manifest(man)

    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise BundleError(f"cannot write bundle: '{out_dir}' exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise BundleError(
            f"cannot write bundle: '{out_dir}' is a folder that is not a model bundle; "
            f"choose a new or empty folder (it is never overwritten)"
        )
    tag = uuid.uuid4().hex[:12]
    tmp = out_dir.parent / f".{out_dir.name}.partial-{tag}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
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
        _verify(tmp, None, check_versions=False)
        _replace_folder(tmp, out_dir, tag)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"cannot write bundle to '{out_dir}': {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --- helpers -------------------------------------------------------------------------------------


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
    """Round-trip through JSON so that what is validated is exactly what is written."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, (tuple, set, frozenset)):
            return list(o)
        if isinstance(o, Path):
            return o.as_posix()
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")

    try:
        return json.loads(json.dumps(manifest, default=default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise BundleError(
            f"cannot write bundle: the manifest cannot be stored as JSON ({_one_line(e)})"
        ) from e


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    try:
        return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as e:
        raise BundleError(
            f"the bundle schema '{SCHEMA_PATH}' is missing from this DLRPredictor installation; reinstall it"
        ) from e


def _validate_schema(manifest: Mapping[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is None:
        return
    where = _field_path(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        field = ".".join(p for p in (where, missing[0] if missing else "") if p)
        detail = f"required field '{field}' is missing"
    elif error.validator == "additionalProperties" and not where:
        extra = sorted(set(error.instance) - set(_schema()["properties"]))
        detail = f"field '{extra[0] if extra else '?'}' is not allowed (put additions under 'extra')"
    else:
        detail = f"field '{where or '(top level)'}' is invalid: {_one_line(error.message)}"
    raise BundleError(f"bundle file '{MANIFEST_NAME}' is invalid: {detail}; {_REINSTALL}")


def _field_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _decode_manifest(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"bundle file '{MANIFEST_NAME}' is not UTF-8 text: {_REINSTALL}") from e
    manifest = _parse_json(text, MANIFEST_NAME)
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle file '{MANIFEST_NAME}' does not hold a JSON object: {_REINSTALL}")
    return manifest


def _parse_json(text: str, name: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)  # built in C: a key-by-key loop took 0.1 s of every load
        if len(out) != len(pairs):
            seen: set[str] = set()
            for k, _ in pairs:
                if k in seen:
                    raise ValueError(f"key '{k}' appears twice")
                seen.add(k)
        return out

    def no_constant(c: str) -> Any:
        raise ValueError(f"{c} is not a number")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise BundleError(f"bundle file '{name}' is not valid JSON (line {e.lineno}): {_REINSTALL}") from e
    except ValueError as e:
        raise BundleError(f"bundle file '{name}' is not valid JSON ({e}): {_REINSTALL}") from e


def _check_relative_name(name: str) -> None:
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise BundleError(f"bundle file '{name}' is not a relative path inside the bundle folder: refused")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BundleError(f"bundle file '{name}' points outside the bundle folder or is malformed: refused")
    if name == MANIFEST_NAME:
        raise BundleError(f"bundle file list must not include '{MANIFEST_NAME}' itself")


def _check_code_type(name: str) -> None:
    suffix = Path(name).suffix.lower()
    if suffix in _CODE_REASONS:
        raise BundleError(
            f"bundle file '{name}' is {_CODE_REASONS[suffix]}: refused; bundles carry only formats "
            f"that run no code when loaded"
        )


def _check_allowed_type(name: str) -> None:
    _check_code_type(name)
    suffix = Path(name).suffix.lower()
    if suffix not in SAFE_SUFFIXES:
        raise BundleError(
            f"bundle file '{name}' has a type ('{suffix or 'no extension'}') that a bundle may not hold: "
            f"refused; accepted types: {', '.join(sorted(SAFE_SUFFIXES))}"
        )


def _check_content(name: str, content: bytes) -> None:
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
            why = f"is not a valid array file ({_one_line(e)})"
        raise BundleError(f"bundle file '{name}' {why}: refused") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise BundleError(f"bundle file '{name}' is not a valid array file ({_one_line(e)}): refused") from e


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
        raise BundleError(f"bundle file '{name}' cannot be opened ({e.strerror}): {_REINSTALL}") from e
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BundleError(f"bundle entry '{name}' is not a regular file: refused")
        return f.read(limit + 1)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _major(version: str) -> int | None:
    m = re.match(r"\s*(\d+)", str(version))
    return int(m.group(1)) if m else None


def _installed_version(dists: tuple[str, ...], module: str) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    # No metadata (e.g. a package copied into Slicer's site-packages): ask the module itself.
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    version = getattr(mod, "__version__", None)
    return str(version) if version else None


def _one_line(e: object) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 240 else text[:237] + "..."
