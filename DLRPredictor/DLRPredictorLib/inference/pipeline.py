"""The frozen fusion steps of a bundle: signatures Rad, DL, DLR, the combined model and nomogram.

Stored as ``pipeline.json`` (settings, fitted selectors, coefficients, cutoffs) plus
``pipeline.npz`` (the classifiers' arrays from ``models.persistence``; loaded with allow_pickle=False)
and the CNN as ``cnn.safetensors``. Nothing in a bundle executes code when loaded.

Model names used everywhere (results columns ``score_<name>``): ``rad`` (radiomics signature),
``dl`` (deep signature on PCA of the ResNet average-pool vector), ``dlr`` (fusion of both, image
only) and ``combined`` (DLR score + clinical predictors, drawn as the nomogram).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.compat import zip_strict
from ..base.errors import BundleError, ClinicalValueError, ConfigError, LesionError
from ..models import persistence
from ..models.classifiers import proba_to_logit
from ..models.clinical_variables import ClinicalVariable, is_missing
from ..models.combat import ComBat, describe
from ..models.contour_gate import GATE_COLUMNS, ContourGatedFusion
from ..models.fusion import EnsembleFusion, StackingFusion
from ..models.nomogram import Nomogram
from ..models.recalibration import Recalibration
from ..models.signatures import DeepFeatureReducer, Signature
from .results import PipelineOutput

PIPELINE_FORMAT = 1
DISPLAY = {"rad": "Rad", "dl": "DL", "dlr": "DLR", "combined": "Combined (nomogram)"}


@dataclass(frozen=True)
class FeatureRow:
    """One case's feature values with their column names: a numpy row, so no pandas is needed."""

    values: np.ndarray  # (1, p) float64, the layout the signatures' predict_proba takes
    columns: list[str]

    def take(self, names: Sequence[str]) -> np.ndarray:
        """The values of the named columns, in that order (1-D)."""
        index = {c: i for i, c in enumerate(self.columns)}
        return self.values[0, [index[n] for n in names]]


