"""A bundle's manifest.json: its constants, schema and rules, and the typed view of a verified bundle.

``manifest.json`` is validated by ``Resources/Schemas/bundle.schema.json`` (:func:`validate_manifest`)
plus the rules a schema cannot express (file names, declared clinical variables). A
:class:`VerifiedBundle` (made only by :func:`..verify.load_bundle`) gives typed access to the
manifest and to the verified bytes of every file it lists.
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import BundleError, ConfigError
from ..inputs.cohort_csv import RESERVED_COLUMNS
from ..models.clinical_variables import ClinicalVariable
from .limits import MAX_NESTING, check_nesting

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_CARD_NAME = "model_card.md"
#: The signature beside manifest.json (bundle.signature); never listed in it.
SIGNATURE_NAME = "signature.json"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "Resources" / "Schemas" / "bundle.schema.json"

#: The end of every message about a damaged bundle.
REINSTALL = "the bundle was altered or damaged; reinstall it"


class VerifiedBundle:
    """A bundle whose every file was checked; holds the verified bytes of each file.

    Created only by :func:`load_bundle`. All ``read_*`` methods parse the bytes that were hashed,
    never the files on disk again.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        data: dict[str, bytes],
        warnings: list[str],
        *,
        digest: str = "",
        trust: str = "",
        trust_warnings: tuple[str, ...] = (),
    ):
        self._path = path
        self._manifest = manifest
        self._data = data
        self._warnings = tuple(warnings)
        self._digest = digest
        self._trust = trust
        self._trust_warnings = tuple(trust_warnings)

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
    def digest(self) -> str:
        """The content digest (``trust.content_digest``): sha256 hex over the manifest and every file."""
        return self._digest

    @property
    def trust(self) -> str:
        """Why it is trusted: a pinned shipped bundle, signed by a trusted or unknown key, or unsigned."""
        return self._trust

    @property
    def trust_warnings(self) -> tuple[str, ...]:
        """Warnings every prediction with this bundle carries (unsigned, or signed by an unknown key)."""
        return self._trust_warnings

    @property
    def clinical_variables(self) -> tuple[ClinicalVariable, ...]:
        """The clinical inputs the bundle declares, in manifest order (checked by validate_manifest).

        The manifest entry is :meth:`ClinicalVariable.manifest_entry`: the variables carry no
        encoding (that lives in pipeline.json), only what a user is asked for.
        """
        return tuple(ClinicalVariable.from_spec(v) for v in self._manifest["inputs"]["clinical_variables"])

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
            raise BundleError(f"bundle file '{name}' is not UTF-8 text ({e.reason}); {REINSTALL}") from e

    def read_json(self, name: str) -> Any:
        """A listed JSON file, parsed (duplicate keys and NaN are refused).

        Raises:
            BundleError: no such file, or it is not valid JSON.
        """
        return parse_json(self.read_text(name), name)

    def read_yaml(self, name: str) -> Any:
        """A listed YAML file, parsed with ``yaml.safe_load`` (no Python objects).

        Raises:
            BundleError: no such file, or it is not valid YAML.
        """
        import yaml

        # libyaml's safe loader where built in (the same resolvers and constructors as
        # yaml.safe_load): the pure-Python one took about 40 ms of every bundle load.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return yaml.load(self.read_text(name), Loader=loader)
        except yaml.YAMLError as e:
            raise BundleError(f"bundle file '{name}' is not valid YAML: {one_line(e)}") from e

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
            raise BundleError(f"bundle file '{name}' cannot be read as arrays: {one_line(e)}") from e
        raise BundleError(f"bundle file '{name}' is not an array file (.npz, .npy or .safetensors)")


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
            check_relative_name(str(name))
    _validate_schema(manifest)

    seen_lower: dict[str, str] = {}
    for name in manifest["files"]:
        other = seen_lower.setdefault(name.lower(), name)
        if other != name:
            raise BundleError(
                f"bundle files '{other}' and '{name}' differ only in letter case, which some systems "
                f"cannot store: {REINSTALL}"
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
        try:
            ClinicalVariable.from_spec(v)
        except ConfigError as exc:
            raise BundleError(f"bundle {MANIFEST_NAME}: field '{where}' is invalid: {exc}") from exc
    _check_ledger(manifest.get("heldout_ledger"))


def _check_ledger(ledger: Any) -> None:
    """The optional held-out ledger (training/ledger.py) must agree with its own entries."""
    if ledger is None:
        return
    entries = ledger["entries"]
    where = f"bundle {MANIFEST_NAME}: field 'heldout_ledger'"
    if any(e["test_set_digest"] != ledger["test_set_digest"] for e in entries):
        raise BundleError(f"{where} lists an evaluation of another test set; {REINSTALL}")
    configs = [e["config_digest"] for e in entries]
    repeated = sorted({c for c in configs if configs.count(c) > 1})
    if ledger["evaluations"] != len(entries) or ledger["configurations"] != len(set(configs)):
        raise BundleError(f"{where} counts do not match its entries; {REINSTALL}")
    if sorted(ledger["repeated"]) != repeated:
        raise BundleError(f"{where} 'repeated' does not match its entries; {REINSTALL}")


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
        detail = f"field '{where or '(top level)'}' is invalid: {one_line(error.message)}"
    raise BundleError(f"bundle file '{MANIFEST_NAME}' is invalid: {detail}; {REINSTALL}")


def _field_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def decode_manifest(data: bytes) -> dict[str, Any]:
    """Parse manifest.json's bytes into a JSON object (duplicate keys and NaN refused)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"bundle file '{MANIFEST_NAME}' is not UTF-8 text: {REINSTALL}") from e
    manifest = parse_json(text, MANIFEST_NAME)
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle file '{MANIFEST_NAME}' does not hold a JSON object: {REINSTALL}")
    return manifest


def parse_json(text: str, name: str) -> Any:
    """Parse a bundle file's JSON text, refusing duplicate keys, NaN/Infinity and deep nesting."""

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
        value = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise BundleError(f"bundle file '{name}' is not valid JSON (line {e.lineno}): {REINSTALL}") from e
    except ValueError as e:
        raise BundleError(f"bundle file '{name}' is not valid JSON ({e}): {REINSTALL}") from e
    except RecursionError as e:  # the C parser's own guard, far below any stack overflow
        raise BundleError(
            f"bundle file '{name}' is refused: it is nested more than {MAX_NESTING} levels deep"
        ) from e
    try:
        check_nesting(value)
    except ValueError as e:
        raise BundleError(f"bundle file '{name}' is refused: {e}") from e
    return value


def check_relative_name(name: str) -> None:
    """Refuse a listed file name that is not a plain relative POSIX path inside the bundle."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise BundleError(f"bundle file '{name}' is not a relative path inside the bundle folder: refused")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BundleError(f"bundle file '{name}' points outside the bundle folder or is malformed: refused")
    if name in (MANIFEST_NAME, SIGNATURE_NAME):
        raise BundleError(f"bundle file list must not include '{name}' itself")


def one_line(e: object) -> str:
    """An error's text on one line, at most 240 characters (for messages)."""
    text = " ".join(str(e).split())
    return text if len(text) <= 240 else text[:237] + "..."
