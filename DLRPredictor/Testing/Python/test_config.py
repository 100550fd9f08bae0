"""config.py: training YAML defaults, validation naming the offending key, and round trip."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import TINY_CONFIG
from DLRPredictorLib.base.errors import ConfigError
from DLRPredictorLib.training.config import (
    CHOICES,
    CONTOUR_VARIANTS,
    TrainConfig,
    config_to_dict,
    load_config,
    validate,
)


def _load(tmp_path, text: str) -> TrainConfig:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_defaults_are_valid_and_leak_safe():
    config = load_config(None)
    assert config == validate(TrainConfig())
    assert config.split.folds >= 2 and 0 < config.split.test_fraction < 0.5
    assert "exact" in config.contours.variants
    assert set(config.contours.variants) <= set(CONTOUR_VARIANTS)
    for (section, key), allowed in CHOICES.items():
        assert getattr(getattr(config, section), key) in allowed


def test_empty_file_gives_the_defaults(tmp_path):
    assert _load(tmp_path, "") == TrainConfig()
    assert _load(tmp_path, "# only a comment\n") == TrainConfig()


def test_partial_file_overrides_only_what_it_names(tmp_path):
    config = _load(tmp_path, "seed: 7\ncnn: {epochs: 3}\nsplit: {folds: 3}\n")
    assert (config.seed, config.cnn.epochs, config.split.folds) == (7, 3, 3)
    default = TrainConfig()
    assert config.cnn.input_size == default.cnn.input_size
    # Exact: both are the dataclass default.
    assert config.split.test_fraction == default.split.test_fraction
    assert config.model == default.model


def test_tiny_test_config_is_valid(tmp_path):
    config = _load(tmp_path, TINY_CONFIG)
    assert config.cnn.input_size == 64 and config.contours.variants == ["exact"]
    assert [v["name"] for v in config.clinical.variables] == ["age", "birads"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("epochz: 3\n", "epochz"),
        ("cnn: {epochz: 3}\n", "epochz"),
        ("split: {fold: 3}\n", "fold"),
        ("model: {fusion_kind: early}\n", "fusion_kind"),
    ],
)
def test_unknown_keys_are_named(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"unknown config key\(s\) {key}") as info:
        _load(tmp_path, text)
    assert "allowed:" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("cnn: {epochs: ten}\n", "cnn.epochs"),
        ("cnn: {epochs: true}\n", "cnn.epochs"),
        ("cnn: {epochs: 2.5}\n", "cnn.epochs"),
        ("cnn: {enabled: 'yes'}\n", "cnn.enabled"),
        ("seed: [1]\n", "seed"),
        ("split: {test_fraction: '0.2'}\n", "split.test_fraction"),
        ("contours: {variants: exact}\n", "contours.variants"),
        ("contours: {radiomics_variants: exact}\n", "contours.radiomics_variants"),
        ("bundle_id: 5\n", "bundle_id"),
        ("title: null\n", "title"),
        ("split: {test_manifest: 3}\n", "split.test_manifest"),
        ("cnn: 5\n", "cnn"),
    ],
)
def test_wrong_types_are_named(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("model: {fusion: late}\n", "model.fusion"),
        ("model: {rad_classifier: deepforest}\n", "model.rad_classifier"),
        ("selection: {test: chisq}\n", "selection.test"),
        ("cnn: {arch: vgg16}\n", "cnn.arch"),
        ("split: {folds: 1}\n", "split.folds"),
        ("split: {test_fraction: 0.95}\n", "split.test_fraction"),
        ("cnn: {input_size: 16}\n", "cnn.input_size"),
        ("cnn: {ema_decay: 1.0}\n", "cnn.ema_decay"),
        ("contours: {variants: [ellipse]}\n", "contours.variants"),
        ("contours: {variants: [exact, blur]}\n", "contours.variants"),
        ("contours: {radiomics_variants: [jitter]}\n", "contours.radiomics_variants"),
        (
            "contours: {variants: [exact, jitter], radiomics_variants: [exact, ellipse]}\n",
            "contours.radiomics_variants",
        ),
        ("model: {stacking_inputs: rank}\n", "model.stacking_inputs"),
        ("model: {fusion_variants: [ellipse]}\n", "model.fusion_variants"),
        ("model: {fusion_variants: [exact, erode1]}\n", "model.fusion_variants"),
        ("model: {pca_components: 0}\n", "model.pca_components"),
        ("cnn: {pretrain: {epochs: -1}}\n", "cnn.pretrain.epochs"),
        ("cnn: {pretrain: {epochs: 2, variants: [exact, erode1]}}\n", "cnn.pretrain.variants"),
        ("cnn: {pretrain: {epochs: 2, variants: []}}\n", "cnn.pretrain.variants"),
        ("cnn: {pretrain: {epochs: 2, temperature: 0}}\n", "cnn.pretrain"),
        ("cnn: {pretrain: {epochs: 2}, init_weights: w.safetensors}\n", "cnn.pretrain"),
        ("cnn: {pretrain: {epoch: 2}}\n", "cnn.pretrain"),
    ],
)
def test_bad_values_are_named(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        _load(tmp_path, text)


def test_bad_choice_lists_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "model: {fusion: late}\n")
    for allowed in CHOICES[("model", "fusion")]:
        assert allowed in str(info.value)


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        ("[age]", r"clinical\.variables\[0\]"),
        ("[{type: numeric}]", r"clinical\.variables\[0\]"),
        ("[{name: age, type: numeric, units: years}]", r"clinical\.variables\[0\].*units"),
        ("[{name: age, type: number}]", r"clinical\.variables\[0\].*type"),
        (
            "[{name: age, type: numeric}, {name: birads, type: categorical, allowed: []}]",
            r"clinical\.variables\[1\]",
        ),
    ],
)
def test_bad_clinical_variables_fail_before_training(tmp_path, variables, needle):
    with pytest.raises(ConfigError, match=needle):
        _load(tmp_path, f"clinical:\n  variables: {variables}\n")


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read training config"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        _load(tmp_path, "cnn: {epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"top level.*mapping"):
        _load(tmp_path, "- a list\n- not a mapping\n")


@pytest.mark.parametrize("source", ["defaults", "tiny"])
def test_yaml_round_trip(tmp_path, source):
    config = TrainConfig() if source == "defaults" else _load(tmp_path, TINY_CONFIG)
    data = config_to_dict(config)
    # Plain data only: the bundle manifest records it as JSON.
    text = yaml.safe_dump(data, sort_keys=False)
    again = _load(tmp_path, text)
    assert again == config
    # Exact: plain values dumped to YAML and parsed back (floats round-trip).
    assert config_to_dict(again) == data


def test_round_trip_keeps_every_section():
    data = config_to_dict(TrainConfig())
    sections = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if dataclasses.is_dataclass(getattr(TrainConfig(), f.name))
    ]
    assert set(sections) <= set(data)
    assert all(isinstance(data[s], dict) for s in sections)


def test_cnn_settings_reach_the_network_training(tmp_path):
    from DLRPredictorLib.training.crossfit import cnn_train_config

    config = _load(tmp_path, "cnn: {ema_decay: 0.99, weight_decay: 0.001, patience: 3}\n")
    cnn = cnn_train_config(config, seed=5)
    # Parsed YAML numbers, passed on unchanged: exact.
    assert (cnn.ema_decay, cnn.weight_decay, cnn.patience, cnn.seed) == (0.99, 0.001, 3, 5)


def test_radiomics_variants_default_to_every_contour_variant(tmp_path):
    every = _load(tmp_path, "contours: {variants: [exact, ellipse, jitter]}\n").contours
    assert every.radiomics_variants is None
    assert every.for_radiomics() == ["exact", "ellipse", "jitter"]
    text = "contours: {variants: [exact, ellipse, jitter], radiomics_variants: [exact, jitter]}\n"
    some = _load(tmp_path, text)
    assert some.contours.for_radiomics() == ["exact", "jitter"]


def test_pretraining_is_off_by_default_and_read_when_given(tmp_path):
    assert _load(tmp_path, "seed: 1\n").cnn.pretrain.epochs == 0
    pre = _load(tmp_path, "cnn: {pretrain: {epochs: 3, batch_size: 64, variants: [exact]}}\n").cnn.pretrain
    # Exact: parsed literals and a default.
    assert (pre.epochs, pre.batch_size, pre.variants, pre.temperature) == (3, 64, ["exact"], 0.2)
