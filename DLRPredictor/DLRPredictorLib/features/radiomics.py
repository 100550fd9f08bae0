"""Handcrafted radiomics features of one lesion slice with pyradiomics.

The settings live in a pyradiomics parameter file (default: ``Resources/Parameters/BreastUS2D.yaml``),
validated with pyradiomics' own schema. Features are computed on a true 2D SimpleITK image built
from the :class:`~DLRPredictorLib.base.case.LesionSlice` with its pixel spacing, so pyradiomics
computes shape2D, 2D LoG and the four 2D wavelet sub-bands. Keys are pyradiomics' own
(``original_firstorder_Mean``, ``wavelet-LH_glcm_Contrast``, ...); diagnostics are left out.

Grey levels: with ``normalize: false`` (the default file) pyradiomics bins the raw values with
fixed bin widths chosen for 8-bit B-mode luminance, so the slice must hold 0-255 grey levels.
A 16-bit or float image with values outside 0-255 (raw scanner data, CT-like units) or one
whose values all lie within 0-1 (a normalised image, or the mask given as the image) is refused
rather than rescaled: any rescaling would be a guess at the scanner's display mapping. A float
or 16-bit image whose values are within 0-255 is used as it is.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import yaml

from ..base.case import LesionSlice
from ..base.compat import zip_strict
from ..base.errors import ConfigError, InputError, LesionError
from ..base.thread_limits import ITK_ONE_THREAD
from ..inputs.lesion import MIN_LESION_EXTENT, MIN_LESION_PIXELS, bounding_box

DEFAULT_PARAMETERS = Path(__file__).resolve().parents[2] / "Resources" / "Parameters" / "BreastUS2D.yaml"

#: Grey levels the fixed bin widths of a non-normalising parameter file are made for (8-bit B-mode).
BMODE_GREY_RANGE = (0.0, 255.0)
# Float luminance from RGB may exceed 255 by rounding; allow half a grey level either way.
_GREY_TOLERANCE = 0.5

_EXTRACTORS: dict[str, Any] = {}
_DEFAULT_CACHE: dict[str, dict] = {}


@contextmanager
def _quiet_validation():
    """pykwalify logs every schema error itself; the message is re-raised as ConfigError instead."""
    names = ["pykwalify", *(n for n in logging.root.manager.loggerDict if n.startswith("pykwalify."))]
    loggers = [logging.getLogger(name) for name in names]
    previous = [log.disabled for log in loggers]
    for log in loggers:
        log.disabled = True
    try:
        yield
    finally:
        for log, state in zip_strict(loggers, previous):
            log.disabled = state


def validate_parameters(params: dict, source: str = "parameters") -> dict:
    """Validate a pyradiomics parameter dictionary with pyradiomics' schema.

    Args:
        params: parameter dictionary (keys ``setting``, ``imageType``, ``featureClass``, ...).
        source: name used in the error message (a file name or "parameters").

    Returns:
        The validated dictionary.

    Raises:
        ConfigError: with the schema's message when the parameters are invalid.
    """
    import pykwalify.core
    import pykwalify.errors
    from radiomics import getParameterValidationFiles

    _check_mapping(params, source)
    schema_file, schema_funcs = getParameterValidationFiles()
    try:
        with _quiet_validation():
            core = pykwalify.core.Core(
                source_data=copy.deepcopy(params), schema_files=[schema_file], extensions=[schema_funcs]
            )
            return core.validate(raise_exception=True)
    except (pykwalify.errors.PyKwalifyException, ValueError, TypeError) as exc:
        raise _schema_error(exc, source) from exc


def _check_mapping(params: Any, source: str) -> None:
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"the radiomics {source} must be a non-empty mapping (setting, imageType, ...)")


def _schema_error(exc: Exception, source: str) -> ConfigError:
    message = getattr(exc, "msg", None) or str(exc)
    return ConfigError(f"invalid radiomics {source}: {' '.join(str(message).split())}")


def load_parameters(path: str | Path | None = None) -> dict:
    """Read and validate a pyradiomics parameter file (YAML or JSON).

    Args:
        path: parameter file; None for :data:`DEFAULT_PARAMETERS`.

    Returns:
        The validated parameter dictionary.

    Raises:
        ConfigError: unreadable file or parameters rejected by pyradiomics' schema.
    """
    file = Path(path) if path is not None else DEFAULT_PARAMETERS
    try:
        with open(file, encoding="utf-8") as handle:
            params = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the radiomics parameter file '{file}': {exc}") from exc
    return validate_parameters(params, f"parameter file '{file}'")


def _default_parameters() -> dict:
    if "default" not in _DEFAULT_CACHE:
        _DEFAULT_CACHE["default"] = load_parameters()
    return copy.deepcopy(_DEFAULT_CACHE["default"])


def parameters_hash(params: dict) -> str:
    """sha256 of the canonical JSON of a parameter dictionary (sorted keys, no spaces).

    Args:
        params: parameter dictionary.

    Returns:
        64 hexadecimal characters.
    """
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _extractor(params: dict) -> Any:
    key = parameters_hash(params)
    if key not in _EXTRACTORS:
        import pykwalify.errors
        from radiomics.featureextractor import RadiomicsFeatureExtractor

        _check_mapping(params, "parameters")
        try:
            # The extractor validates the parameters with pyradiomics' schema itself; validating
            # them first as well cost a second pass (about 30 ms of every cold start).
            with _quiet_validation():
                extractor = RadiomicsFeatureExtractor(copy.deepcopy(params))
        except (pykwalify.errors.PyKwalifyException, ValueError, TypeError) as exc:
            raise _schema_error(exc, "parameters") from exc
        _EXTRACTORS[key] = extractor
    return _EXTRACTORS[key]


def check_grey_levels(image2d: np.ndarray, params: dict | None = None) -> None:
    """Refuse grey levels the parameter file's fixed bins were not made for.

    Only applies when the parameters do not normalise intensities (``setting.normalize`` false,
    as in the default file); see the module notes.

    Args:
        image2d: the slice's luminance.
        params: pyradiomics parameters; None for the default file.

    Raises:
        InputError: values outside 0-255, values all within 0-1, or NaN / infinite values.
    """
    params = _default_parameters() if params is None else params
    if (params.get("setting") or {}).get("normalize", False):
        return
    values = np.asarray(image2d, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(
            "the image contains NaN or infinite values; texture features cannot be computed. "
            "Check the export of the image (use the original B-mode image)."
        )
    low, high = float(values.min()), float(values.max())
    lo, hi = BMODE_GREY_RANGE
    if low < lo - _GREY_TOLERANCE or high > hi + _GREY_TOLERANCE:
        raise InputError(
            f"the image's grey levels range from {low:g} to {high:g}, outside the 8-bit B-mode range "
            f"({lo:g}-{hi:g}) this model works on (a 16-bit or float image?); export the image as shown "
            "on the scanner screen (8-bit grayscale or RGB, e.g. PNG or an 8-bit DICOM) and use that file."
        )
    if high <= 1.0:
        raise InputError(
            f"the image's grey levels all lie between {low:g} and {high:g}: it looks like a normalised "
            f"image or a mask, not an 8-bit B-mode image ({lo:g}-{hi:g}); check that the image (not the "
            "mask) was given, and use the original ultrasound image."
        )


def lesion_window_is_exact(params: dict) -> bool:
    """Whether pyradiomics gives the same features on the lesion's bounding box as on the image.

    True when only the Original image is used, without intensity normalisation or resampling:
    pyradiomics then reads nothing outside the mask's bounding box (it crops to it before every
    feature class). Filters (LoG, wavelet, ...) see the whole image, normalisation uses the whole
    image's statistics and resampling pads around the box, so those keep the whole image.
    """
    setting = params.get("setting") or {}
    return (
        set(params.get("imageType") or {"Original": {}}) == {"Original"}
        and not setting.get("normalize", False)
        and setting.get("resampledPixelSpacing") is None
    )


def _sitk_pair(lesion: LesionSlice, label: int, params: dict) -> tuple[sitk.Image, sitk.Image]:
    binary = np.asarray(lesion.mask) != 0
    image2d = np.asarray(lesion.image)
    spacing = (float(lesion.spacing[0]), float(lesion.spacing[1]))
    origin = (0.0, 0.0)
    # Hand pyradiomics only the lesion's bounding box (+1 px) where that gives the same features
    # (see lesion_window_is_exact): its mask checks and crops then scan a few thousand pixels
    # instead of the whole image. On whole BUS-BRA images they took about 7 of 47 ms per case
    # (cProfile: LabelStatisticsImageFilter 5.3 ms, CropImageFilter 2 ms). An empty mask is left
    # whole for pyradiomics to reject with its own message.
    if lesion_window_is_exact(params) and binary.any():
        row0, row1, col0, col1 = bounding_box(binary)
        row0, col0 = max(0, row0 - 1), max(0, col0 - 1)
        row1, col1 = min(binary.shape[0], row1 + 1), min(binary.shape[1], col1 + 1)
        binary, image2d = binary[row0:row1, col0:col1], image2d[row0:row1, col0:col1]
        origin = (col0 * spacing[0], row0 * spacing[1])
    # float64: pyradiomics' numpy-based filters (wavelet, square, ...) then compute exactly as on the
    # original integer file; float32 input would make them work in single precision.
    image = sitk.GetImageFromArray(np.asarray(image2d, dtype=np.float64))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    mask = sitk.GetImageFromArray(binary.astype(np.uint8) * np.uint8(label))
    mask.CopyInformation(image)
    return image, mask


def extract_features(lesion: LesionSlice, params: dict | None = None) -> dict[str, float]:
    """Compute the radiomics features of a lesion slice.

    Args:
        lesion: the representative slice and its lesion mask.
        params: pyradiomics parameters; None for the default 2D breast-ultrasound file. One
            extractor is kept per distinct parameter set.

    Returns:
        Ordered ``{pyradiomics key: value}``; diagnostics excluded.

    Raises:
        ConfigError: invalid parameters.
        InputError: grey levels the parameters were not made for (see :func:`check_grey_levels`).
        LesionError: pyradiomics rejects the lesion (too small, flat, ...).
    """
    params = _default_parameters() if params is None else params
    check_grey_levels(lesion.image, params)
    extractor = _extractor(params)
    label = int(extractor.settings.get("label", 1))
    image, mask = _sitk_pair(lesion, label, params)
    try:
        with warnings.catch_warnings(), ITK_ONE_THREAD.held():
            # skimage warns that LBP on float images is sensitive to tiny differences; luminance
            # from RGB is legitimately non-integer.
            warnings.filterwarnings("ignore", message=".*local_binary_pattern.*")
            result = extractor.execute(image, mask, label=label)
    except (ValueError, RuntimeError) as exc:
        raise LesionError(
            f"pyradiomics cannot compute features for this lesion ({' '.join(str(exc).split())}); "
            f"a lesion needs at least {MIN_LESION_PIXELS} pixels and {MIN_LESION_EXTENT} pixels in "
            "each direction. Check the segmentation."
        ) from exc
    return {key: float(value) for key, value in result.items() if not key.startswith("diagnostics_")}


def feature_rows(features: dict[str, float]) -> list[tuple[str, str, str, float]]:
    """Split pyradiomics keys into table rows, as SlicerRadiomics shows them.

    Args:
        features: ``{"<image type>_<feature class>_<feature name>": value}``.

    Returns:
        ``(image type, feature class, feature name, value)`` per feature, in the input order.
    """
    rows = []
    for key, value in features.items():
        image_type, feature_class, name = key.split("_", 2)
        rows.append((image_type, feature_class, name, float(value)))
    return rows


def _sha256(array: np.ndarray) -> str:
    # The array's own buffer, not a bytes copy of it (the same bytes hashed).
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def provenance(lesion: LesionSlice, params: dict | None = None) -> dict[str, str]:
    """Software versions and content hashes for a feature computation (no paths, no names).

    Args:
        lesion: the lesion slice the features were computed on.
        params: the parameters used; None for the default file.

    Returns:
        String values: library versions, the parameters' sha256, sha256 of the float32 image and
        uint8 mask bytes, the slice shape and the pixel spacing.
    """
    import pywt
    import radiomics

    params = _default_parameters() if params is None else params
    return {
        "pyradiomics_version": str(radiomics.__version__),
        "numpy_version": np.__version__,
        "simpleitk_version": sitk.Version_VersionString(),
        "pywavelets_version": pywt.__version__,
        "radiomics_parameters_sha256": parameters_hash(params),
        "image_sha256": _sha256(np.asarray(lesion.image, dtype=np.float32)),
        "mask_sha256": _sha256((np.asarray(lesion.mask) != 0).astype(np.uint8)),
        "slice_shape": f"{lesion.image.shape[0]} x {lesion.image.shape[1]}",
        "spacing_mm": f"{lesion.spacing[0]:g} x {lesion.spacing[1]:g}",
    }
