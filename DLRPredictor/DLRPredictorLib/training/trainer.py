"""`dlrpredictor train`: a DLR / nomogram bundle from a labelled cohort, without leakage.

The order of work, and why it does not leak:
1. Cases are split by patient into training and held-out test (or an external test manifest).
   Nothing below sees a test case until the final evaluation (``splits.py``).
2. The training cases are split by patient into K folds. For each fold k a ResNet is trained on
   the other folds; its deep features of fold k are *out-of-fold*. The Rad, DL (and early-fusion
   DLR) signatures of fold k are fitted on the other folds (selection, LASSO, grid search all
   inside), and predict fold k. So every training case gets out-of-fold signature scores from
   models (and a network) that never saw it (``crossfit.py``).
3. Fusion (stacking meta-learner or ensemble weights), the clinical combined model, the
   nomogram and every frozen cutoff (Youden) are fitted on those out-of-fold scores only
   (``fusion_fit.py``; the cutoffs in ``bundle_export.py``).
4. The shipped signatures and network are refitted on all training cases; a new case is out of
   sample for them exactly as fold k was for the fold models.
5. The held-out test split is scored once with the frozen bundle, with the exact masks and with
   the masks replaced by their moment-matched ellipses (rough contours) (``heldout.py``).

This module reads the cohort and runs the steps in that order; the finished run
(:class:`run.TrainingRun`) goes to ``bundle_export.write_trained_bundle``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import ConfigError, DLRError, InputError
from ..base.executor import MapFunction, active_map
from . import data as td
from .config import TrainConfig, load_config
from .crossfit import CrossFitter, cohort_radiomics, radiomics_variants, selection_settings
from .fusion_fit import fit_clinical, fit_fusion, gate_shape
from .ledger import LEDGER_NAME
from .recalibration_fit import fit_recalibration
from .robustness import fold_column_values
from .run import TrainingCohort, TrainingRun
from .splits import plan_external, plan_splits

Log = Callable[[str], None]


def _print_log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def _cohort(
    config: TrainConfig,
    cases: list[td.TrainingCase],
    n_external: int,
    *,
    params: dict[str, Any],
    work: Path,
    log: Log,
    map_fn: MapFunction | None = None,
) -> TrainingCohort:
    """Step 1 and the radiomics of every case: the cohort every later step works on."""
    labels = np.array([c.label for c in cases])
    groups = np.array([c.patient_id for c in cases])
    if config.split.external_dataset is not None:
        datasets = np.array([c.dataset for c in cases])
        plan = plan_external(
            labels, groups, datasets, config, fold_column_values(config, cases), n_external=n_external
        )
    else:
        plan = plan_splits(labels, groups, config, n_external, fold_column_values(config, cases))
    pre = config.cnn.pretrain
    if config.cnn.enabled and 0 < len(plan.train) < pre.batch_size and pre.epochs > 0:
        # said now, not after the radiomics extraction (which can take an hour)
        raise InputError(
            f"cnn.pretrain needs at least batch_size={pre.batch_size} training cases; the training "
            f"split has {len(plan.train)}: lower cnn.pretrain.batch_size"
        )
    rad_names, rad = cohort_radiomics(cases, config, params, work, log, map_fn=map_fn)
    return TrainingCohort(cases, labels, groups, plan, rad_names, rad)


def _fit(
    config: TrainConfig,
    cohort: TrainingCohort,
    work: Path,
    log: Log,
    *,
    started: float,
    record: dict[str, Any],
    map_fn: MapFunction | None = None,
) -> TrainingRun:
    """Steps 2 to 4: cross-fitting, the final models, the fusion and the clinical model.

    Args:
        record: the run's remaining :class:`run.TrainingRun` fields (radiomics parameters,
            excluded cases, manifest name, command, hardware).
        started: ``time.time()`` at the start of the run.
    """
    fitter = CrossFitter(config, cohort, work, log, map_fn)
    train = cohort.plan.train
    crops = None
    if config.cnn.enabled:
        crops = fitter.crops()
        fitter.init_state = fitter.initial_weights(crops)
    # 2. out-of-fold scores (cross-fitting)
    oof = fitter.out_of_fold(crops)
    # 4. final models on all training cases
    log("final models on all training cases")
    final_net = final_deep = None
    if crops is not None:
        final_net = fitter.train_network("final", train, crops).model()
        final_deep = fitter.deep_features(final_net, np.arange(len(cohort.cases)), radiomics_variants(config))
    sigs = fitter.fit_signatures(train, final_deep)
    # 3. fusion, clinical model and cutoffs on out-of-fold scores
    fusion_variants = config.model.fusion_variants or fitter.variants
    fusion_rows = np.array([v in fusion_variants for _, v in oof.pairs])
    shape = gate_shape(cohort, oof.pairs, train) if config.model.contour_gate else None
    fusion = fit_fusion(config, sigs, oof.scores, oof.y, fusion_rows, shape=shape)
    if fusion is not None:
        oof.scores["dlr"] = fusion.oof
        sigs["dlr"] = fusion.model
    # recalibration of the image-only probability, chosen by inner CV on its out-of-fold scores
    image_model = "dlr" if "dlr" in oof.scores else "rad"
    exact = oof.exact
    step, how = fit_recalibration(
        config, image_model, oof.scores[image_model][exact], oof.y[exact], cohort.groups[oof.exact_cases]
    )
    log(f"recalibration of {image_model}: {how.get('chosen')} ({how.get('criterion')})")
    return TrainingRun(
        config=config,
        cohort=cohort,
        work=work,
        signatures=sigs,
        oof=oof,
        clinical=fit_clinical(config, cohort, oof, log=log),
        final_net=final_net,
        final_deep=final_deep,
        cnn_history=fitter.cnn_history,
        pretrain_history=fitter.pretrain_history,
        elapsed_s=time.time() - started,
        recalibration=step,
        recalibration_selection=how,
        **record,
    )


def _refuse_overwriting_inputs(
    out: Path, work: Path, files: list[Path | str | None], rows: list[Any]
) -> None:
    """Before any work: --out and --work must not be an input, and --out (a folder replaced as a
    whole by the new bundle) must not hold one: the manifests, config, radiomics parameters,
    initial weights, signing key, and every image and mask (a DICOM series is a folder)."""
    from ..base.outputs import refuse_overwriting_inputs, refuse_replacing_inputs

    inputs: list[Path | str | None] = list(files)
    folders: list[Path | str | None] = []
    for r in rows:
        for p in (r.resolved_image, r.resolved_mask):
            inputs.append(p)
            if p is not None and p.is_dir():
                folders.append(p)
    refuse_overwriting_inputs({"--out": out, "--work": work}, inputs, folders)
    refuse_replacing_inputs({"--out": out}, inputs)


def train_from_manifest(
    manifest_path: Path,
    out: Path,
    config_path: Path | None = None,
    *,
    work_dir: Path | None = None,
    log: Log | None = None,
    test_manifest: Path | None = None,
    sign_key: Path | None = None,
    map_fn: MapFunction | None = None,
    ledger: Path | None = None,
) -> Path:
    """Train a bundle from a labelled manifest (see the module docstring for the method).

    Args:
        manifest_path: CSV with case_id, image, mask, label, optional patient_id and clinical columns.
        out: bundle folder to write (replaced only on success).
        config_path: training YAML; defaults otherwise.
        work_dir: caches and checkpoints (resumable); default ``<out>.work``.
        log: one line per step (default: print with a time stamp).
        test_manifest: external test manifest (overrides the config's split).
        sign_key: Ed25519 private key (PEM) that signs the bundle (``bundle.sign``); checked
            before training starts.
        map_fn: where radiomics extraction, crops and folds run (``base.executor``: a Dask
            cluster's map from ``dlrpredictor train --scheduler``); default: this machine.
        ledger: the held-out ledger file (``ledger.py``) the held-out evaluation is appended to;
            default ``<work_dir>/heldout_ledger.jsonl``. Share one file between the runs that
            score the same test set.

    Returns:
        The bundle folder.

    Raises:
        InputError: before any work, when ``out`` or ``work_dir`` is an input, or ``out`` holds
            one (``base.outputs``).
    """
    from ..bundle.sign import check_signing_key, sign_bundle
    from ..features import radiomics as rf
    from ..inputs import cohort_csv as manifest_mod
    from .bundle_export import write_trained_bundle

    log = log or _print_log
    map_fn = map_fn if map_fn is not None else active_map()  # train --scheduler sets one
    if sign_key is not None:
        check_signing_key(sign_key)  # a bad key is refused now, not after the training
    config = load_config(config_path)
    classes = list(config.task.classes)  # a K-class endpoint (multiclass_fit.py) when not empty
    if classes:
        from .multiclass_fit import check_multiclass_config, class_label

        check_multiclass_config(config)
    start = time.time()
    work = Path(work_dir) if work_dir else Path(str(out) + ".work")
    base = Path(config_path).parent if config_path else Path.cwd()  # config paths are relative to it
    params_path = base / config.radiomics_parameters if config.radiomics_parameters else rf.DEFAULT_PARAMETERS
    if config.cnn.init_weights:
        config.cnn.init_weights = str(base / config.cnn.init_weights)
        if not Path(config.cnn.init_weights).is_file():
            raise ConfigError(f"cnn.init_weights: no file {config.cnn.init_weights}")
    params = rf.load_parameters(params_path)
    label_values = {s: 1 for s in config.task.positive_labels} | {s: 0 for s in config.task.negative_labels}
    clinical_names = [v["name"] for v in config.clinical.variables]

    def read(path: Path) -> list[Any]:
        return manifest_mod.read_cohort_csv(
            path,
            required=("case_id", "image", "mask", "label"),
            clinical_names=clinical_names,
            label_values=label_values,
            code_labels=not classes,  # K-class label texts are read against task.classes below
            warn=log,
        )

    rows = read(manifest_path)
    ext_path = test_manifest or (base / config.split.test_manifest if config.split.test_manifest else None)
    ext_rows = read(ext_path) if ext_path is not None else []
    _refuse_overwriting_inputs(
        out,
        work,
        [manifest_path, ext_path, config_path, params_path, config.cnn.init_weights or None, sign_key],
        [*rows, *ext_rows],
    )
    work.mkdir(parents=True, exist_ok=True)
    cases, excluded = [], []
    n_ext = 0
    for source, rs in (("train", rows), ("test", ext_rows)):
        for r in rs:
            label = class_label(r.label_raw, classes, f"manifest row {r.row_number}") if classes else r.label
            if label is None:
                excluded.append((r.case_id, "no label"))
                continue
            try:
                cases.append(
                    td.load_case(
                        r,
                        int(label),
                        config.contours.variants
                        + [v for v in ("ellipse",) if v not in config.contours.variants],
                        config.image.pixel_units,
                        config.seed,
                    )
                )
                n_ext += source == "test"
            except DLRError as exc:
                excluded.append((r.case_id, str(exc)))
    for cid, why in excluded:
        log(f"excluded {cid}: {why}")
    if len(cases) < 10 or len({c.label for c in cases}) < 2:
        raise InputError(f"only {len(cases)} usable labelled cases (need at least 10 with both classes)")
    cohort = _cohort(config, cases, n_ext, params=params, work=work, log=log, map_fn=map_fn)
    record = {
        "radiomics_parameters": params,
        "radiomics_parameters_path": Path(params_path),
        "excluded": excluded,
        "manifest_name": Path(manifest_path).name,
        "command": " ".join(["dlrpredictor", *sys.argv[1:]]) if sys.argv and "train" in sys.argv else "",
        "hardware": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "ledger": Path(ledger) if ledger is not None else work / LEDGER_NAME,
    }
    if classes:
        from .multiclass_dlr import fit_multiclass_dlr
        from .multiclass_export import write_multiclass_bundle
        from .multiclass_fit import fit_multiclass

        if config.cnn.enabled:  # Rad, DL and their fusion, cross-fitted on the same folds
            mc = fit_multiclass_dlr(config, cohort, work, log, record=record, map_fn=map_fn)
        else:
            mc = fit_multiclass(config, cohort, work, log, record=record)
        path = write_multiclass_bundle(out, mc)
    else:
        run = _fit(config, cohort, work, log, started=start, record=record, map_fn=map_fn)
        path = write_trained_bundle(out, run)
    if sign_key is not None:
        log(f"bundle signed: {sign_bundle(path, sign_key).trust}")
    log(f"bundle written to {path} in {time.time() - start:.0f} s")
    return path


__all__ = ["plan_splits", "selection_settings", "train_from_manifest"]
