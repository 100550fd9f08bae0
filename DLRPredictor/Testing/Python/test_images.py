"""images.py: reading every supported format, spacing rules, luminance and input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib.base.errors import ImageReadError, InputError
from DLRPredictorLib.inputs.images import orientation_text, read_image, to_luminance, volume_from_array


def _asymmetric(rows: int = 24, cols: int = 36) -> np.ndarray:
    """Integer image whose every flip or transpose differs from itself.

    Integer grey levels are exact in float32, so images read back are compared exactly (here and for
    the other integer arrays of this module).
    """
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(rows, cols)).astype(np.uint8)


def _write(array: np.ndarray, path: Path, spacing=None, is_vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def _us_dicom(path: Path, pixels: np.ndarray, regions: bool, patient: str = "Doe^Jane") -> Path:
    """A minimal ultrasound DICOM written with pydicom (no Pixel Spacing attribute)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = patient
    ds.PatientID = "PID-98765"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    if regions:
        region = Dataset()
        region.RegionSpatialFormat = 1
        region.RegionDataType = 1
        region.PhysicalUnitsXDirection = 3  # cm
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = 0.0125
        region.PhysicalDeltaY = 0.0150
        ds.SequenceOfUltrasoundRegions = [region]
    ds.save_as(str(path), enforce_file_format=True)
    return path


# ---------------------------------------------------------------- luminance / arrays


def test_to_luminance_uses_bt601_weights_and_ignores_alpha():
    rgba = np.array([[[100, 0, 0, 255], [0, 200, 0, 0], [10, 20, 30, 17]]], dtype=np.uint8)
    lum = to_luminance(rgba, 4)
    assert lum.dtype == np.float32
    np.testing.assert_allclose(lum, [[29.9, 117.4, 18.15]], rtol=1e-6)
    # Exact: alpha is dropped before any arithmetic, so both run the same float64 product on the
    # same RGB values.
    np.testing.assert_array_equal(to_luminance(rgba[..., :3], 3), lum)


def test_to_luminance_scalar_passthrough_and_bad_components():
    scalar = np.arange(6, dtype=np.uint16).reshape(2, 3)
    out = to_luminance(scalar, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, scalar)  # integers, converted only: exact
    with pytest.raises(InputError, match="2 values per pixel"):
        to_luminance(np.zeros((4, 4, 2)), 2)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((5, 7), (1, 5, 7)), ((3, 5, 7), (3, 5, 7)), ((5, 7, 3), (1, 5, 7)), ((2, 5, 7, 4), (2, 5, 7))],
)
def test_volume_from_array_shapes(shape, expected):
    array = np.random.default_rng(0).integers(0, 255, size=shape).astype(np.uint8)
    volume = volume_from_array(array, spacing=0.25)
    assert volume.shape == expected
    assert volume.array.dtype == np.float32
    assert volume.spacing == (0.25, 0.25, 1.0)  # exact: the given spacing, stored as it is


def test_volume_from_array_rejects_4d_nan_inf_and_constant():
    with pytest.raises(InputError, match="4 spatial dimensions"):
        volume_from_array(np.random.default_rng(0).random((2, 3, 5, 6)))
    bad = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        volume_from_array(bad)
    bad[2, 3] = np.inf
    with pytest.raises(InputError, match="infinite"):
        volume_from_array(bad)
    with pytest.raises(InputError, match="constant"):
        volume_from_array(np.full((8, 8), 42.0))


# ---------------------------------------------------------------- picture formats


def test_png_keeps_orientation_and_assumes_1mm(tmp_path):
    array = _asymmetric()
    volume = read_image(_write(array, tmp_path / "a.png"))
    assert volume.shape == (1, 24, 36)
    # Exact: integer grey levels stored as float32, no arithmetic (also below).
    np.testing.assert_array_equal(volume.array[0], array)
    assert volume.spacing == (1.0, 1.0, 1.0)  # the assumed spacing, a constant: exact
    assert volume.metadata["spacing_source"] == "assumed 1 pixel = 1 mm"


def test_png_spacing_given_and_png_phys_ignored(tmp_path):
    # SimpleITK writes a pHYs chunk from the spacing; a picture's DPI is not a calibration.
    path = _write(_asymmetric(), tmp_path / "a.png", spacing=(0.3, 0.3))
    given = read_image(path, spacing_mm=0.08)
    assert given.spacing == pytest.approx((0.08, 0.08, 1.0))
    assert given.metadata["spacing_source"] == "given"
    # Exact: the default spacing literal, copied unchanged.
    assert read_image(path).spacing == (1.0, 1.0, 1.0)


