"""Reading breast-ultrasound images into :class:`~DLRPredictorLib.base.case.ImageVolume`.

Supported inputs: PNG, JPEG, BMP and TIFF pictures (grayscale, RGB or RGBA), NRRD, NIfTI and
MetaImage volumes, a single DICOM file and a folder holding one DICOM series. Colour images are
converted to luminance (ITU-R BT.601). Nothing identifying is kept: no file name, no path and no
DICOM patient or study tag ends up in the returned volume.

Colour annotations: ultrasound pictures exported in colour often carry burned-in marks (yellow
calipers, green text, a colour Doppler box). Luminance is used regardless; the strongly coloured
pixels (R, G, B spread of at least ``COLOUR_SPREAD_MIN`` grey levels, which no grey or tinted
B-mode map reaches) are summarised as regions in ``metadata["colour_regions"]`` so that the
lesion layer can warn when such marks lie inside the lesion crop.

Pictures as viewers show them: a JPEG or PNG whose EXIF Orientation tag (274) is not 1 is turned
upright (as ``PIL.ImageOps.exif_transpose`` and every viewer do) before use; a TIFF with such a
tag is refused, because the TIFF decoder applies only its flips, not its rotation. Alpha is ignored
in images (RGBA: luminance of RGB; grey + alpha: the grey). Masks read alpha: see :mod:`lesion`.

Size limit: a file declaring more than ``MAX_PICTURE_PIXELS`` (PNG/JPEG/BMP/TIFF) or
``MAX_VOLUME_VOXELS`` (volumes) is refused from its header, before it is decoded (a decompression
bomb: a few kB that decode to gigabytes).

Cine loops: a multi-frame DICOM whose frames are successive times (Ultrasound Multi-frame
Image Storage, or with Frame Time / Frame Time Vector / Cine Rate) is refused, because its frames
are not a spatial volume; other multi-frame DICOM files (e.g. Enhanced US Volume) are volumes.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..base.case import ImageVolume
from ..base.errors import ImageReadError, InputError

SUPPORTED_FORMATS = (
    "PNG, JPEG, BMP, TIFF, NRRD (.nrrd/.nhdr), NIfTI (.nii/.nii.gz), MetaImage (.mha/.mhd), "
    "a DICOM file or a folder with one DICOM series"
)

# ITU-R BT.601 luma weights (R, G, B), as used by most ultrasound scanners' grayscale export.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Picture formats that carry no trustworthy physical pixel size (PNG pHYs / TIFF resolution tags are
# print or screen resolutions, not the scanner's calibration).
_PICTURE_IOS = {"PNGImageIO": "PNG", "JPEGImageIO": "JPEG", "BMPImageIO": "BMP", "TIFFImageIO": "TIFF"}
_VOLUME_IOS = {
    "NrrdImageIO": "NRRD",
    "NiftiImageIO": "NIfTI",
    "MetaImageIO": "MetaImage",
    "GDCMImageIO": "DICOM",
}
# DICOM attributes from which GDCM takes the in-plane pixel size.
_DICOM_SPACING_TAGS = ("0028|0030", "0018|1164", "0018|2010")

# Strongly coloured pixel: max(R, G, B) - min(R, G, B) at least this many grey levels (0-255). Grey
# B-mode has 0, JPEG noise a few, tinted (sepia / blue) grey maps below ~30; annotation colours
# (yellow, green, cyan, red) are well above 100.
COLOUR_SPREAD_MIN = 60
# At most this many coloured regions are kept (the largest); Doppler boxes and text stay few.
MAX_COLOUR_REGIONS = 200
COLOUR_REGIONS_KEY = "colour_regions"

# DICOM: Ultrasound Multi-frame Image Storage (a cine loop) and the attributes that time frames.
_US_MULTIFRAME_SOP = "1.2.840.10008.5.1.4.1.1.3.1"
_CINE_TAGS = ("0018|1063", "0018|1065", "0018|0040")  # Frame Time, Frame Time Vector, Cine Rate

_DAMAGED = "it may be damaged or incomplete: export or copy it again"

# Decompression bombs. Ultrasound screen captures are at most ~8 megapixels (a 4K screen); 100
# megapixels leaves a 12x margin, and decoded as RGBA plus float32 luminance it needs ~0.8 GB.
# Volumes: an automated breast ultrasound volume is ~150 million voxels; 400 million as float32
# is 1.6 GB, about what a workstation running Slicer can add without swapping.
MAX_PICTURE_PIXELS = 100_000_000
MAX_VOLUME_VOXELS = 400_000_000
# EXIF Orientation (tag 274): 1 = stored upright; 2-8 = mirrored and/or rotated (EXIF 2.32, 4.6.4).
EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TEXT = {
    2: "mirrored left-right",
    3: "rotated 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored and rotated 90 degrees",
    6: "rotated 90 degrees",
    7: "mirrored and rotated 270 degrees",
    8: "rotated 270 degrees",
}

SPACING_FROM_FILE = "file"
SPACING_GIVEN = "given"
SPACING_ASSUMED = "assumed 1 pixel = 1 mm"


def to_luminance(array: np.ndarray, components: int) -> np.ndarray:
    """Convert an RGB or RGBA array to float32 luminance; scalar arrays pass through.

    Args:
        array: pixel values; for ``components`` 3 or 4 the last axis holds the components.
        components: number of components per pixel (1, 3 or 4). Alpha is ignored.

    Returns:
        float32 array without the component axis.

    Raises:
        InputError: for any other number of components or a last axis of the wrong length.
    """
    if components == 1:
        return np.asarray(array, dtype=np.float32)
    if components not in (3, 4):
        raise InputError(
            f"the image has {components} values per pixel; only grayscale, RGB or RGBA images can be "
            "used. Export the ultrasound image as grayscale or colour (RGB) and try again."
        )
    if array.ndim < 2 or array.shape[-1] != components:
        raise InputError(
            f"expected {components} colour components on the last axis, got an array of shape {array.shape}"
        )
    rgb = np.asarray(array[..., :3], dtype=np.float64)
    return (rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float64)).astype(np.float32)


def _as_triplet(value: float | Sequence[float], name: str, default_last: float) -> tuple[float, float, float]:
    values = [float(value)] * 2 if np.isscalar(value) else [float(v) for v in value]  # type: ignore[union-attr, arg-type]
    if len(values) == 2:
        values.append(default_last)
    if len(values) != 3:
        raise InputError(f"{name} must have 2 or 3 values, got {len(values)}")
    return (values[0], values[1], values[2])


def check_values(array: np.ndarray) -> None:
    """Refuse pixel values no feature can be computed from.

    Args:
        array: luminance values.

    Raises:
        InputError: NaN or infinite values, no pixels, or a constant image.
    """
    if not np.all(np.isfinite(array)):
        raise InputError(
            "the image contains NaN or infinite values; texture features cannot be computed. "
            "Check the export of the image (use the original B-mode image)."
        )
    if array.size == 0:
        raise InputError("the image is empty (no pixels)")
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputError(
            f"the image is constant (every pixel is {low:g}); texture is undefined. "
            "Check that the right image or series was loaded."
        )


def component_extreme(op: np.ufunc, array: np.ndarray, count: int) -> np.ndarray:
    """``op`` (``np.maximum`` or ``np.minimum``) of the first ``count`` components of each pixel.

    The same values as ``array[..., :count].max(axis=-1)`` (or ``min``), computed component by
    component: numpy reduces a last axis of 3 or 4 values pixel by pixel, which took 20 ms on a
    470 x 430 RGBA picture, against 0.4 ms this way.

    Args:
        op: ``np.maximum`` or ``np.minimum``.
        array: pixel values, the components on the last axis.
        count: how many leading components take part (at least 1).

    Returns:
        The per-pixel extreme, without the component axis.
    """
    out = array[..., 0]
    for index in range(1, count):
        out = op(out, array[..., index])
    return out


def colour_regions(array: np.ndarray, components: int) -> list[tuple[int, int, int, int, int, int]]:
    """Regions of strongly coloured pixels of an RGB(A) image (likely burned-in annotations).

    Args:
        array: (rows, cols, c) or (slices, rows, cols, c) pixel values, c = ``components``.
        components: 3 or 4 (alpha ignored); any other value gives no regions.

    Returns:
        (slice, row0, row1, col0, col1, pixels) per 8-connected region, end-exclusive, largest
        first, at most ``MAX_COLOUR_REGIONS``.
    """
    if components not in (3, 4):
        return []
    from scipy import ndimage  # colour images only: scipy.ndimage costs 0.3 s to import

    rgb = np.asarray(array)
    if rgb.dtype.kind != "u":  # unsigned: max - min cannot overflow, and the spread is exact
        rgb = rgb.astype(np.float32)
    if rgb.ndim == 3:
        rgb = rgb[np.newaxis]
    spread = component_extreme(np.maximum, rgb, 3) - component_extreme(np.minimum, rgb, 3)
    regions: list[tuple[int, int, int, int, int, int]] = []
    for k in range(spread.shape[0]):
        coloured = spread[k] >= COLOUR_SPREAD_MIN
        if not coloured.any():
            continue
        labels, count = ndimage.label(coloured, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:
                rows, cols = box
                regions.append((k, rows.start, rows.stop, cols.start, cols.stop, int(sizes[index])))
    regions.sort(key=lambda r: (-r[5], r[:5]))
    return regions[:MAX_COLOUR_REGIONS]


def encode_colour_regions(regions: list[tuple[int, int, int, int, int, int]]) -> str:
    """Text form of :func:`colour_regions` for ``ImageVolume.metadata`` (values are strings)."""
    return json.dumps([list(r) for r in regions], separators=(",", ":"))


def decode_colour_regions(metadata: dict[str, str]) -> list[tuple[int, int, int, int, int, int]]:
    """The colour regions stored in a volume's metadata (none when absent or unreadable)."""
    text = (metadata or {}).get(COLOUR_REGIONS_KEY, "")
    try:
        return [tuple(int(v) for v in r) for r in json.loads(text)] if text else []  # type: ignore[misc]
    except (ValueError, TypeError):
        return []


