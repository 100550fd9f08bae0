#!/usr/bin/env bash
# Rebuild the bundled model from ../shared/data (resumable: caches and CNN checkpoints in out/bundle.work).
# Usage: scripts/build_default_bundle.sh [OUT_DIR]   (default: DLRPredictor/Resources/Models/BreastUS-Malignancy)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
out="${1:-DLRPredictor/Resources/Models/BreastUS-Malignancy}"
.venv/bin/python scripts/make_manifests.py --out out/manifests
.venv/bin/dlrpredictor train out/manifests/combined_train.csv --config configs/breastus_malignancy.yaml \
  --out "$out" --work out/bundle.work
