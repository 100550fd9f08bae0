"""The training YAML of a multi-input bundle: the usual keys plus ``inputs`` and ``input_fusion``.

Example::

    bundle_id: busbra-two-view
    title: Two views of a breast lesion (radiomics)
    split: {folds: 5}
    cnn: {enabled: false}
    inputs:
      - {name: US_l, modality: US, required: false}
      - {name: US_r, modality: US, required: false, radiomics_parameters: other.yaml}
    input_fusion: stacking          # across inputs: stacking (default), ensemble or early
    input_stacking_inputs: logit    # what the stacking meta-learner reads: probability or logit

Every other key is a key of the one-input training YAML (``config.py``) and applies to every
input; an input may override ``radiomics_parameters``, ``cnn`` (its backbone, crop size, ...),
``image`` and ``contours`` in its own entry. The inputs share one patient-level fold plan, so
their out-of-fold scores and the fusion learnt on them never see a case's own patient. The
held-out test set is kept in its own manifest (score it once with ``dlrpredictor predict``):
``split.test_fraction``, ``split.test_manifest``, ``split.external_dataset``, ``split.fold_column``,
clinical variables and ComBat harmonisation are refused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import ConfigError, ManifestError
from ..inputs.multi_input import check_input_name
from .config import TrainConfig, load_config

#: The manifest column (internal) that carries the shared fold of every case to each input's run.
FOLD_COLUMN = "multi_input_fold"
INPUT_KEYS = ("name", "modality", "required", "radiomics_parameters", "cnn", "image", "contours")
INPUT_FUSIONS = ("stacking", "ensemble", "early")


@dataclass
class InputSpec:
    """One declared input of the training YAML."""

    name: str
    modality: str = "US"
    required: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class MultiInputConfig:
    """A multi-input training configuration."""

    base: dict[str, Any]  # the one-input keys shared by every input
    inputs: list[InputSpec]
    fusion: str = "stacking"
    stacking_inputs: str = "probability"
    folder: Path = Path(".")  # relative paths are relative to the YAML's folder

    def shared(self) -> TrainConfig:
        """The shared one-input configuration, validated."""
        return self.input_config(None)

    def input_config(self, spec: InputSpec | None) -> TrainConfig:
        """The one-input configuration of an input (its overrides over the shared keys).

        Raises:
            ConfigError: as ``config.load_config``.
        """
        data = copy.deepcopy(self.base)
        for key, value in (spec.overrides if spec else {}).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        if data.get("radiomics_parameters"):
            data["radiomics_parameters"] = str(self.folder / str(data["radiomics_parameters"]))
        cnn = data.get("cnn")
        if isinstance(cnn, dict):
            # weight files are relative to the YAML's folder, as in a one-input training
            if isinstance(cnn.get("init_weights"), str) and cnn["init_weights"]:
                cnn["init_weights"] = str(self.folder / cnn["init_weights"])
            if isinstance(cnn.get("init"), str) and cnn["init"] not in ("", "scratch", "imagenet", "simclr"):
                cnn["init"] = str(self.folder / cnn["init"])
        split = dict(data.get("split") or {})
        split.update(test_fraction=0.0, fold_column=FOLD_COLUMN)
        data["split"] = split
        if spec is not None:
            data["bundle_id"] = f"{data.get('bundle_id', 'dlr-bundle')}-{spec.name}"
            data["title"] = f"{data.get('title', 'DLR model')}: input {spec.name}"
        return _config_from_data(data)


def _config_from_data(data: dict[str, Any]) -> TrainConfig:
    import tempfile

    import yaml

    # load_config is the one reader (defaults, types, checks); it reads a file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return load_config(path)


def load_multi_input_config(path: str | Path) -> MultiInputConfig:
    """Read and check a multi-input training YAML.

    Raises:
        ConfigError: unreadable file, no or bad ``inputs``, a refused key (see the module notes),
            or any error of the one-input keys.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read training config '{path}': {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"training config '{path}' is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"training config '{path}' must be a mapping")
    raw = data.pop("inputs", None)
    fusion = data.pop("input_fusion", "stacking")
    stacking_inputs = data.pop("input_stacking_inputs", "probability")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 6:
        raise ConfigError(
            "config 'inputs' must list 1 to 6 inputs, each {name: NAME, modality: TAG, required: BOOL}"
        )
    if fusion not in INPUT_FUSIONS:
        raise ConfigError(f"config 'input_fusion' is {fusion!r}; choose one of {', '.join(INPUT_FUSIONS)}")
    if stacking_inputs not in ("probability", "logit"):
        raise ConfigError(
            f"config 'input_stacking_inputs' is {stacking_inputs!r}; choose probability or logit"
        )
    split = data.get("split") or {}
    refused = [
        k
        for k in ("test_manifest", "external_dataset", "fold_column")
        if isinstance(split, dict) and split.get(k)
    ]
    if isinstance(split, dict) and split.get("test_fraction"):
        refused.append("test_fraction")
    if refused:
        raise ConfigError(
            f"config 'split.{refused[0]}': a multi-input training uses every case of its manifest; keep the "
            f"test cases in their own manifest and score them once with 'dlrpredictor predict'"
        )
    if (data.get("clinical") or {}).get("variables"):
        raise ConfigError("config 'clinical.variables': a multi-input bundle has no clinical model yet")
    if (data.get("harmonisation") or {}).get("method", "none") != "none":
        raise ConfigError(
            "config 'harmonisation': a multi-input bundle does not harmonise its inputs' radiomics yet; "
            "leave the section out"
        )
    inputs = [_input_spec(i, d) for i, d in enumerate(raw)]
    names = [s.name for s in inputs]
    if len(set(names)) != len(names):
        raise ConfigError("config 'inputs': an input name appears twice")
    config = MultiInputConfig(data, inputs, fusion, stacking_inputs, path.parent)
    for spec in [None, *inputs]:
        config.input_config(spec)  # every input's configuration is checked before any work
    return config


def _input_spec(i: int, d: Any) -> InputSpec:
    where = f"inputs[{i}]"
    if not isinstance(d, dict):
        raise ConfigError(f"config '{where}' must be a mapping with a name")
    unknown = sorted(set(d) - set(INPUT_KEYS))
    if unknown:
        raise ConfigError(
            f"config '{where}': unknown key(s) {', '.join(unknown)}; allowed: {', '.join(INPUT_KEYS)}"
        )
    try:
        name = check_input_name(d.get("name"), f"config '{where}'")
    except ManifestError as exc:
        raise ConfigError(str(exc)) from exc
    modality, required = d.get("modality", "US"), d.get("required", False)
    if not isinstance(modality, str) or not modality.strip() or not isinstance(required, bool):
        raise ConfigError(f"config '{where}': modality must be text and required true or false")
    overrides = {k: v for k, v in d.items() if k not in ("name", "modality", "required")}
    return InputSpec(name, modality.strip(), required, overrides)


def is_multi_input_config(path: str | Path | None) -> bool:
    """Whether a training YAML declares ``inputs`` (a multi-input training); False when unreadable
    (the one-input reader then says what is wrong)."""
    if path is None:
        return False
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "inputs" in data
