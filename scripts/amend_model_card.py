"""Replace the model card of a bundle (e.g. with the rebuild command and measured figures added).

Usage: ``.venv/bin/python scripts/amend_model_card.py BUNDLE_DIR NEW_CARD.md``

Every other file is kept byte for byte; the manifest's checksums are recomputed and the bundle is
rewritten atomically and verified by ``write_bundle`` (a failure leaves it as it was).
Afterwards re-run ``scripts/pin_predictions.py``: the pins are keyed by the manifest's digest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from DLRPredictorLib.bundle.manifest import MODEL_CARD_NAME
from DLRPredictorLib.bundle.verify import load_bundle
from DLRPredictorLib.bundle.write import write_bundle


def main(argv: list[str] | None = None) -> int:
    """Rewrite BUNDLE_DIR with NEW_CARD.md as its model card."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("card", type=Path)
    args = p.parse_args(argv)
    load_bundle(args.bundle)  # verify before touching it
    manifest = json.loads((args.bundle / "manifest.json").read_text(encoding="utf-8"))
    card = MODEL_CARD_NAME
    files = {name: (args.bundle / name).read_bytes() for name in manifest["files"] if name != card}
    files[card] = args.card.read_bytes()
    write_bundle(args.bundle, manifest, files)
    print(f"{args.bundle}: model card replaced; checksums updated and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
