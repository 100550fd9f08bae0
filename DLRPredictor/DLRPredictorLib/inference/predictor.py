"""One case through a verified bundle: lesion slice, radiomics, deep features, Grad-CAM, fusion.

`Predictor` is the loaded bundle (verified once, cached per path); `Predictor.predict` takes an
ImageVolume and a lesion mask and returns a `CasePrediction` (``results``). It knows nothing of
MRML or of cohort files: the scene layer turns nodes into these inputs and the result into nodes,
the cohort layer (``cohort.rows``) turns cohort CSV rows into inputs and results into CSV rows.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from ..base.case import ImageVolume, LesionSlice
from ..base.errors import InputError
from ..deep.heatmap import DEFAULT_HEATMAP, check_heatmap_kind
from .input_checks import check_bundle_path, check_flag, check_mask_array, check_volume
from .results import CasePrediction, StabilityResult

MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
DEFAULT_BUNDLE_NAME = "BreastUS-Malignancy"
STABILITY_PERTURBATIONS = (("erode", 2), ("erode", 1), ("dilate", 1), ("dilate", 2))


#: The warning of a prediction that asked a K-class bundle for a heatmap.
NO_MULTICLASS_HEATMAP = (
    "no heatmap: a bundle with more than two classes draws none (a Grad-CAM map explains one score, "
    "and which class's map to show is not defined); the probabilities are unaffected"
)


def default_bundle_path() -> Path:
    """The bundle shipped in Resources/Models."""
    return MODELS_DIR / DEFAULT_BUNDLE_NAME


def set_threads(n: int) -> None:
    """Limit the threads of the BLAS libraries, SimpleITK and torch if loaded (one worker per core).

    pyradiomics' GLCM calls numpy.linalg (OpenBLAS): with several threads per worker on a busy
    machine one eigenvalue call was measured 6x slower than single-threaded (benchmarks/).
    torch is never imported here: a prediction does not need it.
    """
    import sys

    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    n = max(1, int(n))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    threadpool_limits(n)
    # pyradiomics' image operations are SimpleITK filters, multi-threaded on every core by default.
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


class Predictor:
    """A verified bundle ready to predict."""

    def __init__(self, bundle: Any) -> None:
        from . import pipeline

        self.bundle = bundle
        self.manifest = bundle.manifest
        self.pipeline: Any
        if "classes" in self.manifest["task"]:  # a K-class endpoint (multiclass_pipeline.py)
            from .multiclass_pipeline import MulticlassPipeline

            self.pipeline = MulticlassPipeline.from_bundle(bundle)
        else:
            self.pipeline = pipeline.FrozenPipeline.from_bundle(bundle)
        self._deep = None
        self._signature_affine: Any = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        #: Run the network concurrently with pyradiomics (see ``_submit_deep``).
        self.concurrent_branches = (os.cpu_count() or 1) > 1
        #: Compute only the radiomics features the model reads (``FrozenPipeline.
        #: model_radiomics_parameters``); the prediction is the same, ``features`` holds only
        #: those. For callers that never show the feature table (batch workers without scenes).
        self.model_features_only = False

    # -- bundle facts -------------------------------------------------------------------------
    @property
    def bundle_id(self) -> str:
        return f"{self.manifest['id']}@{self.manifest['version']}"

    @property
    def bundle_digest(self) -> str:
        """The verified bundle's content digest (``bundle.trust``), shown wherever the id is."""
        return str(self.bundle.digest)

    @property
    def bundle_trust(self) -> str:
        """Why the bundle is trusted: pinned shipped bundle, signed (by whom), or unsigned."""
        return str(self.bundle.trust)

    @property
    def title(self) -> str:
        return str(self.manifest.get("title", self.manifest["id"]))

    @property
    def cutoff(self) -> float:
        """The frozen cutoff (NaN for a K-class bundle: its rule is in ``task.decision_rule``)."""
        return float(self.manifest.get("cutoff", "nan"))

    @property
    def positive_class(self) -> str:
        """The positive class; a K-class bundle's classes joined by " / " (what it predicts)."""
        classes = self.classes
        return str(self.manifest["task"]["positive_class"]) if classes is None else " / ".join(classes)

    @property
    def negative_class(self) -> str:
        """The negative class; empty for a K-class bundle."""
        return str(self.manifest["task"]["negative_class"]) if self.classes is None else ""

    @property
    def classes(self) -> list[str] | None:
        """A K-class bundle's classes in order; None for a binary bundle."""
        classes = self.manifest["task"].get("classes")
        return None if classes is None else [str(c) for c in classes]

    @property
    def clinical_variables(self) -> list[Any]:
        return self.pipeline.clinical_variables

    @property
    def signature_names(self) -> list[str]:
        return self.pipeline.signature_names

    @property
    def harmonisation_column(self) -> str | None:
        """The cohort manifest column whose value harmonises a case's radiomics (None: the bundle
        does not harmonise)."""
        step = self.pipeline.harmonisation
        return step.column if step is not None else None

    @property
    def signature_cutoffs(self) -> dict[str, float]:
        return self.pipeline.cutoffs

    def deep_model(self) -> Any:
        """The bundle's ResNet (numpy inference, no torch), loaded on first use."""
        with self._lock:
            if self._deep is None:
                self._deep = self.pipeline.load_deep_model(self.bundle)
            return self._deep

    # -- prediction ----------------------------------------------------------------------------
    def lesion_slice(self, volume: ImageVolume, mask: np.ndarray, case: str = "") -> LesionSlice:
        """The representative slice, in pixel units when the bundle was trained so."""
        # Imported here: they load SimpleITK, which the batch driver (it only reads the bundle)
        # never needs (about 0.1 s of its start).
        from ..inputs import lesion as lesion_mod

        lesion = lesion_mod.representative_slice(volume, mask, case=case)
        if self.pipeline.pixel_units:
            lesion.spacing = (1.0, 1.0)
        return lesion

    def predict(
        self,
        volume: ImageVolume,
        mask: np.ndarray,
        clinical: dict[str, Any] | None = None,
        *,
        stability: bool = False,
        heatmap: bool = True,
        case: str = "",
        heatmap_kind: str = DEFAULT_HEATMAP,
        site: str | None = None,
    ) -> CasePrediction:
        """Predict one lesion.

        Args:
            volume: the image (luminance).
            mask: lesion mask (k, j, i) in the image's grid.
            clinical: clinical values by name; missing or empty values make the image-only
                model answer (the result says so in `model_used`).
            stability: also predict on eroded / dilated contours.
            heatmap: compute Grad-CAM and map it into the image grid.
            case: case name used in messages.
            heatmap_kind: the score the heatmap explains (``deep.heatmap.HEATMAP_KINDS``):
                "dl-signature" (the DL signature's logit, exact for a linear signature; the CNN
                head with a warning otherwise) or "cnn-head". The provenance names the one shown.
            site: the case's scanner or site (the value of :attr:`harmonisation_column` in a
                cohort manifest), read only when the bundle harmonises its radiomics (ComBat); a
                site the training data lacked, or none, is predicted unharmonised with a warning.

        Returns:
            The prediction.

        Raises:
            InputError: unusable image, lesion, clinical values or options (the message names the
                argument and says why).
        """
        check_volume(volume)
        check_mask_array(mask)
        check_flag(stability, "stability")
        check_flag(heatmap, "heatmap")
        kind = check_heatmap_kind(heatmap_kind) if heatmap else None
        no_map = self.classes is not None and kind is not None
        if self.classes is not None:  # a K-class bundle draws no heatmap (multiclass_pipeline.py)
            kind = None
        lesion = self.lesion_slice(volume, mask, case)
        values = self.pipeline.check_clinical({} if clinical is None else clinical, case=case)
        if site is not None and not isinstance(site, str):
            raise InputError(f"site must be text (the case's scanner or site), got {type(site).__name__}")
        out = self._predict_lesion(lesion, values, kind, volume.shape, site)
        if no_map:  # asked for, not silently missing
            out.warnings.append(NO_MULTICLASS_HEATMAP)
        if stability:
            out.stability = self._stability(lesion, values, out, site)
        return out

    def _predict_lesion(
        self,
        lesion: LesionSlice,
        clinical: dict[str, Any],
        heatmap: str | None,
        volume_shape: tuple[int, int, int],
        site: str | None = None,
    ) -> CasePrediction:
        from ..base.thread_limits import BLAS_ONE_THREAD
        from ..features import radiomics as rf

        # One BLAS thread: the network's matrix products and pyradiomics share the cores (see
        # _submit_deep); the process's own setting comes back afterwards.
        with BLAS_ONE_THREAD.held():
            deep = self._submit_deep(lesion, heatmap, volume_shape)
            try:
                params = (
                    self.pipeline.model_radiomics_parameters()
                    if self.model_features_only
                    else self.pipeline.radiomics_parameters
                )
                features = rf.extract_features(lesion, params)
            finally:
                if deep is not None and not deep.done():
                    wait([deep])  # never leave the network running after an error
            deep_vector, cam_volume, shown = (
                deep.result() if deep is not None else self._deep_features(lesion, heatmap, volume_shape)
            )
        res = self.pipeline.predict(features, deep_vector, clinical, site)
        if self.classes is not None:  # K-class: the frozen rule's class; no positive class
            positive, label = False, self.pipeline.predicted_class(res)
        else:
            positive = res.probability >= res.cutoff
            label = self.positive_class if positive else self.negative_class
        provenance = {
            "bundle_id": self.bundle_id,
            "bundle_digest": self.bundle_digest,
            **rf.provenance(lesion, self.pipeline.radiomics_parameters),
            "slice_index": str(lesion.slice_index),
        }
        cam_warnings = []
        if shown is not None:
            provenance["heatmap"] = shown
            if shown != heatmap:
                cam_warnings.append(
                    "the DL signature's classifier is not linear in the deep features, so no exact "
                    "gradient explains it: the heatmap shows the CNN head's Grad-CAM instead"
                )
        return CasePrediction.extend(
            res,
            warnings=[*lesion.warnings, *res.warnings, *cam_warnings, *self.bundle.trust_warnings],
            label=label,
            predicted_positive=bool(positive),
            provenance=provenance,
            features=features,
            heatmap=cam_volume,
            lesion=lesion,
        )

    def _submit_deep(
        self, lesion: LesionSlice, heatmap: str | None, volume_shape: tuple[int, int, int]
    ) -> Future | None:
        """Start the deep branch on the helper thread, or None to run it inline.

        Radiomics and the network need nothing from each other. numpy releases the GIL inside
        its matrix products and copies, so on two or more cores the network runs while
        pyradiomics extracts and a prediction costs about max(radiomics, network) instead of
        their sum. Batch workers that already fill every core run both inline
        (``concurrent_branches = False``).
        """
        if not (self.concurrent_branches and self.pipeline.uses_cnn):
            return None
        self.deep_model()  # load the weights here: errors surface in the caller's thread
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlr-deep")
        return self._pool.submit(self._deep_features, lesion, heatmap, volume_shape)

    def signature_affine(self) -> Any:
        """The DL signature's logit as an affine map of the pooled features (None: not linear)."""
        with self._lock:
            if self._signature_affine is None:
                self._signature_affine = (self.pipeline.dl_signature_affine(),)
            return self._signature_affine[0]

    def _deep_features(
        self, lesion: LesionSlice, heatmap: str | None, volume_shape: tuple[int, int, int]
    ) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
        """(pooled features, heatmap volume, the heatmap kind shown) of one lesion."""
        if not self.pipeline.uses_cnn:
            return None, None, None
        from ..deep.heatmap import heatmap_to_slice, heatmap_volume, weighted_cam
        from ..inputs.crops import lesion_crop

        model = self.deep_model()
        crop, box = lesion_crop(lesion, self.pipeline.crop_spec())
        if heatmap is None:
            return model.features(crop[None])[0], None, None
        vector, act, _prob = model.features_and_activations(crop)
        cells = act.shape[0] * act.shape[1]
        affine = self.signature_affine() if heatmap == "dl-signature" else None
        if affine is not None:
            # d logit / d A[i, j, c] = w_eff[c] / cells at every cell: the Grad-CAM channel weights.
            shown, weights = "dl-signature", affine.weights / cells
        else:
            shown, weights = "cnn-head", model.engine.gradcam_weights(1, cells)
        cam = weighted_cam(act, weights, *crop.shape[-2:]).astype(np.float32)
        cam_slice = heatmap_to_slice(cam, box, lesion.image.shape)
        return vector, heatmap_volume(cam_slice, volume_shape, lesion.slice_index), shown

    def _stability(
        self, lesion: LesionSlice, clinical: dict[str, Any], base: CasePrediction, site: str | None = None
    ) -> StabilityResult:
        from ..inputs import contours
        from ..inputs import lesion as lesion_mod

        names, probs, seen = ["as drawn"], [base.probability], {base.label}
        for op, radius in STABILITY_PERTURBATIONS:
            fn = contours.erode_mask if op == "erode" else contours.dilate_mask
            try:
                mask2d = fn(lesion.mask, radius)
            except InputError:
                continue  # a lesion too thin to erode: that perturbation is skipped
            bbox = lesion_mod.bounding_box(mask2d)
            variant = LesionSlice(lesion.image, mask2d, lesion.spacing, lesion.slice_index, bbox)
            try:
                rows, cols = lesion.image.shape
                res = self._predict_lesion(variant, clinical, None, (1, int(rows), int(cols)), site)
            except InputError:
                continue
            names.append(f"{op} {radius} px")
            if res.class_probabilities is not None:  # K-class: the as-drawn class's probability
                probs.append(res.class_probabilities[base.label])
                seen.add(res.label)
                continue
            probs.append(res.probability)
        labels = {p >= base.cutoff for p in probs} if self.classes is None else seen
        return StabilityResult(names, probs, float(max(probs) - min(probs)), len(labels) > 1)


