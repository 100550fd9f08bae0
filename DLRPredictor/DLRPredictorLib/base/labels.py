"""The one check of 0/1 label arrays, shared by training (models) and evaluation.

1 is the positive class (for the default bundle: malignant), 0 the negative one. numpy only: it
runs wherever labels are fitted or scored.
"""

from __future__ import annotations

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
