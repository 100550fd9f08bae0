"""Multi-input bundles: several named inputs per case (views, modalities), one answer.

Layout of the folder::

    multi_input.json        what the bundle is: its inputs, its models, the pinned digests
    model_card.md           listed in multi_input.json with its sha256 and size
    inputs/<NAME>/          one complete one-input bundle per declared input (manifest.json, ...)

``multi_input.json`` declares every input (name, modality tag, whether it is required, its
bundle folder and that bundle's content digest, its pyradiomics parameter file, deep backbone
and crop) and one model per combination of inputs a case may have: ``kind: "input"`` (a single
input, answered by that input's own image-only model) or ``kind: "fusion"`` (the inputs'
signature probabilities fused by a stacking or ensemble combiner learnt on out-of-fold scores,
with its frozen cutoff). Loading (:func:`load_multi_input_bundle`) checks the JSON (size,
nesting, duplicate keys, every field), refuses any file the layout does not name, verifies every
input bundle with ``verify.load_bundle`` (checksums of every file, no code-bearing type) and
refuses one whose content digest differs from the pinned one. So every byte that is used is
covered by a checksum reachable from ``multi_input.json``; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import BundleError
from ..base.json_values import to_json_value
from ..inputs.multi_input import INPUT_NAME
from . import trust
from .manifest import (
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    REINSTALL,
    SIGNATURE_NAME,
    VerifiedBundle,
    parse_json,
)
from .verify import _read_regular, _scan_folder, check_content, load_bundle, sha256_bytes
from .write import write_folder_atomically

MULTI_INPUT_NAME = "multi_input.json"
MULTI_INPUT_FORMAT = "DLRPredictor multi-input bundle"
MULTI_INPUT_VERSION = 1
INPUTS_DIR = "inputs"
MAX_INPUTS = 6
FUSION_KINDS = ("StackingFusion", "EnsembleFusion")
#: The arrays of early-fusion signatures (numeric .npz, read with allow_pickle=False).
ARRAYS_NAME = "multi_input.npz"


@dataclass(frozen=True)
class InputDeclaration:
    """One declared input of a multi-input bundle."""

    name: str
    modality: str
    required: bool
    bundle: str  # folder of its one-input bundle, relative to the multi-input bundle
    bundle_digest: str
    radiomics_parameters: str
    backbone: str | None
    crop: dict[str, Any] | None


@dataclass(frozen=True)
class InputModel:
    """The model for one combination of inputs."""

    inputs: tuple[str, ...]
    kind: str  # "input", "fusion" (stacking / ensemble of probabilities) or "early"
    members: tuple[str, ...] = ()  # "NAME:signature" of every fused probability
    fusion: dict[str, Any] | None = None  # StackingFusion / EnsembleFusion spec, or the early
    # signature's {"signature": spec, "estimator": {"spec": ..., "arrays": [names in ARRAYS_NAME]}}
    cutoff: float | None = None  # the fusion's frozen cutoff (an input model uses its bundle's)


class VerifiedMultiInputBundle:
    """A multi-input bundle whose declaration and every input bundle were verified."""

    def __init__(
        self,
        path: Path,
        *,
        document: dict[str, Any],
        inputs: list[InputDeclaration],
        models: list[InputModel],
        bundles: dict[str, VerifiedBundle],
        digest: str,
        data: dict[str, bytes] | None = None,
        trust: str = "unsigned",
        trust_warnings: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        #: Why it is trusted: signed by a trusted or unknown key (signature.json), or unsigned.
        self.trust = trust
        self._trust_warnings = tuple(trust_warnings)
        self.document = document
        self.inputs = inputs
        self.models = models
        self.bundles = bundles
        self.digest = digest
        self._data = dict(data or {})

    def read_arrays(self) -> dict[str, Any]:
        """The verified arrays of the early-fusion signatures (empty without any)."""
        import io

        import numpy as np

        if ARRAYS_NAME not in self._data:
            return {}
        with np.load(io.BytesIO(self._data[ARRAYS_NAME]), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    @property
    def id(self) -> str:
        return f"{self.document['id']}@{self.document['version']}"

    @property
    def title(self) -> str:
        return str(self.document["title"])

    @property
    def task(self) -> dict[str, Any]:
        return dict(self.document["task"])

    @property
    def trust_warnings(self) -> tuple[str, ...]:
        """Every prediction carries these: unsigned, or signed by a key that is not trusted (the
        input bundles' digests are pinned in multi_input.json, which the signature covers)."""
        return self._trust_warnings

    @property
    def input_names(self) -> list[str]:
        return [d.name for d in self.inputs]

    @property
    def required_inputs(self) -> list[str]:
        return [d.name for d in self.inputs if d.required]

    def model_for(self, available: list[str]) -> InputModel:
        """The model trained for exactly these inputs (order as declared); when training had too
        few cases with all of them, the model of the largest combination of them that has one.

        Raises:
            BundleError: a required input is missing, or no model uses only these inputs.
        """
        key = tuple(n for n in self.input_names if n in available)
        missing = [n for n in self.required_inputs if n not in available]
        if missing:
            raise BundleError(
                f"the bundle has no model for the inputs {', '.join(key) or '(none)'}: the required "
                f"input(s) {', '.join(missing)} are missing"
            )
        usable = [m for m in self.models if set(m.inputs) <= set(key)]
        if not usable:
            raise BundleError(f"the bundle has no model for the inputs {', '.join(key) or '(none)'}")
        exact = [m for m in usable if m.inputs == key]
        # the most inputs; among equals, the first declared (models are listed in that order)
        return exact[0] if exact else max(usable, key=lambda m: len(m.inputs))


def is_multi_input_bundle(path: Path | str | None) -> bool:
    """Whether ``path`` is a folder holding ``multi_input.json`` (and no manifest.json)."""
    if path is None:
        return False
    p = Path(path)
    return (p / MULTI_INPUT_NAME).is_file() and not (p / MANIFEST_NAME).exists()


def content_digest(document: Mapping[str, Any], file_sha256: Mapping[str, str]) -> str:
    """The multi-input bundle's digest: over ``multi_input.json`` (which pins every input bundle's
    digest) and its listed files, as ``trust.content_digest``."""
    return trust.content_digest(document, file_sha256)


def load_multi_input_bundle(
    path: Path | str, *, trusted_keys: Path | str | None = None
) -> VerifiedMultiInputBundle:
    """Verify a multi-input bundle folder completely (see the module notes).

    Raises:
        BundleError: naming the file or field at fault.
    """
    root = Path(path)
    if root.name == MULTI_INPUT_NAME:
        root = root.parent
    if not (root / MULTI_INPUT_NAME).is_file():
        raise BundleError(f"'{root}' is not a multi-input bundle: it has no {MULTI_INPUT_NAME}")
    raw = _read_regular(root, MULTI_INPUT_NAME, limit=4 << 20)
    if len(raw) > 4 << 20:
        raise BundleError(f"bundle file '{MULTI_INPUT_NAME}' is larger than 4 MB: refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"bundle file '{MULTI_INPUT_NAME}' is not UTF-8 text: {REINSTALL}") from e
    doc = parse_json(text, MULTI_INPUT_NAME)
    inputs, models, files = _check_document(doc)
    found = _scan_folder(root)
    allowed_top = {MULTI_INPUT_NAME, SIGNATURE_NAME, *files}
    prefixes = tuple(f"{d.bundle}/" for d in inputs)
    for name in sorted(found):
        if name not in allowed_top and not name.startswith(prefixes):
            raise BundleError(
                f"multi-input bundle '{root}' holds the file '{name}' that {MULTI_INPUT_NAME} does not "
                f"name: refused; remove it or reinstall the bundle"
            )
    sha: dict[str, str] = {}
    data: dict[str, bytes] = {}
    for name, entry in files.items():
        content = _read_regular(root, name, limit=int(entry["bytes"]))
        if len(content) != int(entry["bytes"]) or sha256_bytes(content) != entry["sha256"]:
            raise BundleError(f"bundle file '{name}' does not match its checksum: {REINSTALL}")
        check_content(name, content)  # an array file: numeric, bounded, no pickle
        sha[name] = entry["sha256"]
        data[name] = content
    if any(m.kind == "early" for m in models) and ARRAYS_NAME not in data:
        raise _fail(f"an early-fusion model needs '{ARRAYS_NAME}' in 'files'")
    bundles: dict[str, VerifiedBundle] = {}
    for d in inputs:
        # every file of the input's bundle is checked against its manifest, and that manifest
        # (with every file's sha256) against the digest pinned here
        bundles[d.name] = load_bundle(
            root / d.bundle, expected_digest=d.bundle_digest, trusted_keys=trusted_keys
        )
        _check_declared(d, bundles[d.name])
    digest = content_digest(doc, sha)
    level, warnings = trust.UNSIGNED, [trust.UNSIGNED_WARNING]
    if SIGNATURE_NAME in found:  # Ed25519 over the digest, as a one-input bundle's
        from .signature import MAX_SIGNATURE_BYTES, check_signature

        signed = _read_regular(root, SIGNATURE_NAME, limit=MAX_SIGNATURE_BYTES)
        if len(signed) > MAX_SIGNATURE_BYTES:
            raise BundleError(f"bundle file '{SIGNATURE_NAME}' is larger than a signature: refused")
        level, warning = check_signature(signed, digest, trust.trusted_keys_dir(trusted_keys))
        warnings = [] if warning is None else [warning]
    return VerifiedMultiInputBundle(
        root.resolve(),
        document=doc,
        inputs=inputs,
        models=models,
        bundles=bundles,
        digest=digest,
        data=data,
        trust=level,
        trust_warnings=tuple(warnings),
    )


def sign_multi_input_bundle(folder: Path | str, key_path: Path | str) -> VerifiedMultiInputBundle:
    """Sign a multi-input bundle with an Ed25519 private key (writes or replaces its signature.json).

    The bundle is verified completely first (a damaged bundle is never signed), and again after.

    Raises:
        BundleError: the bundle does not verify; ConfigError: the key cannot be read or is not Ed25519.
    """
    from .sign import _read_key
    from .signature import signature_document, write_signature

    folder = Path(folder)
    pem = _read_key(key_path)
    verified = load_multi_input_bundle(folder)
    write_signature(folder, signature_document(verified.digest, pem))
    return load_multi_input_bundle(folder)


def _fail(what: str) -> BundleError:
    return BundleError(f"bundle file '{MULTI_INPUT_NAME}': {what}: {REINSTALL}")


def _check_document(doc: Any) -> tuple[list[InputDeclaration], list[InputModel], dict[str, dict[str, Any]]]:
    """Every field of multi_input.json, typed."""
    if not isinstance(doc, dict):
        raise _fail("not a JSON object")
    if doc.get("format") != MULTI_INPUT_FORMAT:
        raise _fail(f"'format' is not '{MULTI_INPUT_FORMAT}'")
    if doc.get("format_version") != MULTI_INPUT_VERSION:
        raise BundleError(
            f"multi-input bundle format version {doc.get('format_version')!r} is not supported (this "
            f"DLRPredictor reads version {MULTI_INPUT_VERSION}); update DLRPredictor or use another bundle"
        )
    for key in ("id", "version", "title"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise _fail(f"'{key}' must be non-empty text")
    task = doc.get("task")
    if not isinstance(task, dict) or not all(
        isinstance(task.get(k), str) for k in ("positive_class", "negative_class")
    ):
        raise _fail("'task' must name positive_class and negative_class")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not 1 <= len(raw_inputs) <= MAX_INPUTS:
        raise _fail(f"'inputs' must list 1 to {MAX_INPUTS} inputs")
    inputs = [_declaration(i, d) for i, d in enumerate(raw_inputs)]
    names = [d.name for d in inputs]
    if len(set(names)) != len(names):
        raise _fail("an input name appears twice")
    raw_models = doc.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise _fail("'models' must list the model of every combination of inputs")
    models = [_model(i, m, names) for i, m in enumerate(raw_models)]
    keys = [m.inputs for m in models]
    if len(set(keys)) != len(keys):
        raise _fail("two models are declared for the same inputs")
    files = doc.get("files")
    if not isinstance(files, dict) or MODEL_CARD_NAME not in files:
        raise _fail(f"'files' must list {MODEL_CARD_NAME}")
    for name, entry in files.items():
        if (
            "/" in name
            or name in (MULTI_INPUT_NAME, SIGNATURE_NAME, MANIFEST_NAME)
            or not (name.endswith((".md", ".json", ".csv", ".txt")) or name == ARRAYS_NAME)
        ):
            raise _fail(f"the listed file '{name}' is not allowed")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and isinstance(entry.get("bytes"), int)
            and 0 <= entry["bytes"] <= 256 << 20
        ):
            raise _fail(f"the entry of '{name}' needs sha256 and bytes")
    return inputs, models, files


def _declaration(i: int, d: Any) -> InputDeclaration:
    where = f"inputs[{i}]"
    if not isinstance(d, dict):
        raise _fail(f"{where} is not an object")
    name = d.get("name")
    if not isinstance(name, str) or not INPUT_NAME.match(name):
        raise _fail(f"{where}.name must be 1-32 letters, digits or '_'")
    if d.get("bundle") != f"{INPUTS_DIR}/{name}":
        raise _fail(f"{where}.bundle must be '{INPUTS_DIR}/{name}'")
    digest = d.get("bundle_digest")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise _fail(f"{where}.bundle_digest must be 64 lower-case hex digits")
    if not isinstance(d.get("modality"), str) or not d["modality"] or not isinstance(d.get("required"), bool):
        raise _fail(f"{where} needs a modality (text) and required (true/false)")
    if not isinstance(d.get("radiomics_parameters"), str):
        raise _fail(f"{where}.radiomics_parameters must name the input bundle's parameter file")
    backbone, crop = d.get("backbone"), d.get("crop")
    if backbone is not None and not isinstance(backbone, str):
        raise _fail(f"{where}.backbone must be text or null")
    if crop is not None and not isinstance(crop, dict):
        raise _fail(f"{where}.crop must be an object or null")
    return InputDeclaration(
        name, d["modality"], d["required"], d["bundle"], digest, d["radiomics_parameters"], backbone, crop
    )


def _model(i: int, m: Any, names: list[str]) -> InputModel:
    where = f"models[{i}]"
    if not isinstance(m, dict) or not isinstance(m.get("inputs"), list) or not m["inputs"]:
        raise _fail(f"{where} must be an object with its inputs")
    used = m["inputs"]
    if any(n not in names for n in used) or used != [n for n in names if n in used]:
        raise _fail(f"{where}.inputs must be declared inputs, in declaration order")
    kind = m.get("kind")
    if kind == "input":
        if len(used) != 1:
            raise _fail(f"{where}: an input model has one input")
        return InputModel(tuple(used), "input")
    if kind not in ("fusion", "early") or len(used) < 2:
        raise _fail(f"{where}.kind must be 'input' (one input), 'fusion' or 'early' (two or more)")
    cutoff = m.get("cutoff")
    if (
        isinstance(cutoff, bool)
        or not isinstance(cutoff, (int, float))
        or not math.isfinite(cutoff)
        or not 0 <= cutoff <= 1
    ):
        raise _fail(f"{where}.cutoff must be a probability")
    if kind == "early":
        signature = m.get("signature")
        if (
            not isinstance(signature, dict)
            or not isinstance(signature.get("signature"), dict)
            or not isinstance(signature.get("estimator"), dict)
            or not isinstance(signature["estimator"].get("arrays"), list)
        ):
            raise _fail(f"{where}.signature must hold the early-fusion signature and its estimator")
        return InputModel(
            tuple(used), "early", tuple(f"{n}:radiomics" for n in used), signature, float(cutoff)
        )
    members, spec = m.get("members"), m.get("fusion")
    if (
        not isinstance(members, list)
        or not members
        or any(
            not isinstance(x, str)
            or x.partition(":")[0] not in used
            or x.partition(":")[2] not in ("rad", "dl")
            for x in members
        )
    ):
        raise _fail(f"{where}.members must be 'INPUT:rad' or 'INPUT:dl' of its inputs")
    if not isinstance(spec, dict) or spec.get("kind") not in FUSION_KINDS:
        raise _fail(f"{where}.fusion must be a {' or '.join(FUSION_KINDS)} spec")
    if not isinstance(spec.get("members"), list) or len(spec["members"]) != len(members):
        raise _fail(f"{where}.fusion must have one member per entry of members")
    return InputModel(tuple(used), "fusion", tuple(members), spec, float(cutoff))


def _check_declared(d: InputDeclaration, bundle: VerifiedBundle) -> None:
    """The declaration repeats what the input bundle holds; a mismatch means a mixed-up folder."""
    radiomics = bundle.manifest.get("extra", {}).get("radiomics_parameters", "radiomics.yaml")
    if d.radiomics_parameters != f"{d.bundle}/{radiomics}" or radiomics not in bundle.files:
        raise BundleError(
            f"input '{d.name}': the declared radiomics parameters '{d.radiomics_parameters}' are not "
            f"its bundle's: {REINSTALL}"
        )


def write_multi_input_bundle(
    out_dir: Path | str,
    document: Mapping[str, Any],
    input_bundles: Mapping[str, Path],
    model_card: str,
    *,
    arrays: Mapping[str, Any] | None = None,
) -> Path:
    """Write a multi-input bundle atomically (a hidden sibling folder, verified, then renamed).

    Args:
        out_dir: the folder to create or replace (only an empty folder or a multi-input bundle is
            replaced).
        document: multi_input.json without ``files`` (filled here).
        input_bundles: input name -> its written one-input bundle folder (copied in).
        model_card: the card's Markdown text.
        arrays: numeric arrays of early-fusion signatures (written as ``multi_input.npz``).

    Returns:
        ``out_dir``.

    Raises:
        BundleError: invalid document, an input bundle that does not verify, an unwritable folder.
    """
    out_dir = Path(out_dir)
    card = model_card.encode("utf-8")
    doc = json.loads(json.dumps(to_json_value(dict(document), non_finite="error"), allow_nan=False))
    contents = {MODEL_CARD_NAME: card}
    if arrays:
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]  # stubs: a key could be allow_pickle
        contents[ARRAYS_NAME] = buffer.getvalue()
    doc["files"] = {
        name: {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
        for name, content in contents.items()
    }

    def fill(tmp: Path) -> None:
        for name, folder in input_bundles.items():
            shutil.copytree(folder, tmp / INPUTS_DIR / name, symlinks=True)
        for name, content in contents.items():
            (tmp / name).write_bytes(content)
        with open(tmp / MULTI_INPUT_NAME, "x", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        load_multi_input_bundle(tmp)  # the writer never produces what the reader would refuse

    return write_folder_atomically(out_dir, MULTI_INPUT_NAME, "a multi-input bundle", fill)


def input_bundle_digest(folder: Path | str) -> str:
    """The content digest of a written one-input bundle (to pin it in multi_input.json)."""
    return load_bundle(folder).digest


__all__ = [
    "MULTI_INPUT_NAME",
    "InputDeclaration",
    "InputModel",
    "VerifiedMultiInputBundle",
    "input_bundle_digest",
    "is_multi_input_bundle",
    "load_multi_input_bundle",
    "sign_multi_input_bundle",
    "write_multi_input_bundle",
]
