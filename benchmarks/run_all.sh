#!/usr/bin/env bash
# Run the four prediction benchmarks (end-to-end latency, ratio to pyradiomics, batch, whole command), one after the other.
# Usage: benchmarks/run_all.sh [--bundle DIR] [--cases N] [--strict]
# Every argument is passed to each script (all four accept --bundle, --cases and --strict).
# Exit status: 0 when every script exited 0, else the last non-zero status (2: no bundle).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=".venv/bin/python"
[[ -x "$python" ]] || python="python3"
status=0
for script in bench_predict bench_ratio bench_batch bench_command; do
  echo "=================== benchmarks/${script}.py $*"
  "$python" "benchmarks/${script}.py" "$@"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "benchmarks/${script}.py exited with status $rc" >&2
    status=$rc
  fi
done
exit "$status"
