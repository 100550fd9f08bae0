#!/usr/bin/env bash
# Rebuild the bundled model from ../shared/data (resumable: caches and CNN checkpoints in out/bundle.work).
# Usage: scripts/build_default_bundle.sh [OUT_DIR]   (default: DLRPredictor/Resources/Models/BreastUS-Malignancy)
# Trains on BUS-BRA official folds 1-4; scores BUS-BRA fold 5 and every BrEaST case (external) once,
# appending to the held-out ledger out/heldout_ledger_breast.jsonl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
out="${1:-DLRPredictor/Resources/Models/BreastUS-Malignancy}"
.venv/bin/python scripts/make_manifests.py --out out/manifests
.venv/bin/dlrpredictor train out/manifests/busbra_train_breast_all.csv --config configs/breastus_malignancy.yaml \
  --out "$out" --work out/bundle.work --ledger out/heldout_ledger_breast.jsonl
