"""Labels: the one check of 0/1 label arrays, and the one rule that reads a label text.

1 is the positive class (for the default bundle: malignant), 0 the negative one. numpy only: it
runs wherever labels are fitted or scored.

A label text (a cohort CSV's ``label`` cell, a predictions CSV's label column) is read by
:func:`code_label` everywhere: surrounding blanks ignored, case ignored ("Malignant",
" malignant " and "MALIGNANT" are one class), numeric 0/1 ("0", "1", "1.0") always accepted,
and any other text refused by its reader with the row it is on: an unknown label is never
counted as a negative.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import InputError

#: Why evaluation needs both classes (the default ending of the single-class message).
EVALUATION_NEEDS_BOTH = (
    "ROC/AUC, cutoffs and calibration need both positive and negative cases. "
    "Evaluate on a set that contains both classes."
)
#: Why fitting needs both classes.
TRAINING_NEEDS_BOTH = "training needs both positive and negative cases."


def validate_labels(
    y: object, *, need_both: bool = True, why_both: str = EVALUATION_NEEDS_BOTH
) -> np.ndarray:
    """Check labels and return them as a 0/1 int array.

    Args:
        y: labels; bool or numbers equal to 0 or 1 (numeric text such as "1" is accepted).
        need_both: require at least one case of each class.
        why_both: the end of the single-class message, saying what needs both classes
            (:data:`EVALUATION_NEEDS_BOTH` or :data:`TRAINING_NEEDS_BOTH`).

    Returns:
        int array of 0/1.

    Raises:
        InputError: empty, not 1-D, missing, non-0/1 labels, or a single class when need_both.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"Labels must be a 1-D list of 0/1 values; got an array of shape {arr.shape}.")
    if arr.size == 0:
        raise InputError("No cases to evaluate: the label list is empty.")
    if arr.dtype == bool:
        arr = arr.astype(int)
    try:
        num = arr.astype(float)
    except (TypeError, ValueError):
        raise InputError(
            "Labels must be 0 (negative) or 1 (positive); found non-numeric values such as "
            f"{sorted({str(v) for v in arr.tolist()})[:5]}. Convert them to 0/1 first."
        ) from None
    if np.isnan(num).any():
        raise InputError(
            f"{int(np.isnan(num).sum())} label(s) are missing (NaN); remove those cases or give their label."
        )
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        raise InputError(
            "Labels must be 0 (negative) or 1 (positive); found "
            f"{sorted(set(num[bad].tolist()))[:5]}. Recode the labels as 0/1."
        )
    lab = num.astype(int)
    if need_both and (lab.min() == lab.max()):
        only = "positive (1)" if lab[0] == 1 else "negative (0)"
        raise InputError(f"All {lab.size} cases are {only}; {why_both}")
    return lab


def label_key(text: str) -> str:
    """How label texts are compared: surrounding blanks ignored, case ignored (casefold)."""
    return str(text).strip().casefold()


def label_codes(names: Mapping[str, int] | None = None) -> dict[str, int]:
    """The accepted label texts (as :func:`label_key` gives them) -> 1 (positive) or 0 (negative).

    Args:
        names: class names -> 0/1, e.g. ``{"malignant": 1, "benign": 0}``; a name that is also a
            number ("0", "1") overrides the numeric meaning.

    Returns:
        ``{"0": 0, "1": 1}`` plus the names, keyed by :func:`label_key`.

    Raises:
        InputError: a name coded other than 0/1, or one name given both codes.
    """
    codes = {"0": 0, "1": 1}
    named: dict[str, int] = {}
    for name, code in (names or {}).items():
        key = label_key(name)
        if code not in (0, 1) or named.get(key, code) != code:
            raise InputError(f"label '{name}' cannot be both or neither class (code {code!r})")
        named[key] = int(code)
    return {**codes, **named}


def code_label(text: str, codes: Mapping[str, int]) -> int | None:
    """The 0/1 code of one label text, or None when the text is no accepted label.

    Args:
        text: the label as written (blanks around it and its case do not matter).
        codes: from :func:`label_codes`.

    Returns:
        1 or 0; None for an unknown label (the caller refuses it, naming its row).
    """
    key = label_key(text)
    if key in codes:
        return codes[key]
    try:
        number = float(key)  # "1.0", "0.00": how numeric 0/1 labels often come back from pandas
    except ValueError:
        return None
    return codes[str(int(number))] if number in (0.0, 1.0) else None
