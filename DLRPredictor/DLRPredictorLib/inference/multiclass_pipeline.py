"""The frozen steps of a K-class bundle: radiomics (and the network) -> signatures -> probabilities -> class.

A K-class bundle's manifest declares ``task.classes`` (in order) and ``task.decision_rule``
(``argmax``, or ``cutoffs`` with one frozen cutoff per class: the class predicted is the argmax of
``p_k - c_k``). Its ``pipeline.json`` has ``"kind": "multiclass"`` and holds the fitted
:class:`~..models.multiclass_signature.MulticlassSignature` as plain numbers, the distance
reference of the training data and the radiomics columns. A bundle trained with the network adds
a ``deep`` block: the CNN's file and architecture (``cnn.safetensors``, K outputs; only its
average-pooled features are read, by the numpy engine of ``deep``), the lesion crop, the K-class
DL signature on the principal components of those features (the reducer) and the fusion
(``models.multiclass_fusion``); the DLR's probabilities are then the answer and the Rad, DL and
DLR probabilities of every class are reported as ``signature_scores`` named ``SIGNATURE:CLASS``
(``score_rad:CLASS``, ``score_dl:CLASS``, ``score_dlr:CLASS`` in the results CSV). A K-class
bundle draws no heatmap. numpy only: the predict path imports no scikit-learn or torch.

:meth:`MulticlassPipeline.predict` answers a :class:`MulticlassOutput`: the probability of every
class, and as ``probability`` the probability of the predicted class (``cutoff`` is that class's
cutoff under a cutoff rule, NaN under argmax).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..base.errors import BundleError, ClinicalValueError, InputError, LesionError
from ..models.multiclass_fusion import MulticlassFusion
from ..models.multiclass_signature import MulticlassSignature, decide
from ..models.signatures import DeepFeatureReducer
from .results import PipelineOutput

PIPELINE_KIND = "multiclass"
PIPELINE_FORMAT = 1
RULES = ("argmax", "cutoffs")


@dataclass
class MulticlassOutput(PipelineOutput):
    """:class:`PipelineOutput` plus the probability of every class, in the declared order."""

    class_probabilities: dict[str, float] | None = None


class MulticlassPipeline:
    """Fitted K-class steps from radiomics to class probabilities and the predicted class."""

    #: What the predictor and the cohort layer ask of every pipeline: a K-class bundle has no
    #: clinical model, no ComBat and no recalibration step.
    harmonisation = None
    calibration = None

    @property
    def uses_cnn(self) -> bool:
        """Whether the bundle reads the network's pooled features (Rad + DL -> DLR)."""
        return self.dl is not None

    @property
    def signature_names(self) -> list[str]:
        """``SIGNATURE:CLASS`` for Rad, DL and DLR with the network; none for Rad alone (its class
        probabilities are the answer)."""
        if self.dl is None:
            return []
        return [f"{s}:{c}" for s in ("rad", "dl", "dlr") for c in self.classes]

    @property
    def cutoffs(self) -> dict[str, float]:
        """No binary signature cutoffs (the per-class ones are ``class_cutoffs``)."""
        return {}

    def __init__(
        self,
        *,
        radiomics_parameters: dict[str, Any],
        radiomics_columns: list[str],
        signature: MulticlassSignature,
        cutoffs: list[float] | None,
        ood: dict[str, Any],
        pixel_units: bool = True,
        dl: MulticlassSignature | None = None,
        reducer: DeepFeatureReducer | None = None,
        fusion: MulticlassFusion | None = None,
        cnn: dict[str, Any] | None = None,
        crop: dict[str, Any] | None = None,
    ) -> None:
        self.radiomics_parameters = radiomics_parameters
        self.radiomics_columns = list(radiomics_columns)
        self.signature = signature
        self.class_cutoffs = None if cutoffs is None else [float(c) for c in cutoffs]
        self.ood = ood
        self.pixel_units = pixel_units
        self.clinical_variables: list[Any] = []
        deep = (dl, reducer, fusion, cnn, crop)
        if any(p is not None for p in deep) and any(p is None for p in deep):
            raise BundleError(
                "a K-class pipeline with the network needs its DL signature, reducer, fusion, CNN and crop"
            )
        if dl is not None and dl.classes != signature.classes:
            raise BundleError("the K-class DL and Rad signatures name different classes; rebuild the bundle")
        self.dl, self.reducer, self.fusion = dl, reducer, fusion
        self.cnn, self.crop = cnn or {}, crop or {}

    @property
    def classes(self) -> list[str]:
        """The class names in the declared order."""
        return list(self.signature.classes)

    @property
    def rule(self) -> str:
        """``argmax`` or ``cutoffs``."""
        return "argmax" if self.class_cutoffs is None else "cutoffs"

    def model_radiomics_parameters(self) -> dict[str, Any]:
        """The full radiomics parameters (a K-class bundle extracts every feature of its file)."""
        return dict(self.radiomics_parameters)

    def check_clinical(self, clinical: Mapping[str, Any], case: str = "") -> dict[str, Any]:
        """A K-class bundle takes no clinical values: any given value is refused, naming it.

        Raises:
            ClinicalValueError: a clinical value was given, or not a mapping.
        """
        where = f" for case {case}" if case else ""
        if not isinstance(clinical, Mapping):
            raise ClinicalValueError(f"clinical values{where} must be a dict, got {type(clinical).__name__}")
        if clinical:
            raise ClinicalValueError(
                f"unknown clinical variable(s) {', '.join(map(str, clinical))}{where}: this K-class model "
                "takes no clinical values; leave them out"
            )
        return {}

    def decide(self, prob: np.ndarray) -> np.ndarray:
        """The frozen decision rule applied to (n, K) probabilities: class indices."""
        return decide(prob, self.class_cutoffs)

    @property
    def model_used(self) -> str:
        """What answers, as a result's ``model_used`` says it: "Rad (K-class, argmax)",
        "DLR (K-class, stacking, cutoffs)", ..."""
        if self.fusion is None:
            return f"Rad (K-class, {self.rule})"
        return f"DLR (K-class, {self.fusion.kind}, {self.rule})"

    @property
    def model_name(self) -> str:
        """The reported model: "dlr" with the network, else "rad"."""
        return "rad" if self.dl is None else "dlr"

    def predict_matrix(self, R: np.ndarray, columns: list[str], D: np.ndarray | None = None) -> np.ndarray:
        """(n, K) probabilities of the reported model for radiomics rows ``R`` (columns ``columns``)
        and, with the network, the rows' pooled features ``D``."""
        return self.signature_matrices(R, columns, D)[self.model_name]

    def signature_matrices(
        self, R: np.ndarray, columns: list[str], D: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Each signature's (n, K) probabilities: "rad", and with the network "dl" and "dlr".

        Raises:
            InputError: the bundle has the network and ``D`` is missing or of another length.
        """
        index = {c: i for i, c in enumerate(columns)}
        out = {
            "rad": self.signature.predict_proba(
                np.asarray(R, dtype=float)[:, [index[c] for c in self.signature.columns]]
            )
        }
        if self.dl is None:
            return out
        assert self.reducer is not None and self.fusion is not None
        if D is None or len(D) != len(out["rad"]):
            raise InputError("this K-class bundle reads the network's pooled features of every row")
        pcs = self.reducer.transform(np.asarray(D, dtype=float))
        out["dl"] = self.dl.predict_proba(pcs[:, [self.reducer.names.index(c) for c in self.dl.columns]])
        out["dlr"] = self.fusion.predict_proba([out["rad"], out["dl"]])
        return out

    # -- the network (a bundle trained with it) ------------------------------------------------
    def crop_spec(self) -> Any:
        """The lesion crop the network reads."""
        from ..inputs.crops import CropSpec

        return CropSpec(**self.crop)

    def load_deep_model(self, bundle: Any) -> Any:
        """The network from the bundle's verified safetensors bytes (numpy engine; K outputs)."""
        from ..deep.deep_model import DeepModel

        return DeepModel.from_bundle(bundle, self.cnn, num_classes=len(self.classes))

    def dl_signature_affine(self) -> None:
        """None: a K-class bundle draws no heatmap (see the module notes)."""
        return None

    def predict(
        self,
        features: dict[str, float],
        deep_vector: np.ndarray | None = None,
        clinical: dict[str, Any] | None = None,
        site: str | None = None,
    ) -> MulticlassOutput:
        """Every class's probability and the frozen rule's class for one lesion's radiomics.

        ``deep_vector``: the network's pooled features, read when the bundle has the network.
        ``clinical`` and ``site`` are accepted for the predictor's one call shape and unused (the
        bundle has no clinical model or harmonisation).

        Raises:
            BundleError: the extraction lacks a feature the model reads.
            LesionError: a feature the model or the distance reads is NaN or infinite.
        """
        cols = list(dict.fromkeys([*self.signature.columns, *(self.ood.get("columns") or [])]))
        missing = [c for c in cols if c not in features]
        if missing:
            raise BundleError(
                f"the radiomics extraction gave no value for {missing[0]} (and {len(missing) - 1} more) "
                "that the model needs: parameter file and model do not match"
            )
        bad = [c for c in cols if not math.isfinite(float(features[c]))]
        if bad:
            raise LesionError(
                f"radiomics feature {bad[0]} is not finite for this lesion (and {len(bad) - 1} more); "
                "check the mask covers the lesion"
            )
        x = np.array([float(features[c]) for c in self.signature.columns])
        D = None if deep_vector is None else np.asarray(deep_vector, dtype=float)[None]
        probs = {n: m[0] for n, m in self.signature_matrices(x[None], self.signature.columns, D).items()}
        p = probs[self.model_name]
        k = int(self.decide(p[None])[0])
        names = self.classes
        distance = self._ood_distance(features)
        ood = bool(distance > float(self.ood.get("threshold", math.inf)))
        warnings = []
        if ood:
            warnings.append(
                f"the lesion's features are far from the training data (distance {distance:.2f} > "
                f"limit {float(self.ood['threshold']):.2f}): the prediction may be unreliable"
            )
        return MulticlassOutput(
            probability=float(p[k]),
            probability_uncalibrated=None,
            cutoff=float("nan") if self.class_cutoffs is None else self.class_cutoffs[k],
            model_used=self.model_used,
            signature_scores={} if self.dl is None else _per_class(probs, names),
            contributions=(
                self.signature.contributions(x, k)
                if self.fusion is None
                else self.fusion.terms([probs["rad"], probs["dl"]], k)
            ),
            contribution_scale=(
                f"softmax input of {names[k]}"
                if self.fusion is None or self.fusion.kind == "stacking"
                else f"share of the averaged probability of {names[k]}"
            ),
            nomogram_points={},
            total_points=None,
            ood_distance=distance,
            out_of_distribution=ood,
            warnings=warnings,
            class_probabilities={n: float(v) for n, v in zip(names, p)},
        )

    def predicted_class(self, out: MulticlassOutput) -> str:
        """The class the frozen rule gives for an output's class probabilities."""
        probs = out.class_probabilities or {}
        p = np.array([probs[c] for c in self.classes])
        return self.classes[int(self.decide(p[None])[0])]

    def _ood_distance(self, features: Mapping[str, float]) -> float:
        cols = self.ood.get("columns") or []
        if not cols:
            return 0.0
        x = np.array([float(features[c]) for c in cols])
        z = (x - np.asarray(self.ood["mean"])) / np.asarray(self.ood["std"])
        return float(np.sqrt(np.mean(z * z)))

    # -- persistence -----------------------------------------------------------------------------
    def to_files(self) -> dict[str, bytes]:
        """pipeline.json's content (plain numbers; no array file)."""
        doc = {
            "format": PIPELINE_FORMAT,
            "kind": PIPELINE_KIND,
            "radiomics_columns": self.radiomics_columns,
            "pixel_units": self.pixel_units,
            "signature": self.signature.to_spec(),
            "decision_rule": {"rule": self.rule, "cutoffs": self.class_cutoffs},
            "ood": self.ood,
        }
        if self.dl is not None:  # absent for a radiomics-only bundle, whose file stays as it was
            assert self.reducer is not None and self.fusion is not None
            doc["deep"] = {
                "cnn": self.cnn,
                "crop": self.crop,
                "reducer": self.reducer.to_spec(),
                "dl": self.dl.to_spec(),
                "fusion": self.fusion.to_spec(),
            }
        return {"pipeline.json": json.dumps(doc, indent=1).encode()}

    @classmethod
    def from_bundle(cls, bundle: Any) -> MulticlassPipeline:
        """Rebuild from a VerifiedBundle whose manifest declares ``task.classes``.

        Raises:
            BundleError: pipeline.json is not a K-class pipeline, or disagrees with the manifest.
        """
        doc = bundle.read_json("pipeline.json")
        if (
            not isinstance(doc, dict)
            or doc.get("kind") != PIPELINE_KIND
            or doc.get("format") != PIPELINE_FORMAT
        ):
            raise BundleError("pipeline.json is not a K-class pipeline of a known format; rebuild the bundle")
        task = bundle.manifest["task"]
        params_name = bundle.manifest.get("extra", {}).get("radiomics_parameters", "radiomics.yaml")
        try:
            pipe = cls(
                radiomics_parameters=bundle.read_yaml(str(params_name)),
                radiomics_columns=[str(c) for c in doc["radiomics_columns"]],
                signature=MulticlassSignature.from_spec(doc["signature"]),
                cutoffs=doc["decision_rule"]["cutoffs"],
                ood=dict(doc["ood"]),
                pixel_units=bool(doc["pixel_units"]),
                **_deep_parts(doc.get("deep")),
            )
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(
                f"pipeline.json is inconsistent ({type(exc).__name__}: {exc}); rebuild the bundle"
            ) from exc
        rule = task.get("decision_rule", {})
        if (
            pipe.classes != list(task["classes"])
            or rule.get("rule") != pipe.rule
            or (
                pipe.class_cutoffs is not None
                and rule.get("cutoffs") != dict(zip(pipe.classes, pipe.class_cutoffs))
            )
        ):
            raise BundleError(
                "pipeline.json's classes or decision rule differ from those of manifest.json's task; "
                "rebuild the bundle"
            )
        if pipe.class_cutoffs is not None and len(pipe.class_cutoffs) != len(pipe.classes):
            raise BundleError("pipeline.json has not one cutoff per class; rebuild the bundle")
        return pipe


def _per_class(probs: Mapping[str, np.ndarray], classes: list[str]) -> dict[str, float]:
    """``{"SIGNATURE:CLASS": probability}`` of one case's signatures."""
    return {f"{s}:{c}": float(v) for s, p in probs.items() for c, v in zip(classes, p)}


def _deep_parts(deep: Any) -> dict[str, Any]:
    """The network's parts of a pipeline.json ``deep`` block (none when absent).

    Raises:
        BundleError: the block's classes differ from the signature's, or its CNN file is not named.
    """
    if deep is None:
        return {}
    dl = MulticlassSignature.from_spec(deep["dl"])
    fusion = MulticlassFusion.from_spec(deep["fusion"])
    cnn = dict(deep["cnn"])
    if fusion.classes != dl.classes or fusion.members != ["rad", "dl"]:
        raise BundleError(
            "pipeline.json's K-class fusion does not fuse rad and dl of its classes; rebuild the bundle"
        )
    if not isinstance(cnn.get("file"), str) or not isinstance(cnn.get("arch"), str):
        raise BundleError(
            "pipeline.json's K-class network block names no file or architecture; rebuild the bundle"
        )
    parts = {
        "dl": dl,
        "reducer": DeepFeatureReducer.from_spec(deep["reducer"]),
        "fusion": fusion,
        "cnn": cnn,
        "crop": dict(deep["crop"]),
    }
    return parts


__all__ = ["RULES", "MulticlassOutput", "MulticlassPipeline"]