def volume_from_array(
    array: np.ndarray,
    spacing: float | Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] | np.ndarray = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    *,
    components: int | None = None,
    description: str = "",
    metadata: dict[str, str] | None = None,
) -> ImageVolume:
    """Make a validated :class:`ImageVolume` from a numpy array.

    Accepted shapes: (rows, cols), (slices, rows, cols), (rows, cols, 3|4) and
    (slices, rows, cols, 3|4). When ``components`` is None a 3-D array whose last axis has length
    3 or 4 is taken as one RGB(A) picture (a volume only 3 or 4 pixels wide is not an image); pass
    ``components=1`` to force a scalar volume.

    Args:
        array: pixel values, indexed (slice, row, column[, component]).
        spacing: pixel size in mm along (column, row[, slice]); a single number for square pixels.
        origin: LPS position of the first voxel (2 or 3 values).
        direction: 3x3 row-major LPS direction cosines.
        components: components per pixel (1, 3 or 4), or None to infer as described above.
        description: provenance text without paths or patient identifiers.
        metadata: modality-neutral facts (spacing source, pixel type, ...).

    Returns:
        The volume with a float32 (k, j, i) array.

    Raises:
        InputError: 4-D scalar data, unsupported components, NaN/inf or a constant image.
    """
    data = np.asarray(array)
    if components is None:
        components = int(data.shape[-1]) if data.ndim in (3, 4) and data.shape[-1] in (3, 4) else 1
    spatial_ndim = data.ndim - (1 if components > 1 else 0)
    if spatial_ndim not in (2, 3):
        raise InputError(
            f"the image has {spatial_ndim} spatial dimensions (array shape {data.shape}); only 2D "
            "images and 3D volumes can be used. Pick one frame or volume (e.g. one time point)."
        )
    luminance = to_luminance(data, components)
    if luminance.ndim == 2:
        luminance = luminance[np.newaxis]
    check_values(luminance)
    dir_values = tuple(float(d) for d in direction)
    if len(dir_values) != 9:
        raise InputError(f"direction must have 9 values (3x3), got {len(dir_values)}")
    meta = dict(metadata or {})
    meta.setdefault("components", str(components))
    regions = colour_regions(data, components)
    if regions:
        meta[COLOUR_REGIONS_KEY] = encode_colour_regions(regions)
    return ImageVolume(
        array=np.ascontiguousarray(luminance, dtype=np.float32),
        spacing=_as_triplet(spacing, "spacing", 1.0),
        origin=_as_triplet(origin, "origin", 0.0),
        direction=dir_values,
        description=description,
        metadata=meta,
    )


