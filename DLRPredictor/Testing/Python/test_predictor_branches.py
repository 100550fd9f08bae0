"""Radiomics and the network run concurrently; the result must be exactly the sequential one."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from DLRPredictorLib.base.errors import LesionError
from DLRPredictorLib.inference import predictor
from DLRPredictorLib.inputs import phantom


@pytest.fixture
def pred(tiny_bundle):
    p = predictor.Predictor(predictor.load_predictor(tiny_bundle).bundle)  # own instance: own flags
    assert p.pipeline.uses_cnn
    return p


def _predict(pred: predictor.Predictor, concurrent: bool, seed: int, **kw):
    volume, mask = phantom.make_phantom(seed=seed, shape=(96, 128), spacing_mm=0.1)
    pred.concurrent_branches = concurrent
    return pred.predict(volume, mask, {}, **kw)


@pytest.mark.parametrize("seed", [3, 8])
def test_concurrent_and_inline_predictions_are_identical(pred, seed: int) -> None:
    a = _predict(pred, True, seed, heatmap=True, stability=True)
    b = _predict(pred, False, seed, heatmap=True, stability=True)
    # Bit-identical by design: the same code on the same case, the network on one BLAS thread either
    # way (deep_features._threads_for) and pyradiomics on one SimpleITK thread.
    assert a.probability == b.probability
    assert a.signature_scores == b.signature_scores
    assert a.contributions == b.contributions
    assert a.features == b.features
    assert a.heatmap is not None and np.array_equal(a.heatmap, b.heatmap)
    assert a.heatmap.shape == (1, 96, 128)
    assert a.stability.probabilities == b.stability.probabilities


def test_the_network_runs_on_the_helper_thread(pred, monkeypatch) -> None:
    threads: list[str] = []
    original = pred._deep_features

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(pred, "_deep_features", spy)
    _predict(pred, True, 4, heatmap=False)
    _predict(pred, False, 4, heatmap=False)
    assert threads[0].startswith("dlr-deep")
    assert threads[1] == threading.current_thread().name


def test_a_radiomics_error_waits_for_the_network_and_propagates(pred, monkeypatch) -> None:
    from DLRPredictorLib.features import radiomics as rf

    finished = threading.Event()
    original = pred._deep_features

    def slow_deep(*args, **kwargs):
        out = original(*args, **kwargs)
        finished.set()
        return out

    def failing_extract(*args, **kwargs):
        raise LesionError("radiomics failed on purpose")

    monkeypatch.setattr(pred, "_deep_features", slow_deep)
    monkeypatch.setattr(rf, "extract_features", failing_extract)
    with pytest.raises(LesionError, match="on purpose"):
        _predict(pred, True, 5, heatmap=True)
    assert finished.is_set()  # the branch was joined before the error left predict()


def test_the_network_runs_on_one_blas_thread_and_leaves_the_process_setting(pred) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):
        seen: list[set[int]] = []
        original = pred._deep_features

        def spy(*args, **kwargs):
            seen.append(blas_threads())
            return original(*args, **kwargs)

        pred._deep_features = spy
        _predict(pred, True, 6, heatmap=True)
        _predict(pred, True, 7, heatmap=False)
        assert seen == [{1}, {1}]  # the network leaves the other core to pyradiomics
        assert blas_threads() == {2}  # the caller's (process-wide) setting is back