def _pack_estimator(prefix: str, estimator: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    spec, arrs = persistence.dump_model(estimator)
    for k, v in arrs.items():
        arrays[f"{prefix}/{k}"] = v
    return {"spec": spec, "arrays": sorted(arrs)}


def _unpack_estimator(prefix: str, packed: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    try:
        arrs = {k: arrays[f"{prefix}/{k}"] for k in packed["arrays"]}
    except KeyError as exc:
        raise BundleError(f"pipeline.npz lacks the array {exc} of model '{prefix}'") from exc
    return persistence.load_model(packed["spec"], arrs)


def _signature_to(prefix: str, sig: Signature, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"signature": sig.to_spec(), "estimator": _pack_estimator(prefix, sig.estimator, arrays)}


def _signature_from(prefix: str, data: dict[str, Any], arrays: dict[str, np.ndarray]) -> Signature:
    return Signature.from_spec(data["signature"], _unpack_estimator(prefix, data["estimator"], arrays))


class FrozenPipeline:
    """Fitted steps from feature vectors to probabilities; built by training, read from bundles."""

    def __init__(
        self,
        *,
        radiomics_parameters: dict[str, Any],
        radiomics_columns: list[str],
        rad: Signature,
        dl: Signature | None,
        reducer: DeepFeatureReducer | None,
        dlr: Signature | StackingFusion | EnsembleFusion | ContourGatedFusion | None,
        combined: Any = None,
        nomogram: Nomogram | None = None,
        clinical_variables: list[ClinicalVariable] | None = None,
        cutoffs: dict[str, float],
        default_model: str,
        ood: dict[str, Any],
        pixel_units: bool = True,
        crop: dict[str, Any] | None = None,
        cnn: dict[str, Any] | None = None,
        dlr_logit_range: tuple[float, float] | None = None,
        calibration: Recalibration | None = None,
        harmonisation: ComBat | None = None,
    ) -> None:
        self.radiomics_parameters = radiomics_parameters
        self.radiomics_columns = radiomics_columns
        self.rad, self.dl, self.reducer, self.dlr = rad, dl, reducer, dlr
        self.combined, self.nomogram = combined, nomogram
        self.clinical_variables = list(clinical_variables or [])
        self.cutoffs = dict(cutoffs)
        self.default_model = default_model
        self.ood = ood
        self.pixel_units = pixel_units
        self.crop = crop or {}
        self.cnn = cnn or {}
        self.dlr_logit_range = dlr_logit_range
        self._model_columns: list[str] | None = None  # model_radiomics_columns, once
        #: Recalibration of the image-only model's probability (None: reported as the model gives it)
        self.calibration = calibration
        #: ComBat of the radiomics by site (None: the features are used as extracted)
        self.harmonisation = harmonisation

    # -- facts ---------------------------------------------------------------------------------
    @property
    def uses_cnn(self) -> bool:
        return self.dl is not None

    @property
    def image_only_model(self) -> str:
        return "dlr" if self.dlr is not None else "rad"

    @property
    def signature_names(self) -> list[str]:
        names = ["rad"]
        if self.dl is not None:
            names.append("dl")
        if self.dlr is not None:
            names.append("dlr")
        if self.combined is not None:
            names.append("combined")
        return names

    def crop_spec(self) -> Any:
        from ..inputs.crops import CropSpec

        return CropSpec(**self.crop)

    def load_deep_model(self, bundle: Any) -> Any:
        """The network from the bundle's verified safetensors bytes (numpy engine)."""
        from ..deep.deep_model import DeepModel

        return DeepModel.from_bundle(bundle, self.cnn)

    def dl_signature_affine(self) -> Any:
        """The DL signature's logit as ``PooledAffine`` of the pooled CNN features, or None.

        None when there is no DL signature or its classifier is not linear (then no exact
        gradient exists and the heatmap falls back to the CNN head, see ``inference.predictor``).
        """
        if self.dl is None or self.reducer is None:
            return None
        from ..models.signature_linear import dl_signature_affine

        return dl_signature_affine(self.reducer, self.dl)

    # -- clinical --------------------------------------------------------------------------------
    def check_clinical(self, clinical: Mapping[str, Any], case: str = "") -> dict[str, Any]:
        """Validate clinical values by the bundle's declared variables.

        Args:
            clinical: raw values by variable name.
            case: case name used in messages.

        Returns:
            The checked values of the variables that were given (values that ``is_missing`` reads
            as not given, e.g. empty or "unknown" cells, are dropped).

        Raises:
            ClinicalValueError: not a mapping, a name that is not text or unknown, a
                non-numeric or out-of-range value.
        """
        where = f" for case {case}" if case else ""
        known = {v.name: v for v in self.clinical_variables}
        names = ", ".join(known) or "none"
        if not isinstance(clinical, Mapping):
            raise ClinicalValueError(
                f"clinical values{where} must be a dict of variable name -> value (e.g. {{'age': 54}}; "
                f"this model knows {names}), got {type(clinical).__name__} {clinical!r:.40}"
            )
        not_text = [k for k in clinical if not isinstance(k, str)]
        if not_text:
            raise ClinicalValueError(
                f"clinical variable names must be text{where}, got {not_text[0]!r}: this model knows {names}"
            )
        unknown = [k for k in clinical if k not in known]
        if unknown:
            raise ClinicalValueError(
                f"unknown clinical variable(s) {', '.join(unknown)}{where}: this model knows {names}; "
                "rename the value to one of these or leave it out"
            )
        out = {}
        for name, raw in clinical.items():
            if not is_missing(raw):
                out[name] = known[name].check(raw, where=where)
        return out

    # -- prediction ------------------------------------------------------------------------------
    def model_radiomics_columns(self) -> list[str]:
        """The radiomics columns the model reads: selected by a signature or used by the distance.

        Every radiomics column when a signature has no selector (it reads them all).
        """
        if self._model_columns is None:
            names = self.radiomics_columns + (self.reducer.names if self.reducer is not None else [])
            used = set(self._used_columns(FeatureRow(np.zeros((1, len(names))), names)))
            self._model_columns = [c for c in self.radiomics_columns if c in used]
        return list(self._model_columns)

    def model_radiomics_parameters(self) -> dict[str, Any]:
        """The radiomics parameters with only the features the model reads enabled.

        For callers that need the prediction and not the feature table (the batch without scenes):
        pyradiomics computes each enabled feature from the same image, mask and matrices whatever
        else is enabled, so the features the model reads have the same values (test_model_features).
        Every other setting is the parameter file's.
        """
        params = dict(self.radiomics_parameters)
        classes: dict[str, list[str]] = {}
        for column in self.model_radiomics_columns():
            _image_type, feature_class, name = column.split("_", 2)
            classes.setdefault(feature_class, []).append(name)
        params["featureClass"] = {k: sorted(set(v)) for k, v in classes.items()}
        return params

    def feature_row(self, features: dict[str, float], deep_vector: np.ndarray | None) -> FeatureRow:
        """The radiomics columns and (if any) the deep PCA columns of one case.

        Raises:
            BundleError: the extraction lacks a radiomics column that the model was trained on.
        """
        read = set(self.model_radiomics_columns())
        missing = [c for c in self.radiomics_columns if c not in features and c in read]
        if missing:
            raise BundleError(
                f"the radiomics extraction gave no value for {missing[0]} (and {len(missing) - 1} more) "
                "that the model needs: parameter file and model do not match"
            )
        # A column no signature and no distance reads may be absent (an extraction limited to
        # model_radiomics_parameters): the row then simply lacks it.
        columns = [c for c in self.radiomics_columns if c in features]
        row = np.fromiter((features[c] for c in columns), dtype=float, count=len(columns))[None]
        if self.reducer is not None and deep_vector is not None:
            pcs = self.reducer.transform(np.asarray(deep_vector, dtype=float)[None])
            row = np.concatenate([row, pcs], axis=1)
            columns += self.reducer.names
        return FeatureRow(row, columns)

    def predict(
        self,
        features: dict[str, float],
        deep_vector: np.ndarray | None,
        clinical: dict[str, Any],
        site: str | None = None,
    ) -> PipelineOutput:
        """Scores of every signature and the answer of the default (or image-only) model.

        ``site``: the case's value of the harmonisation column (e.g. its scanner); read only when
        the bundle harmonises. A site the training data lacked, or none, leaves the radiomics
        unharmonised, with a warning and a ``model_used`` that says so.

        Raises:
            LesionError: a feature that a signature or the distance to the training data uses is
                NaN or infinite for this lesion.
        """
        row = self.feature_row(features, deep_vector)
        harmonised, site_warning = "", None
        if self.harmonisation is not None:
            row = FeatureRow(self.harmonisation.transform(row.values, row.columns, [site])[0], row.columns)
            harmonised, site_warning = describe(self.harmonisation, site)
        self._check_used_features(row)
        scores: dict[str, float] = {"rad": float(self.rad.predict_proba(row.values, row.columns)[0])}
        if self.dl is not None:
            scores["dl"] = float(self.dl.predict_proba(row.values, row.columns)[0])
        if self.dlr is not None:
            scores["dlr"] = float(self.dlr.predict_proba(row.values, row.columns)[0])
        image_model = self.image_only_model
        contributions, scale = self._image_contributions(row)
        points: dict[str, float] = {}
        total = None
        warnings: list[str] = []
        model = image_model
        if self.combined is not None:
            needed = [v.name for v in self.clinical_variables if self._combined_uses(v)]
            missing = [n for n in needed if n not in clinical]
            if not missing:
                x = self.encode_clinical(clinical)
                scores["combined"] = float(self.combined.predict_proba([scores[image_model]], x)[0])
                contributions = self._combined_contributions(scores[image_model], x) + contributions
                scale = "logit"
                model = "combined"
                if self.nomogram is not None:
                    values = {
                        self.combined.score_name: float(proba_to_logit(np.array([scores[image_model]]))[0])
                    }
                    values.update({k: clinical[k] for k in needed})
                    points = {k: float(v) for k, v in self.nomogram.points(values).items()}
                    total = float(sum(points.values()))
            else:
                warnings.append(
                    f"clinical value(s) {', '.join(missing)} not given: the image-only "
                    f"{DISPLAY[image_model]} model answered"
                )
        if site_warning:
            warnings.append(site_warning)
        gate_note = self._gate_warning(row)
        if gate_note:
            warnings.append(gate_note)
        distance = self._ood_distance(row)
        ood = bool(distance > float(self.ood.get("threshold", math.inf)))
        if ood:
            warnings.append(
                f"the lesion's features are far from the training data (distance {distance:.2f} > "
                f"limit {float(self.ood['threshold']):.2f}): the prediction may be unreliable"
            )
        label = DISPLAY[model] + ("" if model == "combined" else " (image only)") + harmonised
        probability, cutoff, uncalibrated = scores[model], float(self.cutoffs[model]), None
        if self.calibration is not None and self.calibration.model == model:
            uncalibrated = probability
            probability = float(self.calibration.apply(np.array([probability]))[0])
            cutoff = self.calibrated_cutoff(model)
            label += f", recalibrated ({self.calibration.method})"
        return PipelineOutput(
            probability=probability,
            probability_uncalibrated=uncalibrated,
            cutoff=cutoff,
            model_used=label,
            signature_scores=scores,
            contributions=contributions,
            contribution_scale=scale,
            nomogram_points=points,
            total_points=total,
            ood_distance=distance,
            out_of_distribution=ood,
            warnings=warnings,
        )

    def _gate_warning(self, row: FeatureRow) -> str | None:
        """What the contour gate did to the DLR score of a smooth, ellipse-like outline, if anything."""
        if not isinstance(self.dlr, ContourGatedFusion):
            return None
        detail = float(self.dlr.detail(row.values, row.columns)[0])
        w = float(self.dlr.weight(np.array([detail]))[0])
        if w >= 1.0:
            return None
        return (
            f"the outline has little detail beyond its ellipse (detail {detail:.3f}; training outlines "
            f"from {self.dlr.high:.3f}): shape features do not hold on such an outline, so the DLR score "
            f"rests {1.0 - w:.0%} on the {self.dlr.fallback_name} signature alone; an exact outline "
            "lets the radiomics count"
        )

    def calibrated_cutoff(self, model: str) -> float:
        """The frozen cutoff of ``model`` on the scale of its reported probability.

        With a recalibration step of that model, the step's image of the frozen cutoff: a monotone
        step keeps every call (Platt: strictly increasing, the same calls exactly; isotonic: a case
        in the cutoff's flat step is called positive with it).
        """
        cut = float(self.cutoffs[model])
        if self.calibration is None or self.calibration.model != model:
            return cut
        return float(self.calibration.apply(np.array([cut]))[0])

    def _used_columns(self, row: FeatureRow) -> list[str]:
        """The columns any signature selects, or that the distance to the training data uses."""
        sigs = [self.rad, self.dl]
        if isinstance(self.dlr, Signature):
            sigs.append(self.dlr)
        elif self.dlr is not None:
            sigs += list(self.dlr.members)
        cols = list(self.ood.get("columns") or [])
        if isinstance(self.dlr, ContourGatedFusion):
            cols += list(GATE_COLUMNS)
        for sig in sigs:
            selector = getattr(sig, "selector", None) if sig is not None else None
            if sig is not None and selector is None:
                return list(row.columns)
            if selector is not None:
                cols += list(selector.selected_names)
        present = set(row.columns)
        return [c for c in dict.fromkeys(cols) if c in present]

    def _check_used_features(self, row: FeatureRow) -> None:
        used = self._used_columns(row)
        values = row.take(used)
        undefined = [c for c, v in zip_strict(used, values) if not math.isfinite(v)]
        if undefined:
            more = f" (and {len(undefined) - 1} more)" if len(undefined) > 1 else ""
            raise LesionError(
                f"the feature {undefined[0]}{more} that the model uses is undefined for this lesion "
                "(NaN or infinite: a lesion too small, too thin or too uniform for texture analysis); "
                "check the segmentation and the image"
            )

    def _combined_uses(self, var: ClinicalVariable) -> bool:
        return any(c in self.combined.names for c in var.encoded_names())

    def encode_clinical(self, clinical: dict[str, Any]) -> np.ndarray:
        """(1, k) design row of the combined model from checked clinical values.

        Raises:
            ClinicalValueError: a value the combined model needs is missing.
        """
        cols: dict[str, float] = {}
        for var in self.clinical_variables:
            if self._combined_uses(var):
                if var.name not in clinical:
                    raise ClinicalValueError(f"the combined model needs a value for {var.display}")
                cols.update(zip_strict(var.encoded_names(), var.encode(clinical[var.name])))
        try:
            return np.array([[cols[n] for n in self.combined.names]], dtype=float)
        except KeyError as exc:
            raise ClinicalValueError(f"the combined model needs clinical value {exc}") from exc

    def _combined_contributions(self, score: float, x: np.ndarray) -> list[tuple[str, float]]:
        terms = self.combined.contribution_terms([score], x)
        return [(f"combined: {c}", float(v[0])) for c, v in terms.items()]

    def _signature_terms(self, name: str, sig: Signature, row: FeatureRow) -> list[tuple[str, float]] | None:
        """Exact per-feature terms of a signature's logit (linear / tree-native models), else None."""
        est = sig.estimator
        selector = sig.selector
        if not hasattr(est, "contributions") or selector is None:
            return None
        z = selector.transform(row.values, row.columns)
        contrib = est.contributions(z)
        if contrib is None or getattr(est, "contribution_scale", "logit") != "logit":
            return None
        terms = np.asarray(contrib)[0]
        names = [*selector.selected_names, "intercept"]
        return [(f"{name}: {n}", float(v)) for n, v in zip_strict(names, terms)]

    def _image_contributions(self, row: FeatureRow) -> tuple[list[tuple[str, float]], str]:
        terms: list[tuple[str, float]] = []
        for name, sig in (("rad", self.rad), ("dl", self.dl)):
            if sig is not None:
                t = self._signature_terms(name, sig, row)
                if t:
                    terms += t
        gate = self.dlr if isinstance(self.dlr, ContourGatedFusion) else None
        stacking = gate.fusion if gate is not None else self.dlr
        if isinstance(stacking, StackingFusion):
            probs = np.array([m.predict_proba(row.values, row.columns)[0] for m in stacking.members])
            inputs = stacking.meta_inputs(probs)
            fused = [
                ("dlr: intercept", float(stacking.intercept)),
                *[
                    (f"dlr: {m.name} score", float(c * z))
                    for m, c, z in zip_strict(stacking.members, stacking.coef, inputs)
                ],
            ]
            if gate is not None:
                # the gated logit is w * (the stacking's terms) + (1 - w) * the fallback's logit
                w = float(gate.weight(gate.detail(row.values, row.columns))[0])
                alone = float(proba_to_logit(probs[gate.fallback : gate.fallback + 1])[0])
                fused = [(n, w * v) for n, v in fused]
                fused.append((f"dlr: {gate.fallback_name} alone (outline without detail)", (1.0 - w) * alone))
            terms = [*fused, *terms]
        elif isinstance(self.dlr, Signature):
            t = self._signature_terms("dlr", self.dlr, row)
            terms = (t or []) + terms
        return terms, "logit"

    def _ood_distance(self, row: FeatureRow) -> float:
        cols = self.ood.get("columns") or []
        if not cols:
            return 0.0
        x = row.take(cols)
        z = (x - np.asarray(self.ood["mean"])) / np.asarray(self.ood["std"])
        return float(np.sqrt(np.mean(z * z)))

    # -- persistence -----------------------------------------------------------------------------
    def to_files(self) -> dict[str, bytes]:
        """pipeline.json and pipeline.npz contents (the CNN is stored separately)."""
        arrays: dict[str, np.ndarray] = {}
        doc: dict[str, Any] = {
            "format": PIPELINE_FORMAT,
            "radiomics_columns": self.radiomics_columns,
            "pixel_units": self.pixel_units,
            "crop": self.crop,
            "cnn": self.cnn,
            "default_model": self.default_model,
            "cutoffs": self.cutoffs,
            "ood": self.ood,
            "rad": _signature_to("rad", self.rad, arrays),
            "dl": _signature_to("dl", self.dl, arrays) if self.dl is not None else None,
            "reducer": self.reducer.to_spec() if self.reducer is not None else None,
            "dlr": self._dlr_to(arrays),
            "combined": self.combined.to_spec() if self.combined is not None else None,
            "nomogram": self.nomogram.to_spec() if self.nomogram is not None else None,
            "clinical_variables": [v.to_spec() for v in self.clinical_variables],
            "dlr_logit_range": list(self.dlr_logit_range) if self.dlr_logit_range else None,
        }
        if self.calibration is not None:  # absent, not null, without one: older bundles read the same
            doc["calibration"] = self.calibration.to_spec()
        if self.harmonisation is not None:  # absent without one, as the calibration block
            doc["harmonisation"] = self.harmonisation.to_spec()
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # stubs: a key could be allow_pickle
        return {"pipeline.json": json.dumps(doc, indent=1).encode(), "pipeline.npz": buf.getvalue()}

    def _dlr_to(self, arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
        if self.dlr is None:
            return None
        if isinstance(self.dlr, Signature):
            return {"kind": "early", **_signature_to("dlr", self.dlr, arrays)}
        members = [_signature_to(f"dlr.member{i}", m, arrays) for i, m in enumerate(self.dlr.members)]
        if isinstance(self.dlr, ContourGatedFusion):  # "gate" absent without one: older bundles read the same
            fusion = self.dlr.fusion.to_spec()
            return {"kind": "fusion", "fusion": fusion, "members": members, "gate": self.dlr.gate_spec()}
        return {"kind": "fusion", "fusion": self.dlr.to_spec(), "members": members}

    @classmethod
    def from_bundle(cls, bundle: Any) -> FrozenPipeline:
        """Rebuild from a VerifiedBundle (its bytes were checked against the manifest)."""
        doc = bundle.read_json("pipeline.json")
        if not isinstance(doc, dict):  # valid JSON, but no object (a forged or damaged file)
            raise BundleError(
                f"pipeline.json holds a JSON {type(doc).__name__}, not an object; rebuild the bundle"
            )
        if doc.get("format") != PIPELINE_FORMAT:
            raise BundleError(
                f"pipeline.json has format {doc.get('format')}; this DLRPredictor reads {PIPELINE_FORMAT}"
            )
        arrays = bundle.read_arrays("pipeline.npz")
        params_name = bundle.manifest.get("extra", {}).get("radiomics_parameters", "radiomics.yaml")
        if not isinstance(params_name, str):  # the schema leaves "extra" free-form
            raise BundleError(
                f"manifest.json extra.radiomics_parameters must name a bundle file, not a JSON "
                f"{type(params_name).__name__}; rebuild the bundle"
            )
        try:
            return cls._from_doc(doc, arrays, bundle.read_yaml(params_name))
        # Any shape pipeline.json can take that the writer never gives (a list for an object, a
        # short list) is the bundle's fault: one BundleError line, not a traceback.
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ClinicalValueError):
                raise
            raise BundleError(
                f"pipeline.json is inconsistent ({type(exc).__name__}: {exc}); rebuild the bundle"
            ) from exc

    @classmethod
    def _from_doc(
        cls, doc: dict[str, Any], arrays: dict[str, np.ndarray], params: dict[str, Any]
    ) -> FrozenPipeline:
        dlr_doc = doc.get("dlr")
        dlr: Any = None
        if dlr_doc and dlr_doc["kind"] == "early":
            dlr = _signature_from("dlr", dlr_doc, arrays)
        elif dlr_doc:
            members = [_signature_from(f"dlr.member{i}", m, arrays) for i, m in enumerate(dlr_doc["members"])]
            kind = dlr_doc["fusion"]["kind"]
            fusion_cls = StackingFusion if kind == "StackingFusion" else EnsembleFusion
            dlr = fusion_cls.from_spec(dlr_doc["fusion"], members)
            if dlr_doc.get("gate") is not None:
                try:
                    dlr = ContourGatedFusion.from_spec(dlr_doc["gate"], dlr)
                except ConfigError as exc:
                    raise BundleError(f"pipeline.json: {exc}; rebuild the bundle") from exc
        from ..models.combined import CombinedModel

        calibration = Recalibration.from_spec(doc["calibration"]) if "calibration" in doc else None
        if calibration is not None and calibration.model not in doc["cutoffs"]:
            raise BundleError(
                f"pipeline.json recalibrates model '{calibration.model}', which the bundle does not have; "
                "rebuild the bundle"
            )
        return cls(
            radiomics_parameters=params,
            radiomics_columns=list(doc["radiomics_columns"]),
            rad=_signature_from("rad", doc["rad"], arrays),
            dl=_signature_from("dl", doc["dl"], arrays) if doc.get("dl") else None,
            reducer=DeepFeatureReducer.from_spec(doc["reducer"]) if doc.get("reducer") else None,
            dlr=dlr,
            combined=CombinedModel.from_spec(doc["combined"]) if doc.get("combined") else None,
            nomogram=Nomogram.from_spec(doc["nomogram"]) if doc.get("nomogram") else None,
            clinical_variables=[ClinicalVariable.from_spec(v) for v in doc.get("clinical_variables", [])],
            cutoffs={k: float(v) for k, v in doc["cutoffs"].items()},
            default_model=doc["default_model"],
            ood=doc.get("ood") or {},
            pixel_units=bool(doc.get("pixel_units", True)),
            crop=doc.get("crop") or {},
            cnn=doc.get("cnn") or {},
            dlr_logit_range=tuple(doc["dlr_logit_range"]) if doc.get("dlr_logit_range") else None,
            calibration=calibration,
            harmonisation=_harmonisation(doc),
        )


def _harmonisation(doc: dict[str, Any]) -> ComBat | None:
    """The checked harmonisation block of pipeline.json, or None without one."""
    if "harmonisation" not in doc:
        return None
    step = ComBat.from_spec(doc["harmonisation"])
    unknown = sorted(set(step.features) - set(doc["radiomics_columns"]))
    if unknown:
        raise BundleError(
            f"pipeline.json harmonisation block names {unknown[0]} (and {len(unknown) - 1} more), "
            "which is not a radiomics column of the bundle; rebuild the bundle"
        )
    return step