def _read_failed(path: Path, reason: str) -> ImageReadError:
    return ImageReadError(f"cannot read image '{path}': {reason}. Supported formats: {SUPPORTED_FORMATS}.")


def read_with_io(path: Path, io_name: str) -> sitk.Image:
    """Read a file with the ImageIO already chosen for it (``GetImageIOFromFileName``).

    ``sitk.ReadImage`` would search the IO factories a second time: about 0.5 ms per file.

    Raises:
        RuntimeError: the file cannot be decoded (SimpleITK's own error).
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(io_name)
    return reader.Execute()


def _read_sitk(path: Path) -> tuple[sitk.Image | None, str, bool, Path | None, Picture | None]:
    """Read a file or a DICOM series folder.

    Returns (image, format name, whether the file states the pixel size, a DICOM file or None, the
    upright picture for PNG/JPEG/BMP/TIFF or None); the image is None when PIL decoded the picture.
    """
    if path.is_dir():
        # ITK prints a multi-line "No Series were found" warning on stderr for a folder without
        # DICOM; the error below says it in one line (the CLI's one line per problem).
        warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)
        try:
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        finally:
            sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
        if not ids:
            raise _read_failed(path, "the folder contains no DICOM series")
        if len(ids) > 1:
            raise InputError(
                f"the folder '{path}' contains {len(ids)} DICOM series; give a folder with a single series"
            )
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), ids[0])
        check_size(Path(files[0]), "volume", slices=len(files))
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            reason = f"the DICOM series could not be decoded ({_first_line(exc, path)}); {_DAMAGED}"
            raise _read_failed(path, reason) from exc
        return image, "DICOM series", _dicom_has_spacing(Path(files[0])), Path(files[0]), None
    if not path.is_file():
        raise _read_failed(path, "the file does not exist")
    io_name = sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    if not io_name:
        raise _read_failed(path, "the file format is not recognised")
    if io_name not in _PICTURE_IOS:
        check_size(path, "volume")
    try:
        if io_name in _PICTURE_IOS:
            picture = read_picture(path, io_name)
            return picture.image, _PICTURE_IOS[io_name], False, None, picture
        image = read_with_io(path, io_name)
    except RuntimeError as exc:
        reason = f"the file could not be decoded ({_first_line(exc, path)}); {_DAMAGED}"
        raise _read_failed(path, reason) from exc
    if io_name == "GDCMImageIO":
        return image, "DICOM", _dicom_has_spacing(path), path, None
    return image, _VOLUME_IOS.get(io_name, io_name.replace("ImageIO", "")), True, None, None


def _first_line(exc: BaseException, path: Path | None = None) -> str:
    """The reader's own reason, without ITK's object address or the path already named.

    ITK messages look like ``ITK ERROR: PNGImageIO(0x55fb1c57c600): PNG critical error in /a/b.png``;
    the address changes on every run, which would make result files differ between runs.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    text = re.sub(r"^ITK ERROR:\s*\w+\(0x[0-9a-fA-F]+\):\s*", "", text)
    if path is not None:
        text = text.replace(f" in {path}", "").replace(str(path), "the file")
    return re.sub(r"\(?0x[0-9a-fA-F]{6,}\)?", "", text).strip() or type(exc).__name__


