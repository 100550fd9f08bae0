"""signature.json: an Ed25519 signature over a bundle's content digest, made and checked.

``cryptography`` is imported only here, and only when a signature is made or checked: loading an
unsigned bundle never imports it.

signature.json (beside manifest.json, not listed in it: it signs the digest, which covers the
manifest and every file)::

    {"format": 1, "algorithm": "Ed25519", "bundle_digest": "<hex>",
     "public_key": "<base64 of the 32 raw bytes>", "key_fingerprint": "<sha256 hex of them>",
     "signature": "<base64 of 64 bytes>"}

Keys are PEM files, as ``openssl genpkey -algorithm ed25519 -out key.pem`` writes them (the
public one: ``openssl pkey -in key.pem -pubout -out key.pub.pem``). A passphrase-protected
private key is read with the passphrase in ``$DLR_SIGN_KEY_PASSPHRASE``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..base.errors import BundleError, ConfigError
from .manifest import SIGNATURE_NAME, one_line

PASSPHRASE_ENV = "DLR_SIGN_KEY_PASSPHRASE"
#: A signature.json is a few hundred bytes; anything larger is not one.
MAX_SIGNATURE_BYTES = 64 << 10
_MESSAGE_DOMAIN = b"DLRPredictor bundle signature v1\n"
_FIELDS = ("format", "algorithm", "bundle_digest", "public_key", "key_fingerprint", "signature")


def fingerprint(raw_public_key: bytes) -> str:
    """The sha256 hex of a raw 32-byte Ed25519 public key (what users compare and trust)."""
    return hashlib.sha256(raw_public_key).hexdigest()


def signature_document(digest: str, private_key_pem: bytes) -> dict[str, Any]:
    """Sign a content digest.

    Args:
        digest: the bundle's content digest (hex).
        private_key_pem: an Ed25519 private key in PEM.

    Returns:
        The content of signature.json.

    Raises:
        ConfigError: the key is not an Ed25519 private key, or its passphrase is missing/wrong.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(
            private_key_pem, password=passphrase.encode() if passphrase else None
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"the signing key cannot be read ({one_line(e)}); give an Ed25519 private key in PEM "
            f"(openssl genpkey -algorithm ed25519), its passphrase in ${PASSPHRASE_ENV} if it has one"
        ) from e
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError("the signing key is not Ed25519; create one: openssl genpkey -algorithm ed25519")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "format": 1,
        "algorithm": "Ed25519",
        "bundle_digest": digest,
        "public_key": base64.b64encode(raw).decode("ascii"),
        "key_fingerprint": fingerprint(raw),
        "signature": base64.b64encode(key.sign(_MESSAGE_DOMAIN + digest.encode("ascii"))).decode("ascii"),
    }


def write_signature(folder: Path, document: Mapping[str, Any]) -> Path:
    """Write signature.json into a bundle folder atomically (a reader never sees half of it)."""
    target = folder / SIGNATURE_NAME
    tmp = folder.parent / f".{folder.name}.{SIGNATURE_NAME}.{uuid.uuid4().hex[:12]}"
    try:
        tmp.write_text(json.dumps(dict(document), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"cannot write '{target}': {e.strerror or e}") from e
    return target


def check_signature(content: bytes, digest: str, trusted: Path | None) -> tuple[str, str | None]:
    """Check signature.json against the bundle's digest and the trusted keys.

    Args:
        content: the bytes of signature.json.
        digest: the content digest computed at verification.
        trusted: the trusted keys folder (PEM public keys), or None for none.

    Returns:
        (trust, warning): trust says who signed ("signed by trusted key <fingerprint>"), the
        warning is None for a trusted key, else says the key is unknown.

    Raises:
        BundleError: signature.json is malformed, signs another digest, or the signature is
            invalid (the bundle changed after signing, or the signature is forged).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    doc = _parse(content)
    if doc["bundle_digest"] != digest:
        raise BundleError(
            f"bundle {SIGNATURE_NAME} signs another content than this bundle's (the bundle was "
            f"changed after it was signed): refused; reinstall the bundle from its publisher"
        )
    try:
        raw = base64.b64decode(doc["public_key"], validate=True)
        signature = base64.b64decode(doc["signature"], validate=True)
        key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as e:
        raise BundleError(f"bundle {SIGNATURE_NAME} is malformed ({one_line(e)}): refused") from e
    if fingerprint(raw) != doc["key_fingerprint"]:
        raise BundleError(f"bundle {SIGNATURE_NAME} names a key fingerprint that is not its key's: refused")
    try:
        key.verify(signature, _MESSAGE_DOMAIN + digest.encode("ascii"))
    except InvalidSignature:
        raise BundleError(
            f"bundle {SIGNATURE_NAME} holds an invalid signature (the bundle was changed after it "
            f"was signed, or the signature is forged): refused; reinstall the bundle from its publisher"
        ) from None
    short = doc["key_fingerprint"][:16]
    if doc["key_fingerprint"] in trusted_fingerprints(trusted):
        return f"signed by trusted key {short}", None
    where = f"the keys in '{trusted}'" if trusted is not None else "no trusted keys folder is set"
    return (
        f"signed by unknown key {short}",
        f"signed by an unknown key (fingerprint {short}; {where}): the signature proves only that "
        f"the bundle is unchanged since that key signed it, not who holds the key",
    )


def trusted_fingerprints(folder: Path | None) -> set[str]:
    """Fingerprints of the Ed25519 public keys (``*.pem``) in the trusted keys folder.

    Raises:
        BundleError: the folder is missing, or one of its .pem files is not an Ed25519 public key.
    """
    if folder is None:
        return set()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not folder.is_dir():
        raise BundleError(f"the trusted keys folder '{folder}' does not exist; check $DLR_TRUSTED_KEYS")
    found: set[str] = set()
    for path in sorted(folder.glob("*.pem")):
        try:
            key = serialization.load_pem_public_key(path.read_bytes()[:MAX_SIGNATURE_BYTES])
        except (OSError, ValueError) as e:
            raise BundleError(f"trusted key '{path}' is not a public key in PEM ({one_line(e)})") from e
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise BundleError(f"trusted key '{path}' is not an Ed25519 public key")
        found.add(fingerprint(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)))
    return found


def _parse(content: bytes) -> dict[str, Any]:
    from .manifest import parse_json

    try:
        doc = parse_json(content.decode("utf-8"), SIGNATURE_NAME)
    except UnicodeDecodeError as e:
        raise BundleError(f"bundle {SIGNATURE_NAME} is not UTF-8 text: refused") from e
    if (
        not isinstance(doc, dict)
        or set(doc) != set(_FIELDS)
        or doc["format"] != 1
        or doc["algorithm"] != "Ed25519"
        or not all(isinstance(doc[k], str) for k in _FIELDS[2:])
    ):
        raise BundleError(
            f"bundle {SIGNATURE_NAME} is malformed (it needs exactly {', '.join(_FIELDS)}; format 1, "
            f"Ed25519): refused"
        )
    return doc