_CACHE: dict[tuple, Predictor] = {}
_CACHE_LOCK = threading.Lock()


def load_predictor(bundle_path: str | Path | None = None) -> Predictor:
    """Verify and load a bundle (cached per folder and content).

    Raises:
        InputError: ``bundle_path`` is not text or a path.
        BundleError: the bundle is missing, damaged or incompatible.
    """
    from ..bundle import verify as bundle_mod

    check_bundle_path(bundle_path)
    path = Path(bundle_path) if bundle_path else default_bundle_path()
    # Re-hashing a 45 MB CNN on every call costs ~150 ms. The cache is keyed on the stat of every
    # file in the folder: any change (content, size, time, an added file) re-verifies in full, and
    # a cached Predictor only ever uses the bytes that were verified when it was built.
    key = _stat_key(path)
    with _CACHE_LOCK:
        if key is not None and key in _CACHE:
            return _CACHE[key]
    verified = bundle_mod.load_bundle(path)
    pred = Predictor(verified)
    with _CACHE_LOCK:
        if key is not None:
            _CACHE[key] = pred
    return pred


def _stat_key(path: Path) -> tuple | None:
    """(folder, (name, size, mtime_ns, inode) of every entry) or None when unreadable."""
    try:
        folder = path.parent if path.name == "manifest.json" else path
        entries = sorted(
            (p.name, st.st_size, st.st_mtime_ns, st.st_ino)
            for p in folder.resolve().iterdir()
            for st in [p.lstat()]
        )
    except OSError:
        return None
    return (str(folder.resolve()), tuple(entries))


__all__ = [
    "CasePrediction",
    "Predictor",
    "StabilityResult",
    "default_bundle_path",
    "load_predictor",
]