def read_header(path: Path) -> sitk.ImageFileReader | None:
    """A reader holding the file's header (size, metadata keys), or None when it cannot be read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def check_size(path: Path, kind: str, what: str = "image", slices: int = 1) -> None:
    """Refuse a file whose header declares more pixels than the limit, before it is decoded.

    Args:
        path: the file (for a DICOM series: its first file).
        kind: ``"picture"`` (limit ``MAX_PICTURE_PIXELS``) or ``"volume"`` (``MAX_VOLUME_VOXELS``).
        what: ``"image"`` or ``"mask"``, for the message.
        slices: number of files of a DICOM series (one slice each).

    Raises:
        ImageReadError: the declared width x height x depth is above the limit.
    """
    reader = read_header(path)
    if reader is None:
        return  # an unreadable header: the decoder names the damage
    size = [int(v) for v in reader.GetSize()] + ([slices] if slices > 1 else [])
    total = 1
    for v in size:
        total *= v  # Python int: no overflow for absurd declared sizes
    limit, unit = (MAX_PICTURE_PIXELS, "pixels") if kind == "picture" else (MAX_VOLUME_VOXELS, "voxels")
    if total > limit:
        raise ImageReadError(
            f"cannot read {what} '{path}': its header declares {' x '.join(map(str, size))} {unit} "
            f"({total / 1e6:.0f} million), above the limit of {limit // 1_000_000} million {unit} "
            "(no ultrasound image is that large: a damaged file or a decompression bomb); check the "
            "file, or crop or downsample a genuine image first."
        )


@dataclass(frozen=True)
class Picture:
    """A decoded PNG/JPEG/BMP/TIFF picture, upright as viewers show it.

    Attributes:
        array: (rows, cols[, components]) or (frames, rows, cols[, components]) pixel values; palette
            indices when ``palette`` is set.
        components: values per pixel (1; 2 grey + alpha; 3 RGB; 4 RGBA).
        pixel_type: the stored pixel type, in words.
        image: SimpleITK's decoded image (geometry of the stored picture), None when PIL decoded it.
        palette: (entries, 4) RGBA palette of a palette picture read as indices, else None.
        orientation: the EXIF orientation that was applied (1: none).
    """

    array: np.ndarray
    components: int
    pixel_type: str
    image: sitk.Image | None = None
    palette: np.ndarray | None = None
    orientation: int = 1


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a picture stored with an EXIF orientation upright (as ``ImageOps.exif_transpose``).

    Args:
        array: (rows, cols[, components]).
        orientation: EXIF Orientation value 1-8; any other value is taken as 1 (viewers ignore it).

    Returns:
        The upright array (rows and columns swapped for orientations 5-8).
    """
    a = np.asarray(array)
    turned = {
        2: lambda: a[:, ::-1],
        3: lambda: a[::-1, ::-1],
        4: lambda: a[::-1],
        5: lambda: a.swapaxes(0, 1),
        6: lambda: np.rot90(a, -1, axes=(0, 1)),
        7: lambda: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda: np.rot90(a, 1, axes=(0, 1)),
    }.get(orientation)
    return np.ascontiguousarray(turned()) if turned is not None else a


