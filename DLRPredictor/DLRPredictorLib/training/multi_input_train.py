"""`dlrpredictor train` on a multi-input manifest: per-input signatures fused across inputs.

The order of work, and why it does not leak:
1. The cases (lesions) are split once into patient-level folds, stratified by label; every
   input's run uses these folds (``multi_input_config.FOLD_COLUMN``), so a case's out-of-fold
   scores come, for every input, from models that never saw its patient.
2. Each input is trained as a one-input bundle on the cases that have it (``trainer``: its
   radiomics with its own parameter file, its network with its own backbone and crop, Rad / DL /
   DLR signatures cross-fitted, final models refitted on all of its cases).
3. For each combination of inputs, the fusion across inputs is learnt on the out-of-fold scores
   of the cases that have them all (``multi_input_fusion``).
4. The input bundles and ``multi_input.json`` are written as one verified multi-input bundle
   (``bundle.multi_input``).

Every case of the manifest trains; a test set is kept in its own manifest and scored once with
``dlrpredictor predict``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import DLRError, InputError
from ..base.executor import MapFunction, active_map
from .multi_input_config import FOLD_COLUMN, MultiInputConfig, load_multi_input_config
from .multi_input_fusion import SubsetModel, fit_subset_models

Log = Callable[[str], None]


def shared_folds(rows: list[Any], folds: int, seed: int) -> dict[str, str]:
    """Case id -> fold ("1".."K"), patient-level and stratified by label, shared by every input."""
    from ..models.selection import stratified_folds

    labels = np.array([int(r.label) for r in rows])
    groups = np.array([r.patient_id or r.case_id for r in rows])
    out: dict[str, str] = {}
    for k, (_tr, va) in enumerate(stratified_folds(labels, groups, folds, seed + 1)):
        for i in va:
            out[rows[i].case_id] = str(k + 1)
    return out


def _train_input(
    mc: MultiInputConfig,
    spec: Any,
    rows: list[Any],
    *,
    fold_of: dict[str, str],
    work: Path,
    log: Log,
    map_fn: MapFunction | None,
    manifest_name: str = "",
) -> tuple[Any, Path]:
    """One input's run and its written one-input bundle."""
    from ..features import radiomics as rf
    from . import data as td
    from .bundle_export import write_trained_bundle
    from .ledger import LEDGER_NAME
    from .trainer import _cohort, _fit

    config = mc.input_config(spec)
    params_path = Path(config.radiomics_parameters) if config.radiomics_parameters else rf.DEFAULT_PARAMETERS
    params = rf.load_parameters(params_path)
    folder = work / "inputs" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    cases, excluded = [], []
    for r in rows:
        row = r.inputs.get(spec.name)
        if row is None:
            continue
        row = dataclasses.replace(row, extra={**row.extra, FOLD_COLUMN: fold_of[r.case_id]})
        try:
            cases.append(
                td.load_case(
                    row,
                    int(r.label),
                    [*config.contours.variants, "ellipse"],
                    config.image.pixel_units,
                    config.seed,
                )
            )
        except DLRError as exc:
            excluded.append((r.case_id, str(exc)))
    for cid, why in excluded:
        log(f"{spec.name}: excluded {cid}: {why}")
    if len(cases) < 10 or len({c.label for c in cases}) < 2:
        raise InputError(
            f"input '{spec.name}': only {len(cases)} usable labelled cases (need at least 10 with "
            "both classes)"
        )
    log(f"input {spec.name}: {len(cases)} cases")
    start = time.time()
    cohort = _cohort(
        config, cases, 0, params=params, work=folder, log=lambda s: log(f"{spec.name}: {s}"), map_fn=map_fn
    )
    record = {
        "radiomics_parameters": params,
        "radiomics_parameters_path": params_path,
        "excluded": excluded,
        "manifest_name": f"{manifest_name} (input {spec.name})",
        "command": "",
        "hardware": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "ledger": folder / LEDGER_NAME,
    }
    run = _fit(
        config,
        cohort,
        folder,
        lambda s: log(f"{spec.name}: {s}"),
        started=start,
        record=record,
        map_fn=map_fn,
    )
    return run, write_trained_bundle(folder / "bundle", run)


def _declaration(spec: Any, run: Any, folder: Path) -> dict[str, Any]:
    from ..bundle.multi_input import INPUTS_DIR, input_bundle_digest
    from .crossfit import crop_settings

    cnn = run.config.cnn
    return {
        "name": spec.name,
        "modality": spec.modality,
        "required": spec.required,
        "bundle": f"{INPUTS_DIR}/{spec.name}",
        "bundle_digest": input_bundle_digest(folder),
        "radiomics_parameters": f"{INPUTS_DIR}/{spec.name}/radiomics.yaml",
        "backbone": cnn.arch if cnn.enabled else None,
        "crop": crop_settings(run.config) if cnn.enabled else None,
    }