def test_rgba_png_becomes_luminance(tmp_path):
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, size=(20, 30, 4)).astype(np.uint8)
    volume = read_image(_write(rgba, tmp_path / "c.png", is_vector=True))
    expected = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
    np.testing.assert_allclose(volume.array[0], expected, rtol=1e-6)
    assert volume.metadata["components"] == "4"


@pytest.mark.parametrize("suffix", [".bmp", ".tif"])
def test_lossless_pictures(tmp_path, suffix):
    array = _asymmetric()
    volume = read_image(_write(array, tmp_path / f"a{suffix}"))
    # Exact: integer grey levels, lossless, read back without arithmetic.
    np.testing.assert_array_equal(volume.array[0], array)
    assert volume.metadata["spacing_source"] == "assumed 1 pixel = 1 mm"


def test_jpeg_is_read_approximately(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    array = (yy * 4 + xx * 2).astype(np.uint8)  # smooth: little JPEG loss
    volume = read_image(_write(array, tmp_path / "a.jpg"))
    assert volume.shape == (1, 32, 48)
    assert np.abs(volume.array[0] - array).mean() < 3.0


# ---------------------------------------------------------------- formats with spacing


def test_nrrd_spacing_from_file_wins_over_given(tmp_path):
    array = _asymmetric()
    volume = read_image(_write(array, tmp_path / "a.nrrd", spacing=(0.3, 0.4)), spacing_mm=0.9)
    assert volume.spacing == pytest.approx((0.3, 0.4, 1.0))
    assert volume.metadata["spacing_source"] == "file"
    # Exact: integer grey levels, read back without arithmetic.
    np.testing.assert_array_equal(volume.array[0], array)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_3d_volumes_keep_geometry(tmp_path, suffix):
    array = np.random.default_rng(1).integers(0, 200, size=(4, 10, 12)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.6, 2.0))
    image.SetOrigin((10.0, -5.0, 3.0))
    sitk.WriteImage(image, str(tmp_path / f"v{suffix}"))
    volume = read_image(tmp_path / f"v{suffix}")
    # Exact: the voxels written, read back without arithmetic.
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == pytest.approx((0.5, 0.6, 2.0))
    assert volume.origin == pytest.approx((10.0, -5.0, 3.0))


def test_dicom_file_spacing_and_no_patient_tags(tmp_path):
    array = _asymmetric()
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.3, 0.4))
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp_path / "a.dcm"))
    writer.KeepOriginalImageUIDOn()
    image.SetMetaData("0010|0010", "Doe^Jane")
    image.SetMetaData("0010|0020", "PID-98765")
    writer.Execute(image)
    volume = read_image(tmp_path / "a.dcm", spacing_mm=0.9)
    # Exact: integer grey levels, read back without arithmetic.
    np.testing.assert_array_equal(volume.array[0], array)
    assert volume.spacing == pytest.approx((0.3, 0.4, 1.0))
    assert volume.metadata["spacing_source"] == "file"
    stored = repr(volume.metadata) + volume.description
    assert "Doe" not in stored and "98765" not in stored


def test_ultrasound_dicom_region_calibration(tmp_path):
    pixels = _asymmetric(30, 40)
    volume = read_image(_us_dicom(tmp_path / "us.dcm", pixels, regions=True))
    assert volume.spacing == pytest.approx((0.125, 0.150, 1.0))
    assert volume.metadata["spacing_source"] == "file"
    # Exact: integer pixel values, read back without arithmetic.
    np.testing.assert_array_equal(volume.array[0], pixels)
    assert "Doe" not in repr(volume.metadata) + volume.description


def test_uncalibrated_dicom_uses_given_spacing(tmp_path):
    path = _us_dicom(tmp_path / "us.dcm", _asymmetric(30, 40), regions=False)
    assert read_image(path, spacing_mm=0.2).spacing == pytest.approx((0.2, 0.2, 1.0))
    assert read_image(path).metadata["spacing_source"] == "assumed 1 pixel = 1 mm"


def test_dicom_series_folder(tmp_path):
    array = np.random.default_rng(2).integers(0, 255, size=(3, 16, 20)).astype(np.uint8)
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.1234567"
    for k in range(3):
        sl = sitk.GetImageFromArray(array[k])
        sl.SetSpacing((0.5, 0.5))
        sl.SetMetaData("0020|000e", series_uid)
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0020|0032", f"0\\0\\{k * 1.5}")
        sl.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        sl.SetMetaData("0028|0030", "0.5\\0.5")
        sl.SetMetaData("0008|0060", "US")
        writer.SetFileName(str(folder / f"s{k}.dcm"))
        writer.Execute(sl)
    volume = read_image(folder)
    assert volume.shape == (3, 16, 20)
    # Exact: the voxels written, read back without arithmetic.
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == pytest.approx((0.5, 0.5, 1.5))


# ---------------------------------------------------------------- errors


