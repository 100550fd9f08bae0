"""phantom.py: the synthetic B-mode sample is deterministic, realistic enough and written correctly."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib.inputs.images import read_image
from DLRPredictorLib.inputs.lesion import MIN_LESION_PIXELS, read_mask, representative_slice
from DLRPredictorLib.inputs.phantom import LesionStyle, make_phantom, write_phantom
from scipy import ndimage
from skimage.measure import regionprops


def test_deterministic_for_a_seed():
    a_image, a_mask = make_phantom(seed=5)
    b_image, b_mask = make_phantom(seed=5)
    c_image, c_mask = make_phantom(seed=6)
    # Bit-identical: the same seeded generator run twice (its images are integer grey levels too).
    np.testing.assert_array_equal(a_image.array, b_image.array)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_image.array, c_image.array)
    assert not np.array_equal(a_mask, c_mask)


@pytest.mark.parametrize("seed", [0, 1, 2, 11])
def test_bmode_values_and_hypoechoic_lesion(seed):
    volume, mask = make_phantom(seed=seed, shape=(256, 320), spacing_mm=0.1)
    assert volume.shape == (1, 256, 320) and mask.shape == (1, 256, 320)
    assert volume.array.dtype == np.float32 and mask.dtype == np.uint8
    assert volume.spacing == (0.1, 0.1, 1.0)  # exact: the given spacing, stored as it is
    image, lesion = volume.array[0], mask[0].astype(bool)
    assert image.min() >= 0 and image.max() <= 255
    np.testing.assert_array_equal(image, np.round(image))  # integer grey levels, PNG-exact
    assert image.std() > 20  # speckle, not a flat image
    inside, outside = image[lesion].mean(), image[~lesion].mean()
    assert inside < 0.8 * outside


@pytest.mark.parametrize("seed", [0, 4])
def test_posterior_shadowing(seed):
    volume, mask = make_phantom(seed=seed)
    image, lesion = volume.array[0], mask[0].astype(bool)
    rows = np.flatnonzero(lesion.any(axis=1))
    cols = np.flatnonzero(lesion.any(axis=0))
    band = slice(rows[-1] + 5, min(rows[-1] + 45, image.shape[0]))
    centre = slice(cols[0] + (cols[-1] - cols[0]) // 4, cols[-1] - (cols[-1] - cols[0]) // 4)
    beside = np.r_[0 : max(cols[0] - 10, 1), min(cols[-1] + 10, image.shape[1] - 1) : image.shape[1]]
    assert image[band, centre].mean() < 0.85 * image[band][:, beside].mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_lesion_asymmetric_off_centre_and_inside(seed):
    _, mask = make_phantom(seed=seed)
    lesion = mask[0].astype(bool)
    area = lesion.sum()
    assert area >= 10 * MIN_LESION_PIXELS
    assert ndimage.label(lesion, structure=np.ones((3, 3)))[1] == 1
    for flipped in (lesion[::-1], lesion[:, ::-1], lesion[::-1, ::-1]):
        assert (lesion & flipped).sum() < 0.5 * area
    centroid = np.array(ndimage.center_of_mass(lesion))
    centre = (np.array(lesion.shape) - 1) / 2.0
    assert np.linalg.norm(centroid - centre) > 0.05 * min(lesion.shape)
    assert not (lesion[0].any() or lesion[-1].any() or lesion[:, 0].any() or lesion[:, -1].any())


def test_write_phantom_files_and_manifest(tmp_path):
    paths = write_phantom(tmp_path, seed=2)
    volume, mask = make_phantom(seed=2)
    for key in ("manifest", "image", "mask", "image_nrrd", "image_png", "mask_nrrd", "mask_png"):
        assert paths[key].is_file()
    assert paths["image"] == tmp_path / "image.nrrd" and paths["mask"] == tmp_path / "mask.nrrd"

    nrrd = sitk.ReadImage(str(paths["image_nrrd"]))
    assert nrrd.GetSpacing() == pytest.approx((0.1, 0.1))
    from_nrrd = read_image(paths["image_nrrd"])
    from_png = read_image(paths["image_png"], spacing_mm=0.1)
    # Exact: integer grey levels, written and read back without arithmetic.
    np.testing.assert_array_equal(from_nrrd.array, volume.array)
    np.testing.assert_array_equal(from_png.array, volume.array)
    assert from_nrrd.spacing == pytest.approx(from_png.spacing)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mask_nrrd"]))), mask[0])
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mask_png"]))), mask[0] * 255
    )

    with open(paths["manifest"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # By default the clinical column of the bundled model (BI-RADS) only.
    assert list(rows[0]) == ["case_id", "image", "mask", "spacing_mm", "birads"]
    assert len(rows) == 3 and len({r["case_id"] for r in rows}) == 3
    for row in rows:
        image = read_image(tmp_path / row["image"], spacing_mm=float(row["spacing_mm"]))
        lesion = representative_slice(image, read_mask(tmp_path / row["mask"], image), row["case_id"])
        assert lesion.spacing == pytest.approx((0.1, 0.1))
        assert lesion.warnings == ()
        assert row["birads"]


def test_write_phantom_writes_the_clinical_columns_asked_for(tmp_path):
    """Columns in the order asked, once each; a variable the records lack is left empty (not given)."""
    paths = write_phantom(tmp_path, clinical_columns=("age", "birads", "age", "menopause"))
    with open(paths["manifest"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["case_id", "image", "mask", "spacing_mm", "age", "birads", "menopause"]
    for row in rows:
        assert 18 <= float(row["age"]) <= 100 and row["birads"] and row["menopause"] == ""
    assert len({(row["age"], row["birads"]) for row in rows}) == len(rows)


def test_write_phantom_is_reproducible(tmp_path):
    first = write_phantom(tmp_path / "a", seed=0)
    second = write_phantom(tmp_path / "b", seed=0)
    for key in ("image_nrrd", "image_png", "mask_nrrd", "mask_png"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(first[key])))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(second[key])))
        np.testing.assert_array_equal(a, b)  # the same seeded generator twice, integer pixels: exact
    assert first["manifest"].read_text() == second["manifest"].read_text()


def _below_vs_beside(image: np.ndarray, lesion: np.ndarray) -> float:
    """Mean echo of a band under the lesion over its central columns, relative to beside it."""
    rows = np.flatnonzero(lesion.any(axis=1))
    cols = np.flatnonzero(lesion.any(axis=0))
    band = slice(rows[-1] + 5, min(rows[-1] + 45, image.shape[0]))
    quarter = (cols[-1] - cols[0]) // 4
    beside = np.r_[0 : max(cols[0] - 10, 1), min(cols[-1] + 10, image.shape[1] - 1) : image.shape[1]]
    return float(image[band, cols[0] + quarter : cols[-1] - quarter].mean() / image[band][:, beside].mean())


@pytest.mark.parametrize("seed", [0, 7])
def test_default_style_is_the_embedded_sample(seed):
    image, mask = make_phantom(seed=seed)
    styled, styled_mask = make_phantom(seed=seed, style=LesionStyle(), dynamic_range_db=48.0)
    # Bit-identical: the defaults are these very settings, so the same code runs on the same numbers.
    np.testing.assert_array_equal(image.array, styled.array)
    np.testing.assert_array_equal(mask, styled_mask)


BENIGN = LesionStyle(
    irregularity=0.0, spicules=0, aspect=0.6, posterior=0.5, heterogeneity=0.0, margin_sigma=1.0
)
MALIGNANT = LesionStyle(
    irregularity=1.5, spicules=7, aspect=1.0, posterior=-0.7, heterogeneity=0.6, margin_sigma=2.5
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_benign_and_malignant_styles(seed):
    benign_image, benign_mask = make_phantom(seed=seed, style=BENIGN)
    malignant_image, malignant_mask = make_phantom(seed=seed, style=MALIGNANT)
    benign, malignant = benign_mask[0].astype(bool), malignant_mask[0].astype(bool)
    # Smooth oval vs irregular, spiculated outline.
    assert regionprops(benign.astype(int))[0].solidity > 0.97
    assert regionprops(malignant.astype(int))[0].solidity < regionprops(benign.astype(int))[0].solidity - 0.03
    # Wider than tall vs about as tall as wide.
    b_rows, b_cols = np.ptp(np.flatnonzero(benign.any(axis=1))), np.ptp(np.flatnonzero(benign.any(axis=0)))
    m_rows, m_cols = (
        np.ptp(np.flatnonzero(malignant.any(axis=1))),
        np.ptp(np.flatnonzero(malignant.any(axis=0))),
    )
    assert b_rows / b_cols < 0.8 < m_rows / m_cols
    # Posterior enhancement vs shadowing.
    assert _below_vs_beside(benign_image.array[0], benign) > 1.05
    assert _below_vs_beside(malignant_image.array[0], malignant) < 0.85
    # Heterogeneous vs homogeneous inside (relative spread of the echo inside the lesion).
    inner_b = ndimage.binary_erosion(benign, iterations=3)
    inner_m = ndimage.binary_erosion(malignant, iterations=3)
    b_img, m_img = benign_image.array[0], malignant_image.array[0]
    smooth_b = ndimage.gaussian_filter(b_img, 3)[inner_b]
    smooth_m = ndimage.gaussian_filter(m_img, 3)[inner_m]
    assert smooth_m.std() / smooth_m.mean() > smooth_b.std() / smooth_b.mean()


def test_style_controls_size_place_and_darkness():
    small, small_mask = make_phantom(seed=4, style=LesionStyle(scale=0.5, centre=(0.4, 0.3)))
    large, large_mask = make_phantom(seed=4, style=LesionStyle(scale=1.0, centre=(0.4, 0.3), darkness=0.5))
    assert small_mask.sum() < 0.4 * large_mask.sum()
    centroid = ndimage.center_of_mass(small_mask[0])
    assert centroid == pytest.approx((0.4 * 255, 0.3 * 319), abs=8)
    inside_small = small.array[0][small_mask[0] > 0].mean() / small.array[0][small_mask[0] == 0].mean()
    inside_large = large.array[0][large_mask[0] > 0].mean() / large.array[0][large_mask[0] == 0].mean()
    assert inside_small < inside_large  # darkness 0.85 (default) vs 0.5
    harsh, _ = make_phantom(seed=4, dynamic_range_db=36.0)
    assert harsh.array.std() > make_phantom(seed=4)[0].array.std()