def orientation_text(orientation: int) -> str:
    """EXIF orientation in words, e.g. ``"6 (rotated 90 degrees)"``."""
    return f"{orientation} ({_ORIENTATION_TEXT.get(orientation, 'upright')})"


def _palette_rgba(pil: object) -> np.ndarray:
    """(256, 4) RGBA palette of a PIL palette image; tRNS transparency as alpha (default opaque)."""
    rgb = np.asarray(pil.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)  # type: ignore[attr-defined]
    rgba = np.full((256, 4), 255, dtype=np.uint8)
    rgba[:, :3] = 0
    rgba[: min(len(rgb), 256), :3] = rgb[:256]
    transparency = pil.info.get("transparency")  # type: ignore[attr-defined]
    if isinstance(transparency, int):
        rgba[transparency, 3] = 0
    elif isinstance(transparency, (bytes, bytearray)):
        alpha = np.frombuffer(bytes(transparency), dtype=np.uint8)[:256]
        rgba[: alpha.size, 3] = alpha
    return rgba


def _png_has_chunks_after_pixels(path: Path) -> bool:
    """Whether a PNG has chunks between its pixel data (IDAT) and IEND; True when unsure.

    PIL's ``getexif`` on a PNG without an eXIf chunk before the pixels decodes the whole picture to
    look for one after them (SimpleITK decodes it again); only such trailing chunks can add to it.
    """
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return True
            seen_pixels = False
            while len(head := f.read(8)) == 8:
                length, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind == b"IEND":
                    return False
                if kind == b"IDAT":
                    seen_pixels = True
                elif seen_pixels:
                    return True
                f.seek(length + 4, 1)  # the data and its CRC
    except OSError:
        pass
    return True  # no IEND: damaged or cut short, let PIL's decode say what it finds


