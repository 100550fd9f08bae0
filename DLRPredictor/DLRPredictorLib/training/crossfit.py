"""Cross-fitting: per training fold a network and the signatures, scored on the fold left out.

For each fold k a ResNet is trained on the other folds and gives deep features; the Rad, DL (and
early-fusion DLR) signatures are fitted on the other folds and score fold k. Every training row
thus gets out-of-fold scores from models that never saw it (:class:`run.OofScores`). The same
steps on every training case give the final, shipped models.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..base.errors import InputError
from ..base.executor import MapFunction, serial_map
from ..inputs.crops import CropSpec, lesion_crop
from .cnn import train_cnn_ensemble
from .cnn_config import CnnTrainConfig, TrainResult
from .config import TrainConfig
from .data import TrainingCase, crops_array, radiomics_table
from .run import DeepFeatures, OofScores, Row, TrainingCohort

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..deep.deep_model import DeepModel
    from ..models.selection import SelectionConfig

Log = Callable[[str], None]


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
        transform=s.transform,
        seed=config.seed,
        cv=min(5, config.split.folds),
    )


def cnn_train_config(config: TrainConfig, seed: int) -> CnnTrainConfig:
    """The CNN training settings of a training config's ``cnn`` section, with this seed."""
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
        init="imagenet" if c.init == "imagenet" else "scratch",  # other starts arrive as init_state
        freeze_epochs=c.freeze_epochs,
        schedule=c.schedule,
        num_classes=max(2, len(config.task.classes)),  # a K-class endpoint's network has K outputs
    )


def crop_settings(config: TrainConfig) -> dict[str, Any]:
    """The lesion crop of a training config (``CropSpec`` fields, as the bundle records them)."""
    return {"margin_fraction": config.image.margin_fraction, "size": config.cnn.input_size, "square": True}


def radiomics_variants(config: TrainConfig) -> list[str]:
    """Every contour variant radiomics are extracted for: the training ones plus exact and ellipse."""
    return sorted(set(config.contours.variants) | {"exact", "ellipse"})


def cohort_radiomics(
    cases: list[TrainingCase],
    config: TrainConfig,
    params: dict[str, Any],
    work: Path,
    log: Log,
    *,
    map_fn: MapFunction | None = None,
) -> tuple[list[str], dict[tuple[str, str], np.ndarray]]:
    """Radiomics of every case and :func:`radiomics_variants`, cached in ``work / "cache"``.

    ``map_fn``: a cluster's map (``base.executor``); default: up to 4 local processes.
    """
    jobs = max(1, min(os.cpu_count() or 1, 4))
    variants = radiomics_variants(config)
    return radiomics_table(cases, variants, params, work / "cache", jobs=jobs, log=log, map_fn=map_fn)