def test_missing_file_names_file_and_formats(tmp_path):
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "nowhere.png")
    assert "nowhere.png" in str(info.value) and "NRRD" in str(info.value) and "DICOM" in str(info.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        read_image(path)
    other = tmp_path / "notes.xyz"
    other.write_text("hello")
    with pytest.raises(ImageReadError, match="not recognised"):
        read_image(other)


def test_folder_without_dicom(tmp_path):
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path)


def test_4d_and_two_component_files(tmp_path):
    four = sitk.GetImageFromArray(np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32), False)
    sitk.WriteImage(four, str(tmp_path / "four.nrrd"))
    with pytest.raises(InputError, match="4D"):
        read_image(tmp_path / "four.nrrd")
    two = np.random.default_rng(0).random((6, 7, 2)).astype(np.float32)
    with pytest.raises(InputError, match="2 values per pixel"):
        read_image(_write(two, tmp_path / "two.nrrd", is_vector=True))


def test_nan_and_constant_files(tmp_path):
    data = np.random.default_rng(0).random((8, 9)).astype(np.float32)
    data[1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        read_image(_write(data, tmp_path / "nan.nrrd"))
    with pytest.raises(InputError, match="constant"):
        read_image(_write(np.full((8, 9), 7, np.uint8), tmp_path / "flat.png"))


def test_bad_given_spacing(tmp_path):
    with pytest.raises(InputError, match="spacing_mm"):
        read_image(_write(_asymmetric(), tmp_path / "a.png"), spacing_mm=0.0)


# ---------------------------------------------------------------- read as viewers show it (EXIF, alpha, size)


def _exif_picture(array: np.ndarray, path: Path, orientation: int) -> Path:
    """A real PNG/JPEG/TIFF written by PIL with an EXIF Orientation tag (274)."""
    from PIL import Image

    picture = Image.fromarray(array)
    exif = picture.getexif()
    exif[0x0112] = orientation
    options = {"quality": 100, "subsampling": 0} if path.suffix == ".jpg" else {}
    picture.save(path, exif=exif, **options)
    return path


def _chunks(data: bytes) -> list[bytes]:
    """A PNG's chunks, each whole (length, type, data, CRC), after the 8-byte signature."""
    chunks, at = [], 8
    while at < len(data):
        end = at + 12 + int.from_bytes(data[at : at + 4], "big")
        chunks.append(data[at:end])
        at = end
    return chunks


def test_png_exif_after_the_pixels_is_applied(tmp_path):
    """An eXIf chunk after IDAT (allowed by PNG 1.5 extensions) turns the picture as one before it."""
    from DLRPredictorLib.inputs import images

    before = _exif_picture(_asymmetric(), tmp_path / "before.png", 6)
    data = before.read_bytes()
    chunks = _chunks(data)
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1 and rest[-1][4:8] == b"IEND"
    after = tmp_path / "after.png"
    after.write_bytes(data[:8] + b"".join(rest[:-1] + exif + rest[-1:]))
    assert not images._png_has_chunks_after_pixels(before)  # no trailing chunk: PIL need not decode
    assert images._png_has_chunks_after_pixels(after)
    expected = read_image(before)
    assert expected.description.endswith("turned upright (EXIF orientation 6 (rotated 90 degrees))")
    moved = read_image(after)
    assert moved.description == expected.description
    # Exact: the same pixels through the same reader (the trailing chunk changes no pixel).
    np.testing.assert_array_equal(moved.array, expected.array)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_exif_orientation_is_applied_like_pil(tmp_path, orientation):
    from PIL import Image, ImageOps

    path = _exif_picture(_asymmetric(), tmp_path / "o.png", orientation)
    with Image.open(path) as pil:
        expected = np.asarray(ImageOps.exif_transpose(pil))
    volume = read_image(path)
    # Exact: integer grey levels, only transposed (no arithmetic).
    np.testing.assert_array_equal(volume.array[0], expected.astype(np.float32))
    turned = (
        f", turned upright (EXIF orientation {orientation_text(orientation)})" if orientation != 1 else ""
    )
    assert volume.description == "PNG grayscale image" + turned


def test_jpeg_exif_rotation_is_applied(tmp_path):
    stored = np.zeros((40, 60), np.uint8)
    stored[2:10, 3:20] = 220  # a bright block near the stored top-left corner
    volume = read_image(_exif_picture(stored, tmp_path / "r.jpg", 6))  # 6: shown rotated 90 degrees clockwise
    assert volume.shape == (1, 60, 40)
    rows, cols = np.nonzero(volume.array[0] > 110)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 19, 30, 37)
    assert (
        volume.description == "JPEG grayscale image, turned upright (EXIF orientation 6 (rotated 90 degrees))"
    )


