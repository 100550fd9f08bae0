"""What a verified bundle can be trusted for: its content digest, the shipped pins, its signature.

Three levels, each checked by :func:`..verify.load_bundle` (docs/TRUST.md says what each one
protects against, and what none does):

1. The **content digest** (:func:`content_digest`): sha256 over the canonical manifest.json and
   the sorted (name, sha256) list of every file. One changed byte anywhere (a cutoff, a weight)
   gives another digest. It is shown wherever the bundle id is (results CSV ``bundle_digest``,
   the prediction table, the module's status line) so users can compare it with the publisher's.
2. The **pinned digest** of each bundle shipped with DLRPredictor (:data:`SHIPPED_BUNDLE_DIGESTS`):
   the bundle in ``Resources/Models/<id>`` must have exactly this digest, or it is refused.
3. The **signature** (``signature.json``, :mod:`.signature`): Ed25519 over the digest. A valid
   signature by a key in the user's trusted keys folder (``DLR_TRUSTED_KEYS``) is trusted; a
   valid one by another key loads with the warning "signed by an unknown key"; an invalid one
   (the content changed after signing, or a forged signature) is refused. An unsigned bundle that
   is not a pinned shipped one loads with the warning "unsigned bundle".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The bundles shipped in Resources/Models: folder name -> content digest. Any change to a shipped
#: bundle (one byte of its manifest.json or of any file, even with every sha256 recomputed) makes
#: it refused. Rebuilding the shipped bundle on purpose: update this pin and
#: Testing/Python/data/pinned_predictions.json (scripts/pin_predictions.py) in the same commit.
SHIPPED_BUNDLE_DIGESTS: dict[str, str] = {
    "BreastUS-Malignancy": "503a72585a5d4cbe3ac7480cd7dc85b62fc85b12b293e4af267dd78231b19d99",
}
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"

#: The folder of public keys (PEM, ``*.pem``) whose signatures the user trusts.
TRUSTED_KEYS_ENV = "DLR_TRUSTED_KEYS"

#: Bound into every digest, so that it cannot be confused with a hash of anything else.
_DIGEST_DOMAIN = b"DLRPredictor bundle content digest v1\n"

UNSIGNED_WARNING = (
    "unsigned bundle: nothing shows who made it; compare its bundle_digest with the one its "
    "publisher gives, or ask for a signed bundle"
)

#: VerifiedBundle.trust values.
PINNED = "shipped with DLRPredictor (pinned digest)"
UNSIGNED = "unsigned"


def content_digest(manifest: Mapping[str, Any], file_sha256: Mapping[str, str]) -> str:
    """The bundle's content digest.

    Args:
        manifest: the parsed manifest.json (its canonical JSON is hashed: key order and
            whitespace do not count, every value does).
        file_sha256: sha256 of every listed file, by name.

    Returns:
        The lowercase hex sha256.
    """
    canonical = json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    h = hashlib.sha256(_DIGEST_DOMAIN)
    h.update(len(canonical).to_bytes(8, "big"))
    h.update(canonical)
    for name in sorted(file_sha256):
        h.update(f"{name}\0{file_sha256[name]}\n".encode())
    return h.hexdigest()


def short_digest(digest: str) -> str:
    """The first 16 hex digits of a digest, for a status line (the full one is in the results)."""
    return digest[:16]


def shipped_pin(root: Path) -> str | None:
    """The pinned digest when ``root`` is a bundle folder shipped with DLRPredictor, else None."""
    try:
        resolved = root.resolve()
        shipped = SHIPPED_MODELS_DIR.resolve()
    except OSError:
        return None
    if resolved.parent != shipped:
        return None
    return SHIPPED_BUNDLE_DIGESTS.get(resolved.name)


def trusted_keys_dir(folder: Path | str | None = None) -> Path | None:
    """The trusted keys folder: ``folder`` when given, else ``$DLR_TRUSTED_KEYS``, else None."""
    if folder:
        return Path(folder)
    value = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
    return Path(value) if value else None