class CrossFitter:
    """The networks and signatures of one run: per fold (out-of-fold scores), then final.

    Args:
        config: the training configuration.
        cohort: cases, labels, groups, split plan and radiomics.
        work: the work folder (CNN and SimCLR checkpoints, the out-of-fold scores).
        log: one line per step.
        map_fn: where the crops and the folds run (``base.executor``; default: here, in turn).
    """

    def __init__(
        self,
        config: TrainConfig,
        cohort: TrainingCohort,
        work: Path,
        log: Log,
        map_fn: MapFunction | None = None,
    ) -> None:
        self.map_fn = map_fn or serial_map
        self.config = config
        self.cohort = cohort
        self.work = work
        self.log = log
        self.variants = list(config.contours.variants)
        self.crop = crop_settings(config)
        #: Epoch history of every network trained ("fold1", ..., "final").
        self.cnn_history: dict[str, list[dict[str, float]]] = {}
        #: SimCLR pretraining record, when the networks start from pretrained weights.
        self.pretrain_history: dict[str, Any] | None = None
        #: The weights every network starts from (None: random initialisation).
        self.init_state: dict[str, np.ndarray] | None = None

    # -- CNN -----------------------------------------------------------------------------------
    def crops(self) -> np.ndarray:
        """(N, V, size, size) crops of every case and training contour variant."""
        return crops_array(self.cohort.cases, self.variants, CropSpec(**self.crop), self.map_fn)

    def train_network(self, name: str, idx: np.ndarray, crops: np.ndarray) -> TrainResult:
        """A CNN (or seed ensemble) trained on the cases ``idx`` (checkpointed in ``work/cnn/<name>``)."""
        cohort = self.cohort
        self.log(f"CNN {name}: training on {len(idx)} cases")
        cnn_config = cnn_train_config(self.config, self.config.seed)
        cnn_config.val_fraction = self._val_fraction(name, idx, cnn_config.val_fraction)
        result = train_cnn_ensemble(
            crops[idx],
            cohort.labels[idx],
            cnn_config,
            self.config.cnn.seeds,
            checkpoint_dir=self.work / "cnn" / name,
            groups=cohort.groups[idx],
            log=lambda line: self.log(f"CNN {name}: {line}"),
            init_state=self.init_state,
        )
        self.cnn_history[name] = result.history
        for m, member in enumerate(result.members, start=1):
            self.cnn_history[f"{name}.member{m}"] = member.history
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

        train = self.cohort.plan.train  # never the held-out cases; labels are not read either
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
        groups, labels = self.cohort.groups[idx], self.cohort.labels[idx]
        classes = range(max(2, len(self.config.task.classes)))
        fewest = min(len(set(groups[labels == c])) for c in classes)
        if fraction <= 0 or fewest < 2 or round(1.0 / fraction) <= fewest:
            return fraction
        raised = min(0.5, 1.0 / fewest)
        self.log(
            f"CNN {name}: validation share raised from {fraction:.2f} to {raised:.2f} "
            f"(only {fewest} patients of the rarer class)"
        )
        return raised

    def deep_features(self, model: DeepModel, idx: np.ndarray, variants: list[str]) -> DeepFeatures:
        """The network's features of the cases ``idx``, for each contour variant."""
        spec = CropSpec(**self.crop)
        out: DeepFeatures = {}
        if not len(idx):
            return out
        for v in variants:
            crops = np.stack([lesion_crop(self.cohort.cases[i].variants[v], spec)[0] for i in idx])
            feats = model.features(crops)
            out.update({(int(i), v): feats[j] for j, i in enumerate(idx)})
        return out

    # -- signatures ----------------------------------------------------------------------------
    def fit_signatures(self, idx: np.ndarray, deep: DeepFeatures | None) -> dict[str, Any]:
        """Rad, DL and (early) DLR signatures fitted on the given training cases.

        Rad trains on the radiomics variants (``contours.for_radiomics()``), DL and early fusion on
        every contour variant.

        Returns:
            {"rad": Signature} and with deep features "reducer" (DeepFeatureReducer), "dl" and,
            for early fusion, "dlr" (Signatures); with ``harmonisation`` "harmoniser" (the
            ``models.combat.ComBat`` step fitted on these cases, applied to their radiomics).
        """
        from ..models.signatures import DeepFeatureReducer, Signature, early_fusion
        from .combat_fit import fit_harmoniser, harmonise_rows

        cfg = self.config
        cohort = self.cohort
        rad_sel = selection_settings(cfg)
        # The feature transform is the Rad signature's: the DL signature stays affine in the
        # pooled features (its heatmap, models.signature_linear).
        sel = dataclasses.replace(rad_sel, transform="none")
        grid: dict[str, Any] | None = None if cfg.model.grid_search else {}
        kw: dict[str, Any] = {"selection": sel, "cv": min(5, cfg.split.folds), "seed": cfg.seed}
        rad_cols = self.rad_columns(idx)
        rad_pairs, rad_R = cohort.rows(idx, cfg.contours.for_radiomics())
        harmoniser = fit_harmoniser(cfg, cohort, idx, self.log)
        rad_R = harmonise_rows(harmoniser, cohort, rad_pairs, rad_R)
        rad = Signature("Rad", rad_cols, cfg.model.rad_classifier, grid=grid, **{**kw, "selection": rad_sel})
        out: dict[str, Any] = {"rad": rad}
        if harmoniser is not None:
            out["harmoniser"] = harmoniser
        out["rad"].fit(
            pd.DataFrame(rad_R, columns=cohort.rad_names),
            cohort.labels[[i for i, _ in rad_pairs]],
            groups=cohort.groups[[i for i, _ in rad_pairs]],
            selection_rows=self.selection_rows(rad_pairs),
        )
        pairs, R = cohort.rows(idx, self.variants)
        R = harmonise_rows(harmoniser, cohort, pairs, R)
        y = cohort.labels[[i for i, _ in pairs]]
        g = cohort.groups[[i for i, _ in pairs]]
        rows = self.selection_rows(pairs)
        frame = pd.DataFrame(R, columns=cohort.rad_names)
        if deep is not None:
            D = np.array([deep[p] for p in pairs])
            n_comp = cfg.model.pca_components
            reducer = DeepFeatureReducer(int(n_comp) if n_comp >= 1 else float(n_comp)).fit(D)
            frame = pd.concat([frame, reducer.transform_frame(D)], axis=1)
            out["reducer"] = reducer
            out["dl"] = Signature("DL", reducer.names, cfg.model.dl_classifier, grid=grid, **kw).fit(
                frame, y, groups=g, selection_rows=rows
            )
            if cfg.model.fusion == "early":
                out["dlr"] = early_fusion(
                    rad_cols,
                    reducer.names,
                    classifier="lr",
                    selection=sel,
                    cv=kw["cv"],
                    seed=cfg.seed,
                ).fit(frame, y, groups=g, selection_rows=rows)
        return out

    def selection_rows(self, pairs: list[Row]) -> np.ndarray | None:
        """The rows feature selection sees: the exact contour of each lesion (``selection.lesion_rows``),
        so that no statistic counts a lesion once per contour variant; None: every row."""
        if not self.config.selection.lesion_rows:
            return None
        return np.array([v == "exact" for _, v in pairs], dtype=bool)

    def rad_columns(self, idx: np.ndarray) -> list[str]:
        """The radiomics columns the signatures select from: every one, or those whose ICC(2,1)
        across the Rad contour variants of these (training) lesions reaches ``selection.icc_min``.

        Raises:
            InputError: when no feature reaches the threshold.
        """
        threshold = self.config.selection.icc_min
        names = list(self.cohort.rad_names)
        if threshold is None:
            return names
        from ..models.icc import icc_keep, variant_icc

        ids = [self.cohort.cases[i].case_id for i in idx]
        keep = icc_keep(variant_icc(self.cohort.rad, ids, self.config.contours.for_radiomics()), threshold)
        kept = [names[j] for j in np.flatnonzero(keep)]
        self.log(f"ICC screen: {len(kept)} of {len(names)} radiomics features have ICC(2,1) >= {threshold}")
        if not kept:
            raise InputError(
                f"no radiomics feature has ICC(2,1) >= {threshold} across the contour variants; "
                "lower selection.icc_min"
            )
        return kept

    def score(
        self, sigs: dict[str, Any], pairs: list[Row], R: np.ndarray, deep: DeepFeatures | None
    ) -> dict[str, np.ndarray]:
        """Each signature's probability on these rows (their radiomics harmonised by the fitted
        step, when the run has one)."""
        from .combat_fit import harmonise_rows

        R = harmonise_rows(sigs.get("harmoniser"), self.cohort, pairs, R)
        frame = self.cohort.frame(pairs, R, deep, sigs.get("reducer"))
        return {k: sigs[k].predict_proba(frame) for k in ("rad", "dl", "dlr") if k in sigs}

    # -- cross-fitting ---------------------------------------------------------------------------
    def out_of_fold(self, crops: np.ndarray | None) -> OofScores:
        """Out-of-fold scores of every training row (saved to ``work/oof_scores.csv``).

        Args:
            crops: :meth:`crops` when the run trains networks, else None.
        """
        cohort = self.cohort
        oof_pairs: list[Row] = []
        oof: dict[str, list[np.ndarray]] = {"rad": [], "dl": [], "dlr": []}
        # Each fold is independent: it may run in another process (map_fn), so it returns its
        # network's history instead of recording it here.
        fold = functools.partial(self.fold_scores, crops)
        for pairs, scores, history in self.map_fn(fold, list(range(len(cohort.plan.folds)))):
            self.cnn_history.update(history)
            oof_pairs += pairs
            for name, s in scores.items():
                oof[name].append(s)
        result = OofScores(
            pairs=oof_pairs,
            scores={k: np.concatenate(v) for k, v in oof.items() if v},
            y=cohort.labels[[i for i, _ in oof_pairs]],
        )
        self.save_oof(result)
        return result

    def __getstate__(self) -> dict[str, Any]:
        """A copy sent to another process (a fold on a cluster) does its own work there, in turn:
        the cluster's map holds the client's connection, which does not travel."""
        return {**self.__dict__, "map_fn": serial_map}

    def fold_scores(
        self, crops: np.ndarray | None, k: int
    ) -> tuple[list[Row], dict[str, np.ndarray], dict[str, list[dict[str, float]]]]:
        """Fold k: its network and signatures fitted on the other folds, scoring fold k's rows.

        Returns:
            (fold k's rows, each signature's scores of them, {network name: epoch history}).
        """
        train = self.cohort.plan.train
        folds = self.cohort.plan.folds
        va = train[folds[k]]
        tr = np.setdiff1d(train, va)
        self.log(f"fold {k + 1}/{len(folds)}: {len(tr)} training, {len(va)} out-of-fold cases")
        deep = None
        history: dict[str, list[dict[str, float]]] = {}
        if crops is not None:
            result = self.train_network(f"fold{k + 1}", tr, crops)
            history[f"fold{k + 1}"] = result.history
            deep = self.deep_features(result.model(), np.concatenate([tr, va]), self.variants)
        sigs = self.fit_signatures(tr, deep)
        pairs, R = self.cohort.rows(va, self.variants)
        return pairs, self.score(sigs, pairs, R, deep), history

    def save_oof(self, oof: OofScores) -> None:
        """The out-of-fold signature scores, kept in the work folder to audit the fusion step.

        Written whole or not at all (temporary file, then rename).
        """
        frame = pd.DataFrame(
            {
                "case_id": [self.cohort.cases[i].case_id for i, _ in oof.pairs],
                "variant": [v for _, v in oof.pairs],
                "label": oof.y,
            }
        )
        for name, s in oof.scores.items():
            frame[f"score_{name}"] = s
        path = self.work / "oof_scores.csv"
        tmp = path.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