def test_tiff_with_an_orientation_tag_is_refused(tmp_path):
    path = _exif_picture(_asymmetric(), tmp_path / "o.tif", 6)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == (
        f"cannot read image '{path}': the TIFF Orientation tag (274) is 6 (rotated 90 degrees); viewers turn "
        "the picture, but the TIFF decoder used here applies only part of it. Save the image and its mask "
        "upright as PNG and use those files."
    )
    # Exact: integer grey levels, read back without arithmetic.
    np.testing.assert_array_equal(
        read_image(_exif_picture(_asymmetric(), tmp_path / "u.tif", 1)).array[0], _asymmetric()
    )


def test_alpha_is_ignored_in_images(tmp_path):
    from PIL import Image

    grey = _asymmetric()
    alpha = np.zeros_like(grey)
    alpha[5:15, 5:25] = 255  # alpha says nothing about an ultrasound image's grey levels
    # Grey + alpha (LA): SimpleITK cannot decode it; PIL does.
    Image.fromarray(np.stack([grey, alpha], axis=-1), "LA").save(tmp_path / "la.png")
    volume = read_image(tmp_path / "la.png")
    # Exact: integer grey levels; alpha dropped, no arithmetic.
    np.testing.assert_array_equal(volume.array[0], grey.astype(np.float32))
    assert volume.metadata["pixel_type"] == "8-bit grey + alpha, alpha ignored"
    rgba = np.stack([grey, grey, grey, alpha], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png").array[0], grey.astype(np.float32), atol=1e-3)


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A real PNG whose IHDR (CRC recomputed) declares width x height: a decompression bomb's header."""
    import struct
    import zlib

    from PIL import Image

    Image.fromarray(_asymmetric()).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    path = _png_declaring(tmp_path / "bomb.png", 20_000, 6_000)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == (
        f"cannot read image '{path}': its header declares 20000 x 6000 pixels (120 million), above the limit "
        "of 100 million pixels (no ultrasound image is that large: a damaged file or a decompression bomb); "
        "check the file, or crop or downsample a genuine image first."
    )
    header = tmp_path / "big.mhd"  # a MetaImage header; its data file need not exist to be refused
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 1000 1000 500\nElementType = MET_UCHAR\n"
        "ElementDataFile = big.raw\n"
    )
    with pytest.raises(
        ImageReadError, match=r"1000 x 1000 x 500 voxels \(500 million\), above the limit of 400 "
    ):
        read_image(header)


def test_pil_decompression_bomb_error_is_an_image_read_error(tmp_path, monkeypatch):
    from PIL import Image

    path = _write(_asymmetric(), tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses above twice this: 864 pixels here
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == (
        f"cannot read image '{path}': Image size (864 pixels) exceeds limit of 200 pixels, could be "
        "decompression bomb DOS attack."
    )
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("components", [1, 2, 3, 4])
def test_component_extreme_is_numpys_max_and_min_over_the_last_axis(dtype, components):
    from DLRPredictorLib.inputs.images import component_extreme

    rng = np.random.default_rng(components)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    low, high = (info.min, info.max) if info else (-300.0, 300.0)
    array = rng.uniform(low, high, size=(2, 9, 11, 4)).astype(dtype)
    for count in range(1, components + 1):
        # Same values picked, not computed: exact for every dtype.
        assert np.array_equal(component_extreme(np.maximum, array, count), array[..., :count].max(axis=-1))
        assert np.array_equal(component_extreme(np.minimum, array, count), array[..., :count].min(axis=-1))


def test_colour_regions_of_8_bit_pictures_match_the_float_spread():
    """The spread in the picture's own unsigned type marks the same pixels as in float32."""
    from DLRPredictorLib.inputs.images import COLOUR_SPREAD_MIN, colour_regions
    from scipy import ndimage

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, size=(40, 50), dtype=np.uint8)
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    rgba[5:9, 30:44, 0] = 255  # a yellow caliper mark (R, G high, B low)
    rgba[5:9, 30:44, 1] = 255
    rgba[5:9, 30:44, 2] = 0
    rgba[20, 3:6, 2] = np.uint8(min(255, int(grey[20, 3:6].max()) + COLOUR_SPREAD_MIN + 1))
    rgba[20, 3:6, :2] = 0
    rgb = rgba[..., :3].astype(np.float32)
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1)) >= COLOUR_SPREAD_MIN
    labels, count = ndimage.label(coloured, structure=np.ones((3, 3), dtype=bool))
    expected = sorted(
        (
            (0, box[0].start, box[0].stop, box[1].start, box[1].stop, int((labels == k).sum()))
            for k, box in enumerate(ndimage.find_objects(labels), start=1)
        ),
        key=lambda r: (-r[5], r[:5]),
    )
    assert count >= 2
    assert colour_regions(rgba, 4) == expected
    assert colour_regions(rgba[..., :3].astype(np.float64), 3) == expected
