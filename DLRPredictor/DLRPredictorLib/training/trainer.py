"""`dlrpredictor train`: a DLR / nomogram bundle from a labelled cohort, without leakage.

The order of work, and why it does not leak:
1. Cases are split by patient into training and held-out test (or an external test manifest).
   Nothing below sees a test case until the final evaluation.
2. The training cases are split by patient into K folds. For each fold k a ResNet is trained on
   the other folds; its deep features of fold k are *out-of-fold*. The Rad, DL (and early-fusion
   DLR) signatures of fold k are fitted on the other folds (selection, LASSO, grid search all
   inside), and predict fold k. So every training case gets out-of-fold signature scores from
   models (and a network) that never saw it.
3. Fusion (stacking meta-learner or ensemble weights), the clinical combined model, the
   nomogram and every frozen cutoff (Youden) are fitted on those out-of-fold scores only.
4. The shipped signatures and network are refitted on all training cases; a new case is out of
   sample for them exactly as fold k was for the fold models.
5. The held-out test split is scored once with the frozen bundle, with the exact masks and with
   the masks replaced by their moment-matched ellipses (rough contours).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..base.errors import ConfigError, DLRError, InputError
from . import data as td
from .config import TrainConfig, config_to_dict, load_config

if TYPE_CHECKING:
    from ..models.selection import SelectionConfig

Log = Callable[[str], None]


def _print_log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


@dataclass
class FoldPlan:
    """Case indices of the training split, the test split and the training folds."""

    train: np.ndarray
    test: np.ndarray
    folds: list[np.ndarray]  # validation indices into `train`, per fold


def selection_settings(config: TrainConfig) -> SelectionConfig:
    """The FeatureSelector settings (``models.selection.SelectionConfig``) that a training config's
    ``selection`` section (``config.SelectionSettings``) asks for."""
    from ..models.selection import SelectionConfig

    s = config.selection
    return SelectionConfig(
        univariate=s.test,
        alpha=s.alpha,
        correlation=s.correlation,
        correlation_threshold=s.correlation_threshold,
        lasso="logistic" if s.lasso else "none",
        max_features=s.max_features,
        seed=config.seed,
        cv=min(5, config.split.folds),
    )


def plan_splits(labels: np.ndarray, groups: np.ndarray, config: TrainConfig, n_external: int = 0) -> FoldPlan:
    """Patient-level test split and training folds (stratified, seeded)."""
    from ..models.selection import stratified_folds

    n = len(labels)
    if n_external:
        train = np.arange(n - n_external)
        test = np.arange(n - n_external, n)
    elif config.split.test_fraction > 0:
        k = max(2, round(1 / config.split.test_fraction))
        _, test = next(iter(stratified_folds(labels, groups, k, config.seed)))
        train = np.setdiff1d(np.arange(n), test)
    else:
        train, test = np.arange(n), np.arange(0)
    folds = [
        va for _, va in stratified_folds(labels[train], groups[train], config.split.folds, config.seed + 1)
    ]
    return FoldPlan(train=train, test=np.sort(test), folds=folds)


def _cnn_config(config: TrainConfig, seed: int) -> Any:
    from .cnn import CnnTrainConfig

    c = config.cnn
    return CnnTrainConfig(
        arch=c.arch,
        input_size=c.input_size,
        epochs=c.epochs,
        batch_size=c.batch_size,
        lr=c.lr,
        weight_decay=c.weight_decay,
        patience=c.patience,
        val_fraction=c.val_fraction,
        seed=seed,
        num_threads=c.num_threads,
        ema_decay=c.ema_decay,
    )


class _Trainer:
    """Holds the arrays of one training run; methods are the steps of the module docstring."""

    def __init__(
        self, config: TrainConfig, cases: list[td.TrainingCase], n_external: int, work: Path, log: Log
    ):
        self.config = config
        self.cases = cases
        self.log = log
        self.work = work
        self.variants = list(config.contours.variants)
        self.labels = np.array([c.label for c in cases])
        self.groups = np.array([c.patient_id for c in cases])
        self.plan = plan_splits(self.labels, self.groups, config, n_external)
        self.crop = {
            "margin_fraction": config.image.margin_fraction,
            "size": config.cnn.input_size,
            "square": True,
        }

    # -- features ------------------------------------------------------------------------------
    def radiomics(self, params: dict[str, Any]) -> None:
        eval_variants = sorted(set(self.variants) | {"exact", "ellipse"})
        jobs = max(1, min(os.cpu_count() or 1, 4))
        self.rad_names, self.rad = td.radiomics_table(
            self.cases, eval_variants, params, self.work / "cache", jobs=jobs, log=self.log
        )

    def rows(self, idx: np.ndarray, variants: list[str]) -> tuple[list[tuple[int, str]], np.ndarray]:
        """(case index, variant) pairs with radiomics, and their radiomics matrix."""
        pairs = [(int(i), v) for i in idx for v in variants if (self.cases[i].case_id, v) in self.rad]
        return pairs, np.array([self.rad[(self.cases[i].case_id, v)] for i, v in pairs])

    # -- CNN -----------------------------------------------------------------------------------
    def train_network(self, name: str, idx: np.ndarray, crops: np.ndarray) -> Any:
        from .cnn import train_cnn

        self.log(f"CNN {name}: training on {len(idx)} cases")
        cnn_config = _cnn_config(self.config, self.config.seed)
        cnn_config.val_fraction = self._val_fraction(name, idx, cnn_config.val_fraction)
        result = train_cnn(
            crops[idx],
            self.labels[idx],
            cnn_config,
            checkpoint_dir=self.work / "cnn" / name,
            groups=self.groups[idx],
            log=lambda line: self.log(f"CNN {name}: {line}"),
            init_state=self.init_state,
        )
        self.history[name] = result.history
        return result

    def initial_weights(self, crops: np.ndarray) -> dict[str, np.ndarray] | None:
        """The weights every CNN starts from: ``cnn.init_weights``, SimCLR pretraining, or None."""
        if self.config.cnn.init_weights:
            from safetensors.numpy import load_file

            return load_file(self.config.cnn.init_weights)  # tensors only: no code runs
        pre = self.config.cnn.pretrain
        if pre.epochs <= 0:
            return None
        from .ssl import SslConfig, pretrain_simclr

        train = self.plan.train  # never the held-out cases; labels are not read either
        cols = [self.variants.index(v) for v in pre.variants]
        self.log(
            f"SimCLR pretraining on the {len(train)} training cases ({', '.join(pre.variants)} crops, "
            f"labels unused), {pre.epochs} epochs"
        )
        ssl = SslConfig(
            arch=self.config.cnn.arch,
            input_size=self.config.cnn.input_size,
            epochs=pre.epochs,
            batch_size=pre.batch_size,
            lr=pre.lr,
            temperature=pre.temperature,
            seed=self.config.seed,
            num_threads=self.config.cnn.num_threads,
        )
        result = pretrain_simclr(crops[train][:, cols], ssl, checkpoint_dir=self.work / "ssl", log=self.log)
        digest = result.digest()
        self.pretrain_history = {
            "cases": len(train),
            "variants": list(pre.variants),
            "history": result.history,
            "weights_sha256": digest,
        }
        loss = result.history[-1]["loss"]
        self.log(f"SimCLR pretraining done: final loss {loss:.4f}, weights sha256 {digest[:16]}")
        return result.state_dict

    def _val_fraction(self, name: str, idx: np.ndarray, fraction: float) -> float:
        """The CNN's inner validation share, raised when too few patients would make it one-class.

        The inner split takes one of round(1/fraction) patient folds; with fewer patients of a class
        than folds, some fold (possibly the one taken) has no patient of that class.
        """
        fewest = min(len(set(self.groups[idx][self.labels[idx] == c])) for c in (0, 1))
        if fraction <= 0 or fewest < 2 or round(1.0 / fraction) <= fewest:
            return fraction
        raised = min(0.5, 1.0 / fewest)
        self.log(
            f"CNN {name}: validation share raised from {fraction:.2f} to {raised:.2f} "
            f"(only {fewest} patients of the rarer class)"
        )
        return raised

    def deep_features(
        self, model: Any, idx: np.ndarray, variants: list[str]
    ) -> dict[tuple[int, str], np.ndarray]:
        from ..deep import deep_model as dfe

        spec = dfe.CropSpec(**self.crop)
        out = {}
        for v in variants:
            crops = (
                np.stack([dfe.lesion_crop(self.cases[i].variants[v], spec)[0] for i in idx])
                if len(idx)
                else None
            )
            if crops is None:
                continue
            feats = model.features(crops)
            out.update({(int(i), v): feats[j] for j, i in enumerate(idx)})
        return out

    # -- signatures ----------------------------------------------------------------------------
    def fit_signatures(self, idx: np.ndarray, deep: dict | None) -> dict[str, Any]:
        """Rad, DL and (early) DLR signatures fitted on the given training cases.

        Rad trains on the radiomics variants (``contours.for_radiomics()``), DL and early fusion on
        every contour variant.
        """
        from ..models.signatures import DeepFeatureReducer, Signature, early_fusion

        cfg = self.config
        sel = selection_settings(cfg)
        grid = None if cfg.model.grid_search else {}
        kw = {"selection": sel, "cv": min(5, cfg.split.folds), "seed": cfg.seed}
        rad_pairs, rad_R = self.rows(idx, cfg.contours.for_radiomics())
        out: dict[str, Any] = {
            "rad": Signature("Rad", self.rad_names, cfg.model.rad_classifier, grid=grid, **kw)
        }
        out["rad"].fit(
            pd.DataFrame(rad_R, columns=self.rad_names),
            self.labels[[i for i, _ in rad_pairs]],
            groups=self.groups[[i for i, _ in rad_pairs]],
        )
        pairs, R = self.rows(idx, self.variants)
        y = self.labels[[i for i, _ in pairs]]
        g = self.groups[[i for i, _ in pairs]]
        frame = pd.DataFrame(R, columns=self.rad_names)
        if deep is not None:
            D = np.array([deep[p] for p in pairs])
            n_comp = cfg.model.pca_components
            reducer = DeepFeatureReducer(int(n_comp) if n_comp >= 1 else float(n_comp)).fit(D)
            frame = pd.concat([frame, reducer.transform_frame(D)], axis=1)
            out["reducer"] = reducer
            out["dl"] = Signature("DL", reducer.names, cfg.model.dl_classifier, grid=grid, **kw).fit(
                frame, y, groups=g
            )
            if cfg.model.fusion == "early":
                out["dlr"] = early_fusion(
                    self.rad_names, reducer.names, classifier="lr", selection=sel, cv=kw["cv"], seed=cfg.seed
                ).fit(frame, y, groups=g)
        return out

    def frame(
        self, pairs: list[tuple[int, str]], R: np.ndarray, deep: dict | None, reducer: Any
    ) -> pd.DataFrame:
        frame = pd.DataFrame(R, columns=self.rad_names)
        if deep is not None and reducer is not None:
            D = np.array([deep[p] for p in pairs])
            frame = pd.concat([frame, reducer.transform_frame(D)], axis=1)
        return frame

    def score(
        self, sigs: dict[str, Any], pairs: list, R: np.ndarray, deep: dict | None
    ) -> dict[str, np.ndarray]:
        frame = self.frame(pairs, R, deep, sigs.get("reducer"))
        return {k: sigs[k].predict_proba(frame) for k in ("rad", "dl", "dlr") if k in sigs}

    # -- the run ---------------------------------------------------------------------------------
    def run(self, params: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        self.history: dict[str, Any] = {}
        self.pretrain_history: dict[str, Any] | None = None
        self.init_state: dict[str, np.ndarray] | None = None
        pre = cfg.cnn.pretrain
        if cfg.cnn.enabled and 0 < len(self.plan.train) < pre.batch_size and pre.epochs > 0:
            # said now, not after the radiomics extraction (which can take an hour)
            raise InputError(
                f"cnn.pretrain needs at least batch_size={pre.batch_size} training cases; the training "
                f"split has {len(self.plan.train)}: lower cnn.pretrain.batch_size"
            )
        self.radiomics(params)
        train = self.plan.train
        use_cnn = cfg.cnn.enabled
        crops = None
        if use_cnn:
            from ..deep import deep_model as dfe

            crops = td.crops_array(self.cases, self.variants, dfe.CropSpec(**self.crop))
            self.init_state = self.initial_weights(crops)
        # 2. out-of-fold scores (cross-fitting)
        oof_pairs_all: list[tuple[int, str]] = []
        oof: dict[str, list[np.ndarray]] = {"rad": [], "dl": [], "dlr": []}
        for k, va_local in enumerate(self.plan.folds):
            va = train[va_local]
            tr = np.setdiff1d(train, va)
            self.log(f"fold {k + 1}/{len(self.plan.folds)}: {len(tr)} training, {len(va)} out-of-fold cases")
            deep = None
            if use_cnn:
                net = self.train_network(f"fold{k + 1}", tr, crops).model()
                deep = self.deep_features(net, np.concatenate([tr, va]), self.variants)
            sigs = self.fit_signatures(tr, deep)
            pairs, R = self.rows(va, self.variants)
            scores = self.score(sigs, pairs, R, deep)
            oof_pairs_all += pairs
            for name, s in scores.items():
                oof[name].append(s)
        oof_scores = {k: np.concatenate(v) for k, v in oof.items() if v}
        oof_y = self.labels[[i for i, _ in oof_pairs_all]]
        self.save_oof(oof_pairs_all, oof_scores, oof_y)
        # 4. final models on all training cases
        self.log("final models on all training cases")
        final_deep = None
        net_result = None
        if use_cnn:
            net_result = self.train_network("final", train, crops)
            self.final_net = net_result.model()
            final_deep = self.deep_features(
                self.final_net, np.arange(len(self.cases)), sorted(set(self.variants) | {"exact", "ellipse"})
            )
        sigs = self.fit_signatures(train, final_deep)
        # 3. fusion, clinical model and cutoffs on out-of-fold scores
        fusion_variants = self.config.model.fusion_variants or self.variants
        fusion_rows = np.array([v in fusion_variants for _, v in oof_pairs_all])
        fusion = self.fit_fusion(sigs, oof_scores, oof_y, fusion_rows)
        if fusion is not None:
            oof_scores["dlr"] = fusion["oof"]
            sigs["dlr"] = fusion["model"]
        exact = np.array([v == "exact" for _, v in oof_pairs_all])
        oof_cases = np.array([i for i, _ in oof_pairs_all])[exact]
        clinical = self.fit_clinical(sigs, oof_scores, exact, oof_cases)
        return {
            "sigs": sigs,
            "oof_scores": oof_scores,
            "oof_y": oof_y,
            "oof_exact": exact,
            "oof_cases": oof_cases,
            "clinical": clinical,
            "final_deep": final_deep,
            "net_result": net_result,
        }

    def save_oof(self, pairs: list[tuple[int, str]], scores: dict[str, np.ndarray], y: np.ndarray) -> None:
        """The out-of-fold signature scores, kept in the work folder to audit the fusion step.

        Written whole or not at all (temporary file, then rename).
        """
        frame = pd.DataFrame(
            {
                "case_id": [self.cases[i].case_id for i, _ in pairs],
                "variant": [v for _, v in pairs],
                "label": y,
            }
        )
        for name, s in scores.items():
            frame[f"score_{name}"] = s
        path = self.work / "oof_scores.csv"
        tmp = path.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)

    def fit_fusion(
        self, sigs: dict[str, Any], oof: dict[str, np.ndarray], y: np.ndarray, rows: np.ndarray
    ) -> dict[str, Any] | None:
        """Stacking meta-learner or ensemble weights, fitted on the out-of-fold rows ``rows``.

        Returns the fusion model and its out-of-fold score on every row (for the cutoffs), or None
        without a DL signature.
        """
        from scipy.special import softmax

        from ..models.fusion import EnsembleFusion, StackingFusion

        if "dl" not in sigs or self.config.model.fusion == "early":
            return {"model": sigs["dlr"], "oof": oof["dlr"]} if "dlr" in sigs else None
        P = np.column_stack([oof["rad"], oof["dl"]])
        members = [sigs["rad"], sigs["dl"]]
        if self.config.model.fusion == "stacking":
            model = StackingFusion(
                members,
                cv=self.config.split.folds,
                seed=self.config.seed,
                name="DLR",
                inputs=self.config.model.stacking_inputs,
            )
            oof_dlr = model.fit_meta(P[rows], y[rows]).combine(P)
        else:
            model = EnsembleFusion(members, cv=self.config.split.folds, seed=self.config.seed, name="DLR")
            model.accuracies = ((P[rows] >= 0.5).astype(int) == y[rows, None]).mean(axis=0)
            model.weights = softmax(model.accuracies / model.temperature)
            oof_dlr = P @ model.weights
        return {"model": model, "oof": oof_dlr}

    def fit_clinical(
        self, sigs: dict, oof: dict, exact: np.ndarray, oof_cases: np.ndarray
    ) -> dict[str, Any] | None:
        from ..models.clinical_logistic import multivariable_logistic, select_predictors, univariable_logistic
        from ..models.clinical_variables import ClinicalVariable, clinical_feature_names, encode_clinical
        from ..models.combined import CombinedModel
        from ..models.nomogram import Nomogram

        variables = [ClinicalVariable(**v) for v in self.config.clinical.variables]
        if not variables:
            return None
        image_model = "dlr" if "dlr" in oof else "rad"
        score = oof[image_model][exact]
        y = self.labels[oof_cases]
        keep, X = [], []
        for j, i in enumerate(oof_cases):
            c = self.cases[i].clinical
            try:
                row = encode_clinical([{v.name: c.get(v.name) for v in variables}], variables)[0]
            except DLRError:
                continue  # cases with a missing clinical value do not inform the combined model
            keep.append(j)
            X.append(row)
        if len(keep) < 20 or len(set(y[keep])) < 2:
            self.log(f"clinical model skipped: only {len(keep)} training cases with complete clinical values")
            return None
        X = np.array(X)
        names = clinical_feature_names(variables)
        uni = univariable_logistic(X, y[keep], names)
        chosen = select_predictors(uni, alpha=self.config.clinical.univariable_p)
        cols = [names.index(n) for n in chosen]
        multi = multivariable_logistic(X[:, cols], y[keep], chosen)
        combined = CombinedModel(score_name="DLR score", score_scale="probability")
        combined.fit(score[keep], X[:, cols], y[keep], chosen)
        from ..models.classifiers import proba_to_logit

        lg = proba_to_logit(score)
        nomo = Nomogram.from_combined(combined, variables, score_range=(float(np.min(lg)), float(np.max(lg))))
        oof_combined = combined.predict_proba(score[keep], X[:, cols])
        return {
            "variables": variables,
            "univariable": uni,
            "multivariable": multi,
            "model": combined,
            "nomogram": nomo,
            "keep": np.array(keep),
            "oof": oof_combined,
            "logit_range": (float(np.min(lg)), float(np.max(lg))),
        }


def _ood(trainer: _Trainer, sigs: dict[str, Any]) -> dict[str, Any]:
    """Out-of-distribution reference: RMS z-distance over the signatures' selected inputs."""
    cols = list(
        dict.fromkeys(sigs["rad"].selected_features + (sigs["dl"].selected_features if "dl" in sigs else []))
    )
    pairs, R = trainer.rows(trainer.plan.train, ["exact"])
    frame = trainer.frame(pairs, R, trainer.final_deep_cache, sigs.get("reducer"))[cols].to_numpy(float)
    mean, std = frame.mean(axis=0), frame.std(axis=0)
    std[std == 0] = 1.0
    d = np.sqrt(np.mean(((frame - mean) / std) ** 2, axis=1))
    # Limit: the 99.5th percentile of training cases, times 1.5 (documented in the README).
    return {
        "columns": cols,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "threshold": float(np.quantile(d, 0.995) * 1.5),
        "rule": "RMS z-distance > 1.5 x 99.5th pct of training",
    }