def model_card(doc: dict[str, Any], models: list[SubsetModel]) -> str:
    """The multi-input bundle's model_card.md."""
    lines = [
        f"# {doc['title']}",
        "",
        f"Multi-input bundle `{doc['id']}` version {doc['version']}: "
        f"{doc['task']['positive_class']} vs {doc['task']['negative_class']}.",
        "",
        "## Inputs",
        "",
        "| Input | Modality | Required | Backbone | Radiomics parameters |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in doc["inputs"]:
        lines.append(
            f"| {d['name']} | {d['modality']} | {'yes' if d['required'] else 'no'} | "
            f"{d['backbone'] or 'none'} | "
            f"`{d['radiomics_parameters']}` |"
        )
    lines += [
        "",
        "## Models (one per combination of inputs a case may have)",
        "",
        "| Inputs | Model | Training cases | Out-of-fold AUC | Cutoff |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in models:
        what = (
            f"{doc['training']['input_fusion']} of {', '.join(m.members)}"
            if m.kind in ("fusion", "early")
            else f"{m.members[0]} (the input's own bundle)"
        )
        auc = "n/a" if m.oof_auc is None else f"{m.oof_auc:.3f}"
        cut = "the input bundle's" if m.cutoff is None else f"{m.cutoff:.3f}"
        lines.append(f"| {' + '.join(m.inputs)} | {what} | {m.n_cases} | {auc} | {cut} |")
    lines += [
        "",
        "A stacking or ensemble fusion's out-of-fold AUC scores its combiner on the out-of-fold rows it "
        "was fitted on; an early fusion's, and each input's, is a cross-fitted out-of-fold estimate. "
        "No held-out test set was "
        "scored in training: score one with `dlrpredictor predict`.",
        "",
        "Research use only; not a diagnosis and not for use without a radiologist's reading.",
        "",
    ]
    return "\n".join(lines)


def train_multi_input(
    manifest_path: Path,
    out: Path,
    config_path: Path,
    *,
    work_dir: Path | None = None,
    log: Log | None = None,
    map_fn: MapFunction | None = None,
) -> Path:
    """Train a multi-input bundle from a labelled multi-input manifest (module notes).

    Args:
        manifest_path: CSV with case_id, label, optional patient_id and image:NAME / mask:NAME
            columns for every input of the config.
        out: the bundle folder to write (replaced only on success).
        config_path: the multi-input training YAML (``multi_input_config``).
        work_dir: caches, each input's run and bundle; default ``<out>.work``.
        log: one line per step.
        map_fn: where radiomics, crops and folds run (``base.executor``).

    Returns:
        The bundle folder.

    Raises:
        ConfigError, ManifestError, InputError: before any training where possible.
    """
    from ..base.outputs import refuse_overwriting_inputs, refuse_replacing_inputs
    from ..bundle.multi_input import MULTI_INPUT_FORMAT, MULTI_INPUT_VERSION, write_multi_input_bundle
    from ..bundle.software import software_versions
    from ..inputs.multi_input import read_multi_input_csv

    log = log or (lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True))
    map_fn = map_fn if map_fn is not None else active_map()
    start = time.time()
    mc = load_multi_input_config(config_path)
    shared = mc.shared()
    task = shared.task
    label_values = {s: 1 for s in task.positive_labels} | {s: 0 for s in task.negative_labels}
    names = [s.name for s in mc.inputs]
    rows = read_multi_input_csv(
        manifest_path,
        names,
        required_inputs=[s.name for s in mc.inputs if s.required],
        require_label=True,
        label_values=label_values,
        warn=log,
    )
    work = Path(work_dir) if work_dir else Path(str(out) + ".work")
    files = [p for r in rows for row in r.inputs.values() for p in (row.resolved_image, row.resolved_mask)]
    refuse_overwriting_inputs({"--out": out, "--work": work}, [manifest_path, config_path, *files], [])
    refuse_replacing_inputs({"--out": out}, [manifest_path, config_path, *files])
    fold_of = shared_folds(rows, shared.split.folds, shared.seed)
    runs, folders = {}, {}
    for spec in mc.inputs:
        runs[spec.name], folders[spec.name] = _train_input(
            mc,
            spec,
            rows,
            fold_of=fold_of,
            work=work,
            log=log,
            map_fn=map_fn,
            manifest_name=Path(manifest_path).name,
        )
    labels = {r.case_id: int(r.label) for r in rows if r.label is not None}
    models = fit_subset_models(
        runs,
        labels,
        [s.name for s in mc.inputs if s.required],
        fusion=mc.fusion,
        stacking_inputs=mc.stacking_inputs,
        folds=shared.split.folds,
        seed=shared.seed,
        fold_of=fold_of,
        groups={r.case_id: r.patient_id or r.case_id for r in rows},
        log=log,
    )
    for m in models:
        auc = "n/a" if m.oof_auc is None else f"{m.oof_auc:.3f}"
        log(f"model {' + '.join(m.inputs)}: {m.kind}, {m.n_cases} cases, out-of-fold AUC {auc}")
    arrays: dict[str, np.ndarray] = {}  # an early-fusion signature's classifier arrays
    doc: dict[str, Any] = {
        "format": MULTI_INPUT_FORMAT,
        "format_version": MULTI_INPUT_VERSION,
        "id": shared.bundle_id,
        "version": "1.0.0",
        "title": shared.title,
        "task": {
            "name": task.name,
            "description": task.description,
            "positive_class": task.positive_class,
            "negative_class": task.negative_class,
        },
        "inputs": [_declaration(s, runs[s.name], folders[s.name]) for s in mc.inputs],
        "models": [m.declaration(arrays) for m in models],
        "training": {
            "manifest": Path(manifest_path).name,
            "cases": len(rows),
            "folds": shared.split.folds,
            "seed": shared.seed,
            "input_fusion": mc.fusion,
            "input_stacking_inputs": mc.stacking_inputs,
            "cases_per_input": {n: sum(n in r.inputs for r in rows) for n in names},
            "command": " ".join(["dlrpredictor", *sys.argv[1:]]) if "train" in sys.argv else "",
            "elapsed_s": round(time.time() - start, 1),
        },
        "licence": shared.licence,
        "software": software_versions(),
    }
    path = write_multi_input_bundle(out, doc, folders, model_card(doc, models), arrays=arrays)
    log(f"multi-input bundle written to {path} in {time.time() - start:.0f} s")
    return path


__all__ = ["shared_folds", "train_multi_input"]
