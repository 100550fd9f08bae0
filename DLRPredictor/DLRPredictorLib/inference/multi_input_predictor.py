"""One case with several named inputs through a verified multi-input bundle.

Each input the case has goes through its own one-input bundle (``Predictor``: lesion slice,
radiomics, deep features, its Rad / DL / DLR scores and its heatmap on its own image grid). The
answer comes from the model the bundle trained for exactly the inputs given
(``VerifiedMultiInputBundle.model_for``): the fusion of their signature probabilities when there
are two or more, that input's own image-only model when there is one. ``model_used`` says which,
and a warning names the declared inputs that were not given. numpy only, as every prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.errors import BundleError, InputError, LesionError
from ..deep.heatmap import DEFAULT_HEATMAP
from ..models.fusion import EnsembleFusion, StackingFusion
from ..models.signatures import Signature
from .pipeline import _signature_from
from .predictor import Predictor
from .results import CasePrediction

FUSION_DISPLAY = {"StackingFusion": "stacking", "EnsembleFusion": "ensemble"}


@dataclass
class MultiInputPrediction:
    """What a multi-input bundle says about one case.

    Attributes:
        probability: probability of the positive class from the model used.
        cutoff: that model's frozen cutoff.
        label: the predicted class name.
        predicted_positive: probability >= cutoff.
        model_used: which model answered, e.g. "US_l + US_r (stacking of US_l:rad, US_r:rad)" or
            "US_l only: Rad (image only)".
        inputs_used: the inputs the answer rests on, in declaration order.
        signature_scores: "INPUT:signature" -> probability, for every input given.
        per_input: input name -> that input's own prediction (features, heatmap, lesion slice).
        warnings: every warning, each input's prefixed with its name.
        provenance: bundle id and digest, the model used.
    """

    probability: float
    cutoff: float
    label: str
    predicted_positive: bool
    model_used: str
    inputs_used: list[str]
    signature_scores: dict[str, float]
    per_input: dict[str, CasePrediction] = field(repr=False)
    warnings: list[str]
    provenance: dict[str, str]


class MultiInputPredictor:
    """A verified multi-input bundle ready to predict."""

    def __init__(self, bundle: Any) -> None:
        """Args:
        bundle: a ``bundle.multi_input.VerifiedMultiInputBundle``.

        Raises:
            BundleError: a fusion spec that does not fit its input bundles' signatures.
        """
        self.bundle = bundle
        self.predictors = {name: Predictor(b) for name, b in bundle.bundles.items()}
        self._fusions: dict[tuple[str, ...], StackingFusion | EnsembleFusion] = {}
        self._early: dict[tuple[str, ...], Signature] = {}
        arrays = bundle.read_arrays()
        for m in bundle.models:
            if m.kind == "fusion":
                self._fusions[m.inputs] = self._fusion(m.fusion, m.members)
            elif m.kind == "early":
                try:
                    self._early[m.inputs] = _signature_from("early/" + "+".join(m.inputs), m.fusion, arrays)
                except (KeyError, TypeError, ValueError) as exc:
                    raise BundleError(
                        f"the early fusion of {', '.join(m.inputs)} cannot be read ({exc})"
                    ) from exc

    def _fusion(self, spec: dict[str, Any], members: tuple[str, ...]) -> StackingFusion | EnsembleFusion:
        sigs = []
        for member in members:
            name, _, signature = member.partition(":")
            sig = getattr(self.predictors[name].pipeline, signature, None)
            if sig is None:
                raise BundleError(
                    f"fusion member '{member}': the input bundle of '{name}' has no {signature} signature"
                )
            sigs.append(sig)
        cls = StackingFusion if spec["kind"] == "StackingFusion" else EnsembleFusion
        try:
            return cls.from_spec(spec, sigs)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the fusion of {', '.join(members)} cannot be read ({exc})") from exc

    @property
    def bundle_id(self) -> str:
        return str(self.bundle.id)

    @property
    def bundle_digest(self) -> str:
        return str(self.bundle.digest)

    @property
    def input_names(self) -> list[str]:
        return list(self.bundle.input_names)

    @property
    def title(self) -> str:
        return str(self.bundle.title)

    @property
    def bundle_trust(self) -> str:
        """Signed by a trusted or unknown key, or unsigned (its input bundles are pinned by digest)."""
        return str(self.bundle.trust)

    @property
    def clinical_variables(self) -> list[Any]:
        """None: a multi-input bundle has no clinical model."""
        return []

    def describe_inputs(self) -> str:
        """The declared inputs in one line, e.g. "US_l (US, required), US_r (US)"."""
        return ", ".join(
            f"{d.name} ({d.modality}{', required' if d.required else ''})" for d in self.bundle.inputs
        )

    @property
    def positive_class(self) -> str:
        return str(self.bundle.task["positive_class"])

    @property
    def negative_class(self) -> str:
        return str(self.bundle.task["negative_class"])

    def _early_probability(self, names: tuple[str, ...], per_input: Mapping[str, CasePrediction]) -> float:
        """The early-fusion signature's probability on the inputs' radiomics side by side."""
        values, columns = _early_row(names, per_input)
        try:
            probability = float(self._early[names].predict_proba(values, columns)[0])
        except KeyError as exc:
            raise LesionError(f"the early fusion of {', '.join(names)} lacks the feature {exc}") from exc
        if not np.isfinite(probability):
            raise LesionError(
                f"a radiomics feature the early fusion of {', '.join(names)} uses is not finite for this case"
            )
        return probability

    def score_columns(self) -> list[str]:
        """Every "INPUT:signature" score a prediction may carry, in declaration order."""
        return [f"{n}:{s}" for n in self.input_names for s in self.predictors[n].signature_names]

    def predict(
        self,
        inputs: Mapping[str, tuple[ImageVolume, np.ndarray]],
        *,
        heatmap: bool = True,
        heatmap_kind: str = DEFAULT_HEATMAP,
        case: str = "",
    ) -> MultiInputPrediction:
        """Predict one case from the inputs it has.

        Args:
            inputs: input name -> (image, lesion mask on that image's grid).
            heatmap: compute each input's Grad-CAM on its own image grid (bundles with a CNN).
            heatmap_kind: as ``Predictor.predict``.
            case: case name used in messages.

        Returns:
            The prediction.

        Raises:
            InputError: an input the bundle does not declare, none given, a required one missing,
                or an unusable image or lesion (the message names the input).
        """
        if not isinstance(inputs, Mapping):
            raise InputError(f"inputs must map input names to (image, mask), got {type(inputs).__name__}")
        names = self.input_names
        unknown = [n for n in inputs if n not in names]
        if unknown:
            raise InputError(
                f"input(s) {', '.join(map(str, unknown))} are not inputs of this bundle ({', '.join(names)})"
            )
        if not inputs:
            raise InputError(f"no input given; this bundle takes {', '.join(names)}")
        missing = [n for n in self.bundle.required_inputs if n not in inputs]
        if missing:
            raise InputError(f"{case or 'the case'} lacks the required input(s) {', '.join(missing)}")
        given = [n for n in names if n in inputs]
        per_input: dict[str, CasePrediction] = {}
        for n in given:
            volume, mask = inputs[n]
            try:
                per_input[n] = self.predictors[n].predict(
                    volume,
                    mask,
                    None,
                    heatmap=heatmap,
                    heatmap_kind=heatmap_kind,
                    case=f"{case} ({n})".strip(),
                )
            except InputError as exc:
                raise type(exc)(f"input '{n}': {exc}") from exc
        return self.combine(per_input)

    def combine(self, per_input: Mapping[str, CasePrediction]) -> MultiInputPrediction:
        """The answer of the model for exactly these inputs, from each input's own prediction."""
        given = [n for n in self.input_names if n in per_input]
        try:
            model = self.bundle.model_for(given)
        except BundleError as exc:
            raise InputError(str(exc)) from exc
        scores = {f"{n}:{s}": float(v) for n in given for s, v in per_input[n].signature_scores.items()}
        warnings: list[str] = []
        for n in given:
            warnings.extend(f"{n}: {w}" for w in per_input[n].warnings)
        warnings.extend(self.bundle.trust_warnings)
        absent = [n for n in self.input_names if n not in per_input]
        if model.kind == "input":
            only = per_input[model.inputs[0]]
            probability, cutoff = float(only.probability), float(only.cutoff)
            used = f"{model.inputs[0]} only: {only.model_used}"
        elif model.kind == "early":
            probability = self._early_probability(model.inputs, per_input)
            cutoff = float(model.cutoff if model.cutoff is not None else 0.5)
            used = f"{' + '.join(model.inputs)} (early fusion of {', '.join(model.members)})"
        else:
            fusion = self._fusions[model.inputs]
            P = np.array([[scores[m] for m in model.members]], dtype=float)
            probability = float(fusion.combine(P)[0])
            cutoff = float(model.cutoff if model.cutoff is not None else 0.5)
            kind = FUSION_DISPLAY[type(fusion).__name__]
            used = f"{' + '.join(model.inputs)} ({kind} of {', '.join(model.members)})"
        if absent:
            warnings.append(
                f"input(s) {', '.join(absent)} not given: the model trained for "
                f"{', '.join(model.inputs)} answered"
            )
        unused = [n for n in given if n not in model.inputs]
        if unused:
            warnings.append(
                f"input(s) {', '.join(unused)} given but not used: training had too few cases with "
                f"{', '.join(given)} together, so the model trained for {', '.join(model.inputs)} answered"
            )
        positive = probability >= cutoff
        return MultiInputPrediction(
            probability=probability,
            cutoff=cutoff,
            label=self.positive_class if positive else self.negative_class,
            predicted_positive=bool(positive),
            model_used=used,
            inputs_used=list(model.inputs),
            signature_scores=scores,
            per_input=dict(per_input),
            warnings=warnings,
            provenance={"bundle_id": self.bundle_id, "bundle_digest": self.bundle_digest, "model_used": used},
        )


def _early_row(
    names: tuple[str, ...], per_input: Mapping[str, CasePrediction]
) -> tuple[np.ndarray, list[str]]:
    """The inputs' radiomics side by side, columns ``NAME:feature`` (as the early signature trained)."""
    columns, values = [], []
    for n in names:
        for feature, value in per_input[n].features.items():
            columns.append(f"{n}:{feature}")
            values.append(float(value))
    return np.array([values], dtype=float), columns


def load_multi_input_predictor(
    path: str | Path, *, trusted_keys: str | Path | None = None
) -> MultiInputPredictor:
    """Verify and load a multi-input bundle.

    Raises:
        BundleError: the bundle or one of its input bundles is missing, damaged or refused.
    """
    from ..bundle.multi_input import load_multi_input_bundle

    return MultiInputPredictor(load_multi_input_bundle(path, trusted_keys=trusted_keys))


__all__ = ["MultiInputPrediction", "MultiInputPredictor", "load_multi_input_predictor"]
