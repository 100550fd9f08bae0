"""Checks of the values a caller hands to a prediction, each raising an InputError naming the argument.

Deeper code assumes numbers in numpy arrays of the right kind; given a list of text, an object or
complex array, a probability map as a mask or a path where a folder is expected it would fail
with a TypeError or, worse, answer. ``Predictor.predict`` and the API (``api``) check here first.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..base.case import ImageVolume
from ..base.errors import InputError, LesionError
from ..inputs.spacing import parse_spacing_mm

#: numpy kinds of pixel values: signed / unsigned integers and floats (bool only for masks).
_NUMBER_KINDS = "iuf"


def describe(value: Any) -> str:
    """A short description of a value for a message: an MRML node's class and name, an array's
    dtype and shape, otherwise the type and the start of its text."""
    class_name = getattr(value, "GetClassName", None)
    if callable(class_name):
        get_name = getattr(value, "GetName", None)
        name = get_name() if callable(get_name) else None
        return f"{class_name()} '{name}'" if name else str(class_name())
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} values, shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _as_array(value: Any, argument: str, kinds: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested lists
        array = np.asarray(None)
    if value is None or array.dtype.kind not in kinds:
        raise InputError(f"{argument} must be {what}, got {describe(value)}")
    return array


def check_image_array(image: Any, argument: str = "image") -> np.ndarray:
    """An image given as an array: grey levels or RGB(A) numbers (its shape is checked later).

    Raises:
        InputError: not an array of integers or floats (None, text, a dict, an object, complex or
            boolean array: a boolean array is a mask, not an image).
    """
    return _as_array(image, argument, _NUMBER_KINDS, "a numpy array of grey levels or RGB(A) values")


def check_mask_array(mask: Any, argument: str = "mask") -> np.ndarray:
    """A lesion mask given as an array: 0 outside, 1 (or any positive label number) inside.

    Its size is compared with the image later (``inputs.lesion.validate_mask``).

    Raises:
        LesionError: not a 2-D or 3-D array of booleans, integers or floats; negative values;
            fractional values (a probability map: threshold it first); NaN or infinite values.
    """
    array = _as_array(mask, argument, "b" + _NUMBER_KINDS, "a 0/1 numpy array of the image's size")
    if array.ndim not in (2, 3) or array.size == 0:
        raise LesionError(
            f"{argument} must be a (rows, columns) or (slices, rows, columns) array with pixels, "
            f"got {describe(array)}"
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise LesionError(f"{argument}: the lesion mask contains NaN or infinite values")
    if array.dtype.kind in "if" and np.any(array < 0):
        raise LesionError(
            f"{argument} holds negative values ({array.min():g}): a lesion mask is 0 outside the "
            "lesion and 1 (or a positive label number) inside"
        )
    if array.dtype.kind == "f" and np.any(array != np.floor(array)):
        fraction = array[array != np.floor(array)].flat[0]
        raise LesionError(
            f"{argument} holds fractional values (e.g. {fraction:g}): it looks like a probability "
            "map; threshold it first (e.g. mask > 0.5) and pass 0/1 values"
        )
    return array


def check_volume(volume: Any, argument: str = "volume") -> ImageVolume:
    """An ImageVolume, as ``inputs.images.volume_from_array`` or ``read_image`` make it.

    Raises:
        InputError: anything else (e.g. a bare numpy array).
    """
    if not isinstance(volume, ImageVolume):
        raise InputError(
            f"{argument} must be an ImageVolume (from images.volume_from_array or images.read_image), "
            f"got {describe(volume)}"
        )
    return volume


def check_spacing_pair(spacing_mm: Any, argument: str = "spacing_mm") -> tuple[float, float]:
    """The pixel size of an array image: one number for square pixels, or two.

    Each value follows the cohort CSV's rule (``inputs.spacing.parse_spacing_mm``).

    Returns:
        The two values, in the order given (a single number twice).

    Raises:
        InputError: not one or two values, or a value that is not a positive number of mm.
    """
    if isinstance(spacing_mm, np.ndarray):
        values = list(spacing_mm.ravel()) if spacing_mm.ndim else [spacing_mm.item()]
    elif isinstance(spacing_mm, (list, tuple)):
        values = list(spacing_mm)
    else:
        values = [spacing_mm]
    if len(values) not in (1, 2):
        raise InputError(
            f"{argument} must be one number (square pixels) or two, got {len(values)} values: {spacing_mm!r}"
        )
    sizes = [parse_spacing_mm(v, "pixel size") for v in values]  # the message names spacing_mm
    return (sizes[0], sizes[-1])


def check_flag(value: Any, argument: str) -> bool:
    """A yes/no option: True or False (numpy booleans included).

    Raises:
        InputError: anything else, e.g. the text "no", which Python would read as true.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{argument} must be True or False, got {describe(value)}")
    return bool(value)


def check_fraction(value: Any, argument: str) -> float:
    """A number from 0 to 1 (e.g. an opacity).

    Raises:
        InputError: not a real number, NaN, or outside 0-1.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{argument} must be a number from 0 to 1, got {describe(value)}")
    if not (0.0 <= float(value) <= 1.0):  # NaN fails both comparisons
        raise InputError(f"{argument} must be a number from 0 to 1, got {float(value):g}")
    return float(value)


def check_text(value: Any, argument: str) -> str:
    """A text argument (e.g. a node name prefix).

    Raises:
        InputError: not text.
    """
    if not isinstance(value, str):
        raise InputError(f"{argument} must be text, got {describe(value)}")
    return value


def check_bundle_path(bundle_path: Any, argument: str = "bundle_path") -> None:
    """A bundle folder: None (the bundled default), text or a path object.

    Raises:
        InputError: anything else (a number, a list, bytes).
    """
    if bundle_path is not None and not isinstance(bundle_path, (str, os.PathLike)):
        raise InputError(
            f"{argument} must be the bundle folder as text or a pathlib.Path (or None for the bundled "
            f"model), got {describe(bundle_path)}"
        )
    if isinstance(bundle_path, os.PathLike) and not isinstance(os.fspath(bundle_path), str):
        raise InputError(f"{argument} must be a text path, got {describe(bundle_path)}")


def check_callback(value: Any, argument: str) -> None:
    """None or a function.

    Raises:
        InputError: anything else.
    """
    if value is not None and not callable(value):
        raise InputError(f"{argument} must be a function (or None), got {describe(value)}")


__all__ = [
    "check_bundle_path",
    "check_callback",
    "check_flag",
    "check_fraction",
    "check_image_array",
    "check_mask_array",
    "check_spacing_pair",
    "check_text",
    "check_volume",
    "describe",
]
