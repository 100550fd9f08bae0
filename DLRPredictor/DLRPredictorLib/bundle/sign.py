"""Sign a written bundle: verify it, sign its content digest, write signature.json, verify again."""

from __future__ import annotations

from pathlib import Path

from ..base.errors import ConfigError
from .manifest import VerifiedBundle
from .signature import signature_document, write_signature
from .verify import load_bundle, verify_folder


def check_signing_key(key_path: Path | str) -> None:
    """Refuse an unreadable or non-Ed25519 signing key before any work is done (e.g. training).

    Raises:
        ConfigError: the key cannot be read or is not an Ed25519 private key.
    """
    signature_document("0" * 64, _read_key(key_path))


def sign_bundle(folder: Path | str, key_path: Path | str) -> VerifiedBundle:
    """Sign a bundle folder with an Ed25519 private key (writes or replaces its signature.json).

    The bundle is verified completely first (a damaged bundle is never signed), and again after
    the signature is written.

    Args:
        folder: the bundle folder.
        key_path: the private key, PEM (``openssl genpkey -algorithm ed25519 -out key.pem``).

    Returns:
        The bundle verified with its new signature (``trust`` names the key's fingerprint).

    Raises:
        BundleError: the bundle does not verify; ConfigError: the key cannot be read or is not Ed25519.
    """
    folder = Path(folder)
    if folder.name == "manifest.json":
        folder = folder.parent
    pem = _read_key(key_path)
    # Versions are not compared: signing vouches for the content, wherever it was built.
    verified = verify_folder(folder, None, check_versions=False)
    write_signature(folder, signature_document(verified.digest, pem))
    return load_bundle(folder)


def _read_key(key_path: Path | str) -> bytes:
    try:
        return Path(key_path).read_bytes()
    except OSError as e:
        raise ConfigError(f"the signing key '{key_path}' cannot be read ({e.strerror})") from e
