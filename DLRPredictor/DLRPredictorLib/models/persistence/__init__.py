"""Fitted estimators <-> a JSON spec plus plain numeric arrays, loadable without executing code.

A model bundle must be safe to open, so fitted steps are never pickled. :func:`dump_model` turns a
fitted estimator into ``(spec, arrays)``: ``spec`` is JSON (the ``kind``, hyper-parameters and
structure) and ``arrays`` are named plain numeric numpy arrays (stored by the bundle layer in a
``.npz`` read with ``allow_pickle=False``, or in safetensors). :func:`load_model` rebuilds a
:class:`SafeModel` (a binary classifier) or :class:`SafeTransformer` re-implemented in numpy.
XGBoost and LightGBM models travel as their native JSON / text model (parsed by their own
libraries, which execute no Python code) inside a ``uint8`` array.

This face re-exports the public names; importing it loads numpy only (sklearn, xgboost and
lightgbm are imported when an estimator of theirs is dumped or loaded).

- ``protocols``: SafeModel / SafeTransformer, format constants, input checks, numeric helpers.
- ``transformers``: StandardScaler, PCA and a chain of them.
- ``linear``: logistic regression.
- ``svm``: SVC (linear / RBF) with libsvm's Platt probabilities.
- ``forest``: random forest, extra trees, decision tree.
- ``knn``: k-nearest neighbours.
- ``boosting``: XGBoost and LightGBM boosters.
- ``calibration``: CalibratedClassifierCV (sigmoid / isotonic).
- ``pipeline``: a Pipeline of scaling / PCA steps ending in a classifier.
- ``dump``: estimator -> spec and arrays (:func:`dump_model`, :func:`save_model`).
- ``load``: spec and arrays -> safe model, with validation (:func:`load_model`,
  :func:`load_model_files`, :func:`read_npz`).
"""

from .boosting import lightgbm_objective
from .dump import dump_model, save_model
from .load import load_model, load_model_files, read_npz
from .protocols import FORMAT, FORMAT_VERSION, LOGIT_CLIP, SafeModel, SafeTransformer

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LOGIT_CLIP",
    "SafeModel",
    "SafeTransformer",
    "dump_model",
    "lightgbm_objective",
    "load_model",
    "load_model_files",
    "read_npz",
    "save_model",
]