def train_from_manifest(
    manifest_path: Path,
    out: Path,
    config_path: Path | None = None,
    *,
    work_dir: Path | None = None,
    log: Log | None = None,
    test_manifest: Path | None = None,
) -> Path:
    """Train a bundle from a labelled manifest (see the module docstring for the method).

    Args:
        manifest_path: CSV with case_id, image, mask, label, optional patient_id and clinical columns.
        out: bundle folder to write (replaced only on success).
        config_path: training YAML; defaults otherwise.
        work_dir: caches and checkpoints (resumable); default ``<out>.work``.
        log: one line per step (default: print with a time stamp).
        test_manifest: external test manifest (overrides the config's split).

    Returns:
        The bundle folder.
    """
    from ..features import radiomics as rf
    from ..inputs import cohort_csv as manifest_mod
    from .bundle_export import write_trained_bundle

    log = log or _print_log
    config = load_config(config_path)
    start = time.time()
    work = Path(work_dir) if work_dir else Path(str(out) + ".work")
    work.mkdir(parents=True, exist_ok=True)
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
            warn=log,
        )

    rows = read(manifest_path)
    ext_path = test_manifest or (base / config.split.test_manifest if config.split.test_manifest else None)
    ext_rows = read(ext_path) if ext_path is not None else []
    cases, excluded = [], []
    n_ext = 0
    for source, rs in (("train", rows), ("test", ext_rows)):
        for r in rs:
            if r.label is None:
                excluded.append((r.case_id, "no label"))
                continue
            try:
                cases.append(
                    td.load_case(
                        r,
                        int(r.label),
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
    trainer = _Trainer(config, cases, n_ext, work, log)
    result = trainer.run(params)
    trainer.final_deep_cache = result["final_deep"]
    ood = _ood(trainer, result["sigs"])
    path = write_trained_bundle(
        out,
        trainer,
        result,
        ood=ood,
        config=config,
        params=params,
        params_path=params_path,
        extra={
            "excluded": excluded,
            "elapsed_s": time.time() - start,
            "config": config_to_dict(config),
            "manifest": Path(manifest_path).name,
            "command": " ".join(["dlrpredictor", *sys.argv[1:]]) if sys.argv and "train" in sys.argv else "",
            "hardware": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        },
    )
    log(f"bundle written to {path} in {time.time() - start:.0f} s")
    return path


__all__ = ["FoldPlan", "plan_splits", "train_from_manifest"]