def read_picture(path: Path, io_name: str, *, what: str = "image", palette_indices: bool = False) -> Picture:
    """Decode a PNG/JPEG/BMP/TIFF picture, upright as viewers show it.

    Pixels come from SimpleITK, as for every other format. PIL reads what SimpleITK ignores: the
    EXIF orientation (applied to JPEG and PNG; a TIFF with one is refused, its decoder applies
    only the flips), the palette of a palette picture (``palette_indices``), and grey + alpha
    PNGs, which SimpleITK cannot decode.

    Args:
        path: the picture.
        io_name: its SimpleITK ImageIO (``GetImageIOFromFileName``).
        what: ``"image"`` or ``"mask"``, for messages.
        palette_indices: return a palette picture's indices and palette instead of its colours.

    Returns:
        The upright picture.

    Raises:
        ImageReadError: above ``MAX_PICTURE_PIXELS`` (PIL's own decompression-bomb error
            included), or a TIFF whose orientation is not 1.
        RuntimeError: SimpleITK cannot decode the file (the caller words the message).
    """
    check_size(path, "picture", what)
    from PIL import Image  # pictures only; Pillow is in the stack (torchvision, scikit-image)

    orientation, indices, palette, grey_alpha = 1, None, None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # own limit checked above
            with Image.open(path) as pil:
                if pil.format == "PNG" and "exif" not in pil.info and not _png_has_chunks_after_pixels(path):
                    exif = Image.Image.getexif(pil)  # all PIL's load could find is read already
                else:
                    exif = pil.getexif()
                orientation = int(exif.get(EXIF_ORIENTATION_TAG, 1) or 1)
                if pil.mode == "P" and palette_indices:
                    indices, palette = np.asarray(pil), _palette_rgba(pil)
                elif pil.mode in ("LA", "La"):
                    grey_alpha = np.asarray(pil.convert("LA"))
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"cannot read {what} '{path}': {_first_line(exc, path)}") from exc
    except Exception:  # PIL's parsers raise many types on damage; SimpleITK's decode names it below
        pass
    if orientation not in _ORIENTATION_TEXT:
        orientation = 1
    if io_name == "TIFFImageIO" and orientation != 1:
        raise ImageReadError(
            f"cannot read {what} '{path}': the TIFF Orientation tag (274) is "
            f"{orientation_text(orientation)}; viewers turn the picture, but the TIFF decoder used here "
            "applies only part of it. Save the image and its mask upright as PNG and use those files."
        )
    image: sitk.Image | None = None
    if indices is not None and palette is not None:
        array, components, pixel_type = indices, 1, "8-bit palette indices"
    else:
        try:
            image = read_with_io(path, io_name)
        except RuntimeError:
            if grey_alpha is None:
                raise
            array, components, pixel_type = grey_alpha, 2, "8-bit grey + alpha"
        else:
            components = image.GetNumberOfComponentsPerPixel()
            array = sitk.GetArrayFromImage(image)
            if components == 1 and array.ndim == image.GetDimension() + 1:
                array = array[..., 0]  # a vector image with a single component
            pixel_type = image.GetPixelIDTypeAsString()
    spatial = array.ndim - (1 if components > 1 else 0)
    if orientation != 1 and spatial == 2:
        array = upright(array, orientation)
    return Picture(array, components, pixel_type, image, palette, orientation if spatial == 2 else 1)


def _dicom_has_spacing(path: Path) -> bool:
    """Whether a DICOM file states its pixel size (GDCM uses 1 mm silently when it does not)."""
    reader = read_header(path)
    if reader is None:
        return False
    return any(reader.HasMetaDataKey(tag) and reader.GetMetaData(tag).strip() for tag in _DICOM_SPACING_TAGS)


def _refuse_cine_loop(path: Path, image: sitk.Image) -> None:
    """Refuse a multi-frame DICOM whose frames are successive times, not slices of a volume."""
    frames = image.GetSize()[2] if image.GetDimension() == 3 else 1
    if frames <= 1:
        return
    reader = read_header(path)
    if reader is None:
        return
    sop = reader.GetMetaData("0008|0016").strip().rstrip("\x00") if reader.HasMetaDataKey("0008|0016") else ""
    timed = any(reader.HasMetaDataKey(tag) and reader.GetMetaData(tag).strip() for tag in _CINE_TAGS)
    if sop == _US_MULTIFRAME_SOP or timed:
        raise InputError(
            f"'{path}' is a multi-frame ultrasound DICOM (a cine loop of {frames} frames over time), "
            "not a still image or a 3D volume; export the single frame that shows the lesion best "
            "(as a DICOM or PNG image) and use that file."
        )


