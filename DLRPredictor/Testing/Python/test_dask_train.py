"""Training with its radiomics, crops and folds on a real two-process ``distributed.LocalCluster``.

The reference is the tiny bundle fixture (``conftest.tiny_bundle``, built once per test run: the
same manifest, config and radiomics parameters, trained in this process). The cluster run must give:

- the same radiomics of every (case, variant), exactly: the same pyradiomics code on the same
  arrays, in another process (the local run extracts in worker processes too);
- the same selected features, classifier choices and every other non-float value of the fitted
  pipeline, and the same numbers within a relative 1e-6 (``FLOAT_RTOL``): the folds' models
  are fitted in the cluster's worker processes, which start with one BLAS thread (the nanny
  sets OMP_NUM_THREADS=1) where this process may run several, and a multi-threaded BLAS may sum
  in another order (last-bit differences that the solvers carry on; measured far below 1e-6).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import TINY_CONFIG, original_only_parameters

distributed = pytest.importorskip("distributed")

#: Relative tolerance of the fitted numbers (see the module docstring).
FLOAT_RTOL = 1e-6


def _radiomics_cache(work: Path) -> dict[str, dict[str, float]]:
    (cache,) = sorted((work / "cache").glob("radiomics_*.jsonl"))
    rows = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
    return {r["key"]: r["features"] for r in rows}


def _differences(a, b, path: str = "") -> list[str]:
    """Where two JSON values differ: structure and non-floats exactly, floats within FLOAT_RTOL."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if math.isclose(a, b, rel_tol=FLOAT_RTOL, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b)):
                return []
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_training_on_a_cluster_gives_the_local_training(tmp_path, synthetic_cohort, tiny_bundle):
    from DLRPredictorLib.base.executor import mapping
    from DLRPredictorLib.cohort import dask_runner
    from DLRPredictorLib.training import trainer

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG + "radiomics_parameters: original_only.yaml\n")
    (tmp_path / "original_only.yaml").write_text(original_only_parameters())
    calls: list[int] = []
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        cluster_map = dask_runner.cluster_map(client)

        def counting_map(fn, items):
            calls.append(len(items))
            return cluster_map(fn, items)

        with mapping(counting_map):  # as `dlrpredictor train --scheduler` runs it
            bundle = trainer.train_from_manifest(
                synthetic_cohort, tmp_path / "bundle", cfg, work_dir=tmp_path / "work", log=lambda line: None
            )
    # The cluster really ran the radiomics, the crops and the two folds.
    assert len(calls) >= 3 and 2 in calls

    local = _radiomics_cache(tiny_bundle.parent / "work")
    remote = _radiomics_cache(tmp_path / "work")
    assert local == remote  # exactly: same code, same arrays

    ours = json.loads((bundle / "pipeline.json").read_text(encoding="utf-8"))
    reference = json.loads((tiny_bundle / "pipeline.json").read_text(encoding="utf-8"))
    rad = ours["rad"]["signature"]["selector"]["selected_names"]
    assert rad == reference["rad"]["signature"]["selector"]["selected_names"] and rad
    diffs = _differences(ours, reference)
    assert not diffs, f"{len(diffs)} differences, first: {diffs[:5]}"
