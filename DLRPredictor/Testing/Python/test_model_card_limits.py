"""The model card's Limitations and selection wording follow the run's settings, not fixed text."""

from __future__ import annotations

from dataclasses import replace

from DLRPredictorLib.training.config import CnnConfig, SelectionSettings, SplitConfig, TrainConfig
from DLRPredictorLib.training.model_card import _selection_steps, limitation_lines


def test_limitations_say_what_validation_and_which_network_start_this_run_had() -> None:
    plain = TrainConfig()
    text = "\n".join(limitation_lines(plain))
    assert "no external validation" in text and "trained from scratch" in text

    external = TrainConfig(split=SplitConfig(external_dataset="BrEaST"), cnn=CnnConfig(init="imagenet"))
    text = "\n".join(limitation_lines(external))
    assert "externally validated on one cohort (BrEaST)" in text
    assert "fine-tuned from ImageNet weights" in text and "from scratch" not in text

    no_cnn = replace(plain, cnn=CnnConfig(enabled=False))
    assert not any("CNN" in line for line in limitation_lines(no_cnn))


def test_selection_wording_names_only_the_steps_that_run() -> None:
    assert _selection_steps(TrainConfig(selection=SelectionSettings(test="none", correlation="none"))) == (
        "LASSO with C by cross-validation"
    )
    full = _selection_steps(TrainConfig(selection=SelectionSettings(transform="quantile", alpha=0.01)))
    assert full.startswith("quantile-normal transform, then ttest (p < 0.01), then pearson |r| > 0.9")
    nothing = SelectionSettings(test="none", correlation="none", lasso=False)
    assert _selection_steps(TrainConfig(selection=nothing)) == "none (every feature)"