def _dicom_ultrasound_spacing(path: Path) -> tuple[float, float] | None:
    """In-plane pixel size (mm) from the DICOM ultrasound region calibration, if any.

    Ultrasound DICOM usually has no Pixel Spacing; the calibration is in the Sequence of
    Ultrasound Regions (PhysicalDeltaX/Y in cm when the physical units code is 3).
    """
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # an unreadable header simply means no calibration
        return None
    for region in ds.get("SequenceOfUltrasoundRegions", []) or []:
        units_x = region.get("PhysicalUnitsXDirection")
        units_y = region.get("PhysicalUnitsYDirection")
        dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
        if units_x == 3 and units_y == 3 and dx and dy:
            return abs(float(dx)) * 10.0, abs(float(dy)) * 10.0
    return None


def read_image(path: str | Path, spacing_mm: float | None = None) -> ImageVolume:
    """Read an ultrasound image or volume as a luminance :class:`ImageVolume`.

    Spacing rule: NRRD, NIfTI, MetaImage and DICOM (Pixel Spacing, Imager Pixel Spacing, Nominal
    Scanned Pixel Spacing or the ultrasound region calibration) carry the pixel size, and it is
    always used; ``spacing_mm`` is then ignored. PNG, JPEG, BMP and TIFF (and DICOM without any
    calibration) carry none: ``spacing_mm`` is used when given, otherwise 1 pixel = 1 mm is
    assumed. ``metadata["spacing_source"]`` records which ("file", "given",
    "assumed 1 pixel = 1 mm").

    Args:
        path: image file, or a folder holding one DICOM series.
        spacing_mm: square pixel size in mm for files without spacing.

    Returns:
        The volume; 2D images have shape (1, rows, cols).

    Raises:
        ImageReadError: missing or unreadable file (the message names it and the formats).
        InputError: 4-D or multi-component non-RGB data, a multi-frame DICOM cine loop, NaN/inf
            values or a constant image, or a non-positive ``spacing_mm``.
    """
    path = Path(path)
    if spacing_mm is not None and not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise InputError(f"the pixel size (spacing_mm) must be a positive number of mm, got {spacing_mm}")
    image, fmt, has_spacing, dicom_file, picture = _read_sitk(path)
    if fmt == "DICOM" and dicom_file is not None and image is not None:
        _refuse_cine_loop(path, image)
    if image is None:  # a grey + alpha PNG decoded by PIL: a picture without geometry
        image = sitk.Image(1, 1, sitk.sitkUInt8)
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise InputError(
            f"'{path}' is a {dim}D image; only 2D images and 3D volumes can be used. "
            "Extract one frame or volume first."
        )
    spacing = list(image.GetSpacing())
    origin = list(image.GetOrigin())
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    if dim == 2:
        spacing.append(1.0)
        origin.append(0.0)
        full = np.eye(3)
        full[:2, :2] = direction
        direction = full

    source = SPACING_FROM_FILE
    if not has_spacing:
        calibrated = _dicom_ultrasound_spacing(dicom_file) if dicom_file is not None else None
        if calibrated is not None:
            spacing[0], spacing[1] = calibrated
        else:
            source = SPACING_GIVEN if spacing_mm is not None else SPACING_ASSUMED
            spacing[0] = spacing[1] = float(spacing_mm) if spacing_mm is not None else 1.0

    turned = ""
    if picture is not None:
        array, components, pixel_type = picture.array, picture.components, picture.pixel_type
        if components == 2:  # grey + alpha: the grey, alpha ignored like an RGBA image's
            array, components = array[..., 0], 1
            pixel_type += ", alpha ignored"
        if picture.orientation != 1:
            turned = f", turned upright (EXIF orientation {orientation_text(picture.orientation)})"
    else:
        components = image.GetNumberOfComponentsPerPixel()
        array = sitk.GetArrayFromImage(image)
        if components == 1 and array.ndim == dim + 1:
            array = array[..., 0]  # a vector image with a single component
        pixel_type = image.GetPixelIDTypeAsString()
    kind = {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(components, f"{components}-component")
    try:
        volume = volume_from_array(
            array,
            spacing=spacing,
            origin=origin,
            direction=direction.ravel(),
            components=components,
            description=f"{fmt} {kind} image"
            + (", converted to luminance" if components in (3, 4) else "")
            + turned,
            metadata={
                "format": fmt,
                "spacing_source": source,
                "pixel_type": pixel_type,
                "components": str(components),
            },
        )
    except InputError as exc:
        raise InputError(f"image '{path}': {exc}") from exc
    return volume
