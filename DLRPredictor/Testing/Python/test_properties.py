"""Property-based tests (hypothesis): random images and masks never crash with anything but the
documented errors (DLRError subclasses), and every probability is a number in [0, 1].

Each property runs on few examples (the predictor takes seconds per case); the derandomised
profile makes runs repeatable, so a failure is reproduced by rerunning the test.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from DLRPredictorLib.base.errors import DLRError, InputError
from DLRPredictorLib.features import radiomics as rf
from DLRPredictorLib.inference import predictor
from DLRPredictorLib.inputs import cohort_csv as manifest
from DLRPredictorLib.inputs import images, lesion
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy import ndimage

ROWS, COLS = 48, 64
COMMON = {
    "deadline": None,
    "derandomize": True,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}


# ------------------------------------------------------------------------------- strategies


@st.composite
def masks(draw: st.DrawFn, rows: int = ROWS, cols: int = COLS, lesion_like: bool = False) -> np.ndarray:
    """0 to 3 ellipses or rectangles of any size (possibly tiny, cut by the border), or noise.

    With ``lesion_like`` the first shape is an ellipse of 3 pixels or more in each direction
    (still possibly cut by the border or joined by other shapes), so most examples reach the model.
    """
    mask = np.zeros((rows, cols), np.uint8)
    if not lesion_like and draw(st.integers(0, 4)) == 0:
        seed = draw(st.integers(0, 2**16))
        density = draw(st.floats(0.0, 0.6))
        return (np.random.default_rng(seed).random((rows, cols)) < density).astype(np.uint8)
    yy, xx = np.indices((rows, cols))
    if lesion_like:
        cy, cx = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
        ay, ax = draw(st.integers(3, rows // 2)), draw(st.integers(3, cols // 2))
        mask[((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0] = 1
    for _ in range(draw(st.integers(0, 2 if lesion_like else 3))):
        cy, cx = draw(st.integers(-5, rows + 5)), draw(st.integers(-5, cols + 5))
        ay, ax = draw(st.integers(1, rows)), draw(st.integers(1, cols))
        if draw(st.booleans()):
            mask[((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0] = 1
        else:
            mask[max(cy, 0) : max(cy + ay, 0), max(cx, 0) : max(cx + ax, 0)] = 1
    return mask


@st.composite
def pictures(draw: st.DrawFn, rows: int = ROWS, cols: int = COLS, in_range: bool = False) -> np.ndarray:
    """Grey or RGB images: speckle-like noise, constant, smooth or blocky; any value range, NaN, inf.

    With ``in_range`` only non-constant 0-255 images without NaN (what a scanner exports), so
    most examples reach the model.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kinds = ["noise", "gradient", "blocks"] if in_range else ["noise", "constant", "gradient", "blocks"]
    kind = draw(st.sampled_from(kinds))
    if kind == "noise":
        image = rng.rayleigh(40.0, (rows, cols))
    elif kind == "constant":
        image = np.full((rows, cols), draw(st.floats(0, 255)))
    elif kind == "gradient":
        image = np.add.outer(np.arange(rows), np.arange(cols)).astype(float) + rng.normal(0, 3, (rows, cols))
    else:
        image = (
            np.kron(rng.integers(0, 2, (rows // 8 + 1, cols // 8 + 1)), np.ones((8, 8)))[:rows, :cols] * 200.0
        )
    if in_range:
        low, high = 0.0, draw(st.sampled_from([255.0, 180.0, 40.0]))
    else:
        low = draw(st.sampled_from([0.0, 0.0, 0.0, -100.0, 0.0]))
        high = draw(st.sampled_from([255.0, 255.0, 1.0, 4095.0, 65535.0]))
    span = float(np.ptp(image))
    if span > 0:
        image = low + (image - image.min()) / span * (high - low)
    if not in_range and draw(st.integers(0, 9)) == 0:
        image[rng.integers(0, rows), rng.integers(0, cols)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if draw(st.booleans()):
        rgb = np.repeat(image[..., None], 3, axis=-1)
        if draw(st.booleans()):  # a coloured mark somewhere
            r, c = rng.integers(0, rows - 4), rng.integers(0, cols - 4)
            rgb[r : r + 4, c : c + 4] = (255.0, 255.0, 0.0)
        return rgb
    return image


valid_clinical = st.fixed_dictionaries(
    {}, optional={"age": st.integers(10, 110), "birads": st.sampled_from(["2", "3", "4a", "4B", " 4c", "5"])}
)
any_clinical = st.fixed_dictionaries(
    {},
    optional={
        "age": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-10, 300),
            st.text(max_size=6),
        ),
        "birads": st.one_of(
            st.sampled_from(["1", "2", "3", "4", "4a", "4B", " 4c", "5", "6", "7", "0"]), st.text(max_size=4)
        ),
    },
)


def _volume_or_error(image: np.ndarray) -> Any:
    try:
        return images.volume_from_array(image, spacing=0.1)
    except InputError as exc:
        event(f"image refused: {str(exc)[:30]}")
        assert str(exc) and "\n" not in str(exc)
        return None


# ------------------------------------------------------------------------------- properties


@settings(max_examples=80, **COMMON)
@given(image=pictures(), mask=masks())
def test_lesion_slice_is_one_valid_region_or_a_documented_error(image: np.ndarray, mask: np.ndarray) -> None:
    volume = _volume_or_error(image)
    if volume is None:
        return
    try:
        taken = lesion.representative_slice(volume, mask, case="p")
    except InputError as exc:
        event(f"refused: {type(exc).__name__}")
        assert str(exc) and "\n" not in str(exc)
        return
    event("lesion taken")
    kept = taken.mask.astype(bool)
    assert not np.any(kept & (mask == 0))  # only pixels of the drawn lesion
    _, parts = lesion.largest_component(kept)
    assert parts == 1
    labels, drawn_parts = ndimage.label(mask != 0, structure=np.ones((3, 3)))
    assert int(kept.sum()) == int(np.bincount(labels.ravel())[1:].max())  # the largest part is used
    assert any("separate parts" in w for w in taken.warnings) == (drawn_parts > 1)
    assert int(kept.sum()) >= lesion.MIN_LESION_PIXELS
    row0, row1, col0, col1 = taken.bbox
    assert kept[row0, :].any() and kept[row1 - 1, :].any() and kept[:, col0].any() and kept[:, col1 - 1].any()
    assert (
        not kept[:row0].any()
        and not kept[row1:].any()
        and not kept[:, :col0].any()
        and not kept[:, col1:].any()
    )
    np.testing.assert_array_equal(taken.image, volume.array[taken.slice_index])  # the slice itself: exact


@pytest.fixture(scope="module")
def feature_names() -> list[str]:
    from DLRPredictorLib.inputs import phantom

    volume, mask = phantom.make_phantom(3)
    return list(rf.extract_features(lesion.representative_slice(volume, mask)))


@settings(max_examples=12, **COMMON)
@given(image=pictures(in_range=True), mask=masks(lesion_like=True))
def test_radiomics_gives_the_full_feature_set_or_a_documented_error(
    feature_names: list[str], image: np.ndarray, mask: np.ndarray
) -> None:
    volume = _volume_or_error(image)
    if volume is None:
        return
    try:
        features = rf.extract_features(lesion.representative_slice(volume, mask))
    except InputError as exc:
        event(f"refused: {str(exc)[:40]}")
        assert str(exc) and "\n" not in str(exc)
        return
    event("features computed")
    assert list(features) == feature_names


@settings(max_examples=7, **COMMON)
@given(
    image=pictures(in_range=True),
    mask=masks(lesion_like=True),
    clinical=st.one_of(valid_clinical, valid_clinical, valid_clinical, any_clinical),
)
def test_predictor_probability_is_in_0_1_or_a_documented_error(
    tiny_bundle: Path, image: np.ndarray, mask: np.ndarray, clinical: dict[str, Any]
) -> None:
    pred = predictor.load_predictor(tiny_bundle)
    volume = _volume_or_error(image)
    if volume is None:
        return
    try:
        result = pred.predict(volume, mask[None], clinical, heatmap=False, case="p")
    except DLRError as exc:
        event(f"refused: {str(exc)[:40]}")
        assert isinstance(exc, InputError), exc  # never a bundle problem
        assert str(exc) and "\n" not in str(exc)
        return
    event("predicted")
    assert 0.0 <= result.probability <= 1.0
    assert all(0.0 <= s <= 1.0 for s in result.signature_scores.values())
    # The same number, reported twice: exact (the model's own beside a recalibrated one).
    own = result.probability if result.probability_uncalibrated is None else result.probability_uncalibrated
    assert own == result.signature_scores[_model_key(result.model_used)]
    assert math.isfinite(result.ood_distance) and result.ood_distance >= 0.0
    assert result.out_of_distribution == (result.ood_distance > pred.pipeline.ood["threshold"])


def _model_key(model_used: str) -> str:
    return {"Rad": "rad", "DL": "dl", "DLR": "dlr", "Combined": "combined"}[
        model_used.split(" ", maxsplit=1)[0]
    ]


@st.composite
def manifest_texts(draw: st.DrawFn) -> str:
    """CSV text with random columns, cells, delimiters and blank lines."""
    names = ["case_id", "image", "mask", "label", "spacing_mm", "age", "segment", "", "case_id"]
    header = draw(st.lists(st.sampled_from(names), min_size=0, max_size=6))
    cell = st.one_of(
        st.sampled_from(["a", "b", "x.png", "", "0.1", "-1", "nan", "1", "benign"]), st.text(max_size=5)
    )
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=7), max_size=5))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@settings(max_examples=150, **COMMON)
@given(text=manifest_texts())
def test_manifest_reading_never_fails_other_than_with_a_manifest_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    try:
        rows = manifest.read_cohort_csv(path, clinical_names=["age"], warn=lambda line: None)
    except DLRError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    ids = [r.case_id for r in rows]
    assert len(ids) == len(set(ids)) and all(ids)
    assert all(r.resolved_image is not None and r.resolved_image.is_absolute() for r in rows)


@settings(max_examples=40, **COMMON)
@given(
    data=st.binary(max_size=400),
    suffix=st.sampled_from([".png", ".jpg", ".bmp", ".nrrd", ".nii", ".mha", ".dcm", ".tif"]),
    header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"NRRD0004\n", b"\xff\xd8\xff", b"BM", b"DICM"]),
)
def test_reading_random_bytes_is_a_documented_error_or_an_image(
    tmp_path: Path, data: bytes, suffix: str, header: bytes
) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(header + data)
    try:
        volume = images.read_image(path)
    except DLRError as exc:
        assert isinstance(exc, InputError) and "\n" not in str(exc)
        return
    assert np.all(np.isfinite(volume.array))
