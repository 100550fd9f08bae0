"""inputs.lesion (mask reading and geometry, validation, representative slice) and inputs.contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib.base.errors import ImageReadError, InputError, LesionError
from DLRPredictorLib.inputs.contours import dilate_mask, ellipse_mask, erode_mask, jitter_contour
from DLRPredictorLib.inputs.images import read_image, volume_from_array
from DLRPredictorLib.inputs.lesion import (
    MIN_LESION_PIXELS,
    bounding_box,
    expand_bbox,
    largest_component,
    mask_from_array,
    read_mask,
    representative_slice,
    validate_mask,
)
from scipy import ndimage

ROWS, COLS = 60, 80


def _image(rows: int = ROWS, cols: int = COLS, spacing: float = 0.1):
    return volume_from_array(np.random.default_rng(0).integers(0, 256, (rows, cols)), spacing=spacing)


def _l_shape() -> np.ndarray:
    """An off-centre L-shaped lesion: no flip or transpose maps it onto itself."""
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[10:40, 12:20] = 1  # vertical bar
    mask[32:40, 20:45] = 1  # foot to the right
    return mask


def _write(array: np.ndarray, path: Path, spacing=None, is_vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def _ellipse(rows, cols, centre, axes, angle=0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return ((u / axes[1]) ** 2 + (v / axes[0]) ** 2 <= 1.0).astype(np.uint8)


# ---------------------------------------------------------------- reading and geometry


def test_png_mask_keeps_orientation(tmp_path):
    mask = _l_shape()
    read = read_mask(_write(mask * 255, tmp_path / "m.png"), _image())
    assert read.shape == (1, ROWS, COLS) and read.dtype == np.uint8
    np.testing.assert_array_equal(read[0], mask)


def test_rgba_mask_like_breast(tmp_path):
    mask = _l_shape()
    rgba = np.zeros((ROWS, COLS, 4), np.uint8)
    rgba[mask > 0] = (255, 255, 255, 255)  # BrEaST masks: (0,0,0,0) outside, white opaque inside
    read = read_mask(_write(rgba, tmp_path / "m.png", is_vector=True), _image())
    np.testing.assert_array_equal(read[0], mask)


def test_nrrd_labelmap_keeps_orientation_and_labels(tmp_path):
    labels = _l_shape().copy()
    labels[45:55, 60:75] = 2
    path = _write(labels, tmp_path / "m.nrrd", spacing=(0.1, 0.1))
    image = _image()
    np.testing.assert_array_equal(read_mask(path, image)[0], labels > 0)
    np.testing.assert_array_equal(read_mask(path, image, segment="1")[0], labels == 1)
    np.testing.assert_array_equal(read_mask(path, image, segment="2")[0], labels == 2)
    with pytest.raises(LesionError, match="no label 3"):
        read_mask(path, image, segment="3")
    with pytest.raises(LesionError, match="not a Slicer segmentation"):
        read_mask(path, image, segment="lesion")


def _segmentation(path: Path, masks: dict[str, np.ndarray], origin=(0.0, 0.0, 0.0)) -> Path:
    import slicerio

    first = next(iter(masks.values()))
    shape_ijk = (first.shape[1], first.shape[0], 1)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.diag([0.1, 0.1, 1.0])
    ijk_to_lps[:3, 3] = origin
    seg = slicerio.create_segmentation(shape_ijk, ijk_to_lps)
    for name, mask in masks.items():
        slicerio.add_segment(seg, mask.T[:, :, np.newaxis] > 0, {"name": name})
    slicerio.write_segmentation(str(path), seg)
    return path


def test_seg_nrrd_segment_by_name(tmp_path):
    lesion = _l_shape()
    other = np.zeros_like(lesion)
    other[30:50, 15:30] = 1  # overlaps the lesion: stored in a second layer
    path = _segmentation(tmp_path / "lesion.seg.nrrd", {"lesion": lesion, "other": other})
    image = _image()
    np.testing.assert_array_equal(read_mask(path, image, segment="lesion")[0], lesion)
    np.testing.assert_array_equal(read_mask(path, image, segment="other")[0], other)
    with pytest.raises(LesionError, match="lesion, other"):
        read_mask(path, image)
    with pytest.raises(LesionError, match="no segment named 'tumour'"):
        read_mask(path, image, segment="tumour")


def test_seg_nrrd_single_segment_default_and_cropped_extent(tmp_path):
    lesion = _l_shape()
    path = _segmentation(tmp_path / "full.seg.nrrd", {"Segment_1": lesion})
    np.testing.assert_array_equal(read_mask(path, _image())[0], lesion)
    # A segmentation stored on a cropped grid (offset by 5 rows and 10 columns) lands in place.
    crop = lesion[5:45, 10:50]
    cropped = _segmentation(tmp_path / "crop.seg.nrrd", {"Segment_1": crop}, origin=(1.0, 0.5, 0.0))
    np.testing.assert_array_equal(read_mask(cropped, _image())[0], lesion)


def test_segmentation_without_seg_suffix_is_recognised(tmp_path):
    lesion = _l_shape()
    other = np.zeros_like(lesion)
    other[45:55, 60:75] = 1
    path = _segmentation(tmp_path / "drawn.nrrd", {"other": other, "lesion": lesion})
    np.testing.assert_array_equal(read_mask(path, _image(), segment="lesion")[0], lesion)


def test_mask_from_array_rgb_and_2d():
    mask = _l_shape()
    rgb = np.stack([mask * 200, mask * 0, mask * 0], axis=-1)
    np.testing.assert_array_equal(mask_from_array(rgb, _image())[0], mask)
    np.testing.assert_array_equal(mask_from_array(mask.astype(bool), _image())[0], mask)


# ---------------------------------------------------------------- validation errors


def test_empty_mask_message():
    with pytest.raises(LesionError, match="lesion segment is empty: paint the lesion in the Segment Editor"):
        validate_mask(np.zeros((ROWS, COLS)), _image(), case="c1")


def test_size_mismatch_message_gives_both_sizes():
    with pytest.raises(LesionError) as info:
        validate_mask(np.ones((50, 70)), _image(), case="c7")
    message = str(info.value)
    assert "70 x 50" in message and f"{COLS} x {ROWS}" in message and "c7" in message


def test_mask_file_size_mismatch(tmp_path):
    path = _write(np.ones((50, 70), np.uint8) * 255, tmp_path / "m.png")
    with pytest.raises(LesionError, match="70 x 50 pixels but the image is 80 x 60 pixels"):
        read_mask(path, _image())


def test_missing_and_unreadable_mask(tmp_path):
    with pytest.raises(ImageReadError, match=r"nothing\.png': the file does not exist"):
        read_mask(tmp_path / "nothing.png", _image())
    (tmp_path / "masks").mkdir()
    with pytest.raises(ImageReadError, match=r"masks': is a folder, not a mask file"):
        read_mask(tmp_path / "masks", _image())
    broken = tmp_path / "broken.nrrd"
    broken.write_text("NRRD0004\ngarbage\n")
    with pytest.raises(ImageReadError):
        read_mask(broken, _image())


def test_lesion_too_small_states_minimum():
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[10:15, 10:15] = 1  # 25 pixels
    with pytest.raises(LesionError, match=f"at least {MIN_LESION_PIXELS} pixels"):
        representative_slice(_image(), mask)
    thin = np.zeros((ROWS, COLS), np.uint8)
    thin[10:12, 10:60] = 1  # 100 pixels but only 2 rows high
    with pytest.raises(LesionError, match="3 pixels in each direction"):
        representative_slice(_image(), thin)


# ---------------------------------------------------------------- representative slice


def test_bbox_and_slice_contents():
    mask = _l_shape()
    volume = _image()
    lesion = representative_slice(volume, mask)
    assert lesion.bbox == (10, 40, 12, 45)
    assert lesion.slice_index == 0
    assert lesion.spacing == (0.1, 0.1)  # the volume's own numbers, passed on: exact
    np.testing.assert_array_equal(lesion.mask, mask)
    np.testing.assert_array_equal(lesion.image, volume.array[0])  # the slice itself, no arithmetic
    assert lesion.warnings == ()


def test_3d_picks_largest_area_lowest_index_on_ties():
    volume = volume_from_array(np.random.default_rng(0).random((5, 40, 50)), spacing=(0.2, 0.3, 2.0))
    mask = np.zeros((5, 40, 50), np.uint8)
    mask[0, 5:15, 5:15] = 1  # 100
    mask[1, 5:25, 5:25] = 1  # 400
    mask[2, 10:30, 20:40] = 1  # 400: tie, higher index
    mask[3, 5:10, 5:10] = 1  # 25
    lesion = representative_slice(volume, mask)
    assert lesion.slice_index == 1
    assert lesion.bbox == (5, 25, 5, 25)
    assert lesion.spacing == (0.2, 0.3)  # the volume's own numbers, passed on: exact
    np.testing.assert_array_equal(lesion.image, volume.array[1])  # the slice itself, no arithmetic


def test_disconnected_lesion_keeps_largest_with_warning():
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[5:15, 5:15] = 1  # 100 pixels
    mask[30:38, 50:55] = 1  # 40 pixels
    lesion = representative_slice(_image(), mask, case="c3")
    assert int(lesion.mask.sum()) == 100
    assert lesion.bbox == (5, 15, 5, 15)
    assert any("2 separate parts" in w and "(100 pixels)" in w for w in lesion.warnings)


def test_largest_component_equals_scipy_eight_connected_labelling():
    # SimpleITK computes the components; scipy.ndimage (the reference) is not loaded to predict.
    rng = np.random.default_rng(4)
    eight = np.ones((3, 3), dtype=bool)
    for _ in range(60):
        mask = rng.random((40, 55)) > rng.uniform(0.45, 0.85)
        labels, count = ndimage.label(mask, structure=eight)
        kept, found = largest_component(mask)
        assert found == count
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            expected = labels == int(np.argmax(sizes)) + 1  # ties: the region met first
            np.testing.assert_array_equal(kept, expected.astype(np.uint8))
    tie = np.zeros((10, 10), np.uint8)
    tie[6:8, 1:3] = 1
    tie[1:3, 6:8] = 1  # same size, met first in row-major order
    kept, found = largest_component(tie)
    assert found == 2 and kept[1:3, 6:8].all() and not kept[6:8, 1:3].any()


def test_border_warning():
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[0:10, 30:40] = 1
    lesion = representative_slice(_image(), mask)
    assert any("border" in w for w in lesion.warnings)


# ---------------------------------------------------------------- bounding box


def test_bounding_box():
    assert bounding_box(_l_shape()) == (10, 40, 12, 45)
    with pytest.raises(LesionError, match="empty"):
        bounding_box(np.zeros((5, 5)))


def test_expand_bbox_square_with_margin_and_clipping():
    assert expand_bbox((20, 30, 40, 60), (100, 100), 0.0, square=True) == (15, 35, 40, 60)
    assert expand_bbox((20, 30, 40, 60), (100, 100), 0.5, square=False) == (15, 35, 30, 70)
    # Near the corner: the square box is shifted inside the image, still containing the lesion.
    r0, r1, c0, c1 = expand_bbox((0, 10, 2, 12), (50, 60), 0.5)
    assert (r0, c0) == (0, 0) and r1 - r0 == 20 and c1 - c0 == 20
    # Larger than the image: clipped to the image.
    assert expand_bbox((5, 45, 5, 55), (50, 60), 1.0) == (0, 50, 0, 60)
    with pytest.raises(InputError):
        expand_bbox((5, 45, 5, 55), (50, 60), -0.1)


# ---------------------------------------------------------------- perturbations


def test_erosion_shrinks_and_dilation_grows():
    mask = _ellipse(80, 100, (40, 50), (20, 30))
    eroded, dilated = erode_mask(mask, 3), dilate_mask(mask, 3)
    assert eroded.sum() < mask.sum() < dilated.sum()
    assert np.all(mask[eroded > 0]) and np.all(dilated[mask > 0])
    # About one perimeter times the radius is removed / added.
    assert 0.6 < (mask.sum() - eroded.sum()) / (dilated.sum() - mask.sum()) < 1.1


def test_erosion_that_empties_raises():
    mask = np.zeros((30, 30), np.uint8)
    mask[10:14, 10:14] = 1
    with pytest.raises(LesionError, match="removes it completely"):
        erode_mask(mask, 3)


def test_ellipse_keeps_area_and_centroid():
    mask = _ellipse(120, 160, (55.3, 70.8), (22, 40), angle=0.5)
    fitted = ellipse_mask(mask)
    assert abs(int(fitted.sum()) - int(mask.sum())) / mask.sum() < 0.03
    np.testing.assert_allclose(ndimage.center_of_mass(fitted), ndimage.center_of_mass(mask), atol=0.5)
    # An irregular lesion keeps its centroid too.
    irregular = _l_shape()
    np.testing.assert_allclose(
        ndimage.center_of_mass(ellipse_mask(irregular)), ndimage.center_of_mass(irregular), atol=1.0
    )


def test_jitter_stays_connected_and_is_reproducible():
    mask = _ellipse(100, 120, (50, 60), (25, 35))
    first = jitter_contour(mask, np.random.default_rng(4), amplitude_px=3.0, smoothness=6.0)
    again = jitter_contour(mask, np.random.default_rng(4), amplitude_px=3.0, smoothness=6.0)
    other = jitter_contour(mask, np.random.default_rng(5), amplitude_px=3.0, smoothness=6.0)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, mask)
    assert ndimage.label(first, structure=np.ones((3, 3)))[1] == 1
    assert not np.any(ndimage.binary_fill_holes(first) & ~first.astype(bool))  # no holes
    assert abs(int(first.sum()) - int(mask.sum())) / mask.sum() < 0.25
    # The outline moves by at most about the amplitude.
    assert np.all(dilate_mask(mask, 4)[first > 0]) and np.all(first[erode_mask(mask, 4) > 0])


# ---------------------------------------------------------------- mask pictures read as viewers show them


def _pil_png(
    array: np.ndarray, path: Path, mode: str, *, palette=None, transparency=None, orientation=None
) -> Path:
    """A real PNG written by PIL (RGBA, grey + alpha, palette with tRNS, EXIF orientation)."""
    from PIL import Image

    picture = Image.fromarray(array, mode)
    if palette is not None:
        picture.putpalette([v for entry in palette for v in entry])
    options = {} if transparency is None else {"transparency": transparency}
    if orientation is not None:
        exif = picture.getexif()
        exif[0x0112] = orientation
        options["exif"] = exif
    picture.save(path, **options)
    return path


def test_transparent_background_that_is_not_black_is_never_lesion(tmp_path):
    mask = _l_shape()
    rgba = np.zeros((ROWS, COLS, 4), np.uint8)
    rgba[..., :3] = 255  # white, fully transparent background (alpha 0)
    rgba[mask > 0] = (255, 0, 0, 255)  # opaque red lesion
    np.testing.assert_array_equal(read_mask(_pil_png(rgba, tmp_path / "rgba.png", "RGBA"), _image())[0], mask)
    grey_alpha = np.stack([np.full((ROWS, COLS), 200, np.uint8), mask * 255], axis=-1)
    np.testing.assert_array_equal(
        read_mask(_pil_png(grey_alpha, tmp_path / "la.png", "LA"), _image())[0], mask
    )
    ink = np.zeros((ROWS, COLS, 4), np.uint8)
    ink[mask > 0, 3] = 255  # black ink on a transparent layer: the visible pixels
    np.testing.assert_array_equal(read_mask(_pil_png(ink, tmp_path / "ink.png", "RGBA"), _image())[0], mask)
    red_clear = np.zeros((ROWS, COLS, 4), np.uint8)
    red_clear[..., 0] = 255  # red everywhere, alpha 0 everywhere: nothing visible
    clear = _pil_png(red_clear, tmp_path / "clear.png", "RGBA")
    with pytest.raises(LesionError) as info:
        read_mask(clear, _image())
    assert str(info.value) == (
        f"mask '{clear}': the mask picture is fully transparent (alpha 0 everywhere): nothing is drawn on "
        "it; export the lesion mask again"
    )


def test_palette_mask_background_is_the_black_or_transparent_entry_else_index_0(tmp_path):
    mask = _l_shape()
    # No black or transparent entry: index 0 (white here) is background.
    white_red = _pil_png(mask, tmp_path / "p.png", "P", palette=[(255, 255, 255), (255, 0, 0)])
    np.testing.assert_array_equal(read_mask(white_red, _image())[0], mask)
    # A black entry is background wherever it stands (index 1 here; the lesion is index 0).
    inverted = (1 - mask).astype(np.uint8)
    black_1 = _pil_png(inverted, tmp_path / "b.png", "P", palette=[(0, 255, 0), (0, 0, 0)])
    np.testing.assert_array_equal(read_mask(black_1, _image())[0], mask)
    # A transparent entry (tRNS) is background even when its colour is white.
    clear_1 = _pil_png(
        inverted, tmp_path / "t.png", "P", palette=[(0, 255, 0), (255, 255, 255)], transparency=1
    )
    np.testing.assert_array_equal(read_mask(clear_1, _image())[0], mask)


def test_exif_orientation_applies_to_image_and_mask_alike(tmp_path):
    from PIL import Image

    upright = _l_shape()
    stored = np.rot90(upright, 1)  # stored turned 90 degrees anticlockwise; EXIF 6 turns it back
    image_path = tmp_path / "us.png"
    picture = Image.fromarray((stored * 150 + 40).astype(np.uint8))
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(image_path, exif=exif)
    volume = read_image(image_path)
    assert volume.shape == (1, ROWS, COLS)
    # Exact: integer grey levels (150 * 0/1 + 40), only rotated back.
    np.testing.assert_array_equal(volume.array[0], (upright * 150 + 40).astype(np.float32))
    drawn_upright = _write(upright * 255, tmp_path / "upright_mask.png")  # drawn on the viewer's view
    np.testing.assert_array_equal(read_mask(drawn_upright, volume)[0], upright)
    same_exif = _pil_png((stored * 255).astype(np.uint8), tmp_path / "exif_mask.png", "L", orientation=6)
    np.testing.assert_array_equal(read_mask(same_exif, volume)[0], upright)


def test_mask_covering_the_image_is_refused(tmp_path):
    full = _write(np.full((ROWS, COLS), 255, np.uint8), tmp_path / "full.png")
    with pytest.raises(LesionError) as info:
        read_mask(full, _image())
    assert str(info.value) == (
        f"mask '{full}': the lesion mask covers 100.0 % of the image (more than 95 %): that is not a lesion "
        "outline but an inverted mask, a mask whose background is not black or transparent, or the image "
        "given as the mask. Draw only the lesion (background black or transparent)."
    )
    almost = np.ones((ROWS, COLS), np.uint8)
    almost[:, : int(COLS * 0.05)] = 0  # 95.0 %: still accepted
    assert validate_mask(almost, _image()).sum() == almost.sum()
    almost[0, int(COLS * 0.05)] = 0
    almost[0, 0] = 1
    almost[0, 1] = 1  # 95.04 %: refused
    with pytest.raises(
        LesionError, match=r"case c: the lesion mask covers 95\.0 % of the image \(more than 95 %\)"
    ):
        validate_mask(almost, _image(), case="c")


# ---------------------------------------------------------------- labelmaps with another geometry


def _nrrd(array: np.ndarray, path: Path, spacing, origin=(0.0, 0.0), direction=None) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def _nrrd_image(tmp_path: Path):
    grey = np.random.default_rng(0).integers(0, 256, (ROWS, COLS)).astype(np.uint8)
    return read_image(_nrrd(grey, tmp_path / "us.nrrd", (0.1, 0.1)))


def test_labelmap_with_other_spacing_is_resampled_with_a_warning(tmp_path):
    volume = _nrrd_image(tmp_path)
    coarse = np.zeros((ROWS // 2, COLS // 2), np.uint8)
    coarse[5:20, 6:22] = 1  # 0.2 mm pixels: covers rows 10-39, columns 12-43 of the 0.1 mm image
    read = read_mask(_nrrd(coarse, tmp_path / "coarse.nrrd", (0.2, 0.2), (0.05, 0.05)), volume)
    expected = np.zeros((ROWS, COLS), np.uint8)
    expected[10:40, 12:44] = 1
    np.testing.assert_array_equal(read[0], expected)
    note = (
        "the lesion mask has another geometry than the image (mask origin (0.05, 0.05, 0) mm, pixel size "
        "0.2 x 0.2 x 1 mm; image origin (0, 0, 0) mm, pixel size 0.1 x 0.1 x 1 mm); it was resampled onto "
        "the image grid (nearest neighbour): check that the outline lies on the lesion"
    )
    assert representative_slice(volume, read).warnings[0] == note
    same = read_mask(_nrrd(expected, tmp_path / "same.nrrd", (0.1, 0.1)), volume)  # the note is cleared
    assert representative_slice(volume, same).warnings == ()


def test_labelmap_shifted_or_flipped_lands_on_the_lesion(tmp_path):
    volume = _nrrd_image(tmp_path)
    lesion = _l_shape()
    # Same size, origin 2 columns and 3 rows further: shifted, not taken voxel for voxel.
    shifted = read_mask(_nrrd(lesion, tmp_path / "shift.nrrd", (0.1, 0.1), (0.2, 0.3)), volume)
    np.testing.assert_array_equal(shifted[0], np.roll(np.roll(lesion, 3, axis=0), 2, axis=1))
    # Columns stored right to left (direction -x), origin at the last column: the same lesion.
    flipped = _nrrd(
        lesion[:, ::-1].copy(), tmp_path / "flip.nrrd", (0.1, 0.1), (0.1 * (COLS - 1), 0.0), (-1, 0, 0, 1)
    )
    np.testing.assert_array_equal(read_mask(flipped, volume)[0], lesion)


def test_labelmap_outside_the_image_is_refused(tmp_path):
    volume = _nrrd_image(tmp_path)
    far = _nrrd(_l_shape(), tmp_path / "far.nrrd", (0.1, 0.1), (50.0, 50.0))
    with pytest.raises(LesionError) as info:
        read_mask(far, volume)
    assert str(info.value) == (
        f"the mask '{far}' does not overlap the image: its lesion lies outside the image's extent (mask "
        "origin (50, 50, 0) mm, pixel size 0.1 x 0.1 x 1 mm; image origin (0, 0, 0) mm, pixel size 0.1 x 0.1 "
        "x 1 mm); save the segmentation with the image as reference geometry, or check that the mask belongs "
        "to this image."
    )


def test_picture_image_takes_a_labelmap_of_its_size_pixel_for_pixel(tmp_path):
    volume = read_image(
        _write(np.random.default_rng(1).integers(0, 256, (ROWS, COLS)).astype(np.uint8), tmp_path / "us.png")
    )
    lesion = _l_shape()
    read = read_mask(
        _nrrd(lesion, tmp_path / "m.nrrd", (0.3, 0.3), (4.0, 4.0)), volume
    )  # no geometry to compare
    np.testing.assert_array_equal(read[0], lesion)
    assert representative_slice(volume, read).warnings == ()


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_picture_image_refuses_a_labelmap_of_another_size(tmp_path, suffix):
    # A PNG has no geometry (1 pixel = 1 mm assumed): a labelmap of another size and pixel size
    # cannot be placed on it, and taking it pixel for pixel would put the lesion anywhere.
    volume = read_image(
        _write(np.random.default_rng(1).integers(0, 256, (ROWS, COLS)).astype(np.uint8), tmp_path / "us.png")
    )
    small = np.zeros((40, 50), np.uint8)
    small[10:20, 10:30] = 1
    path = _nrrd(small, tmp_path / f"m{suffix}", (0.25, 0.25))
    with pytest.raises(LesionError) as info:
        read_mask(path, volume)
    assert str(info.value) == (
        f"the mask '{path}' is 50 x 40 pixels but the image is {COLS} x {ROWS} pixels, and its geometry "
        "does not match the image grid; save the segmentation with the image as reference geometry."
    )
