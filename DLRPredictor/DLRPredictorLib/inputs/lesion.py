"""Lesion masks: reading, validation and the representative slice (contour variants: :mod:`contours`).

Masks are uint8 (k, j, i) arrays of 0/1 on the image's grid. Sources: PNG/JPEG/BMP/TIFF pictures,
NRRD/NIfTI/MetaImage labelmaps (any non-zero label, or one chosen label) and Slicer ``.seg.nrrd``
segmentations (one segment chosen by name).

Mask pictures are read as a viewer shows them (turned upright by their EXIF orientation, see
:mod:`images`): a transparent pixel is never lesion.

- grey or RGB: any non-black pixel is lesion (JPEG: above half the brightest value, against
  compression noise);
- with an alpha channel (grey + alpha, RGBA) that varies: lesion = visible (alpha > 0) and
  non-black; when every visible pixel is black (black ink on a transparent layer), the visible
  pixels. A constant alpha > 0 carries nothing: the colour rule applies; alpha 0 everywhere
  (nothing visible) is refused;
- palette pictures: the same rule on the palette's colours and transparency; when the picture
  uses no black or transparent entry, index 0 is background (the label-picture convention).

A mask covering more than ``MAX_LESION_FRACTION`` of the image (on any slice) is refused: it is
an inverted mask, a mask whose background is not black or transparent, or the image given as the
mask, not a lesion outline (a lesion seen in ultrasound is always surrounded by tissue).

Geometry: a labelmap or segmentation whose origin, spacing or axes differ from the image's is
placed (when only the origin shifts by whole pixels) or resampled (nearest neighbour) onto the
image grid, with a warning for the resampling; one that does not overlap the image is refused.
Images read without geometry (pictures, or a pixel size given or assumed) take a mask of their size
pixel for pixel.

Disconnected lesions: features are computed on one connected region. When the lesion on the
representative slice has several parts (8-connectivity), the largest is kept and the
:class:`LesionSlice` carries a warning with the number of parts and the size of the part used.

Other notes a :class:`LesionSlice` may carry (the prediction is still made): the lesion spans
several slices of a 3D volume (the slice with the largest area is used), it touches the image
border (named), the image is uniform inside it, or strongly coloured marks (burned-in calipers,
text, a colour Doppler box; see :mod:`images`) lie inside the lesion crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..base.case import ImageVolume, LesionSlice
from ..base.compat import zip_strict
from ..base.errors import ImageReadError, InputError, LesionError
from . import images

# Below ~30 pixels grey-level matrices (GLCM, GLSZM, ...) hold too few pairs/zones to mean
# anything; a 3-pixel extent is the smallest that still has an interior and a border.
MIN_LESION_PIXELS = 30
MIN_LESION_EXTENT = 3
# Context around the lesion box checked for colour marks: the CNN crop's default margin (15 %).
COLOUR_CHECK_MARGIN = 0.15
# A mask covering more than this share of a slice is not a lesion outline (see the module notes).
MAX_LESION_FRACTION = 0.95
# ImageVolume.metadata key through which read_mask hands a note (mask resampled) to the prediction.
MASK_NOTE_KEY = "mask_note"

_PICTURE_IOS = ("PNGImageIO", "JPEGImageIO", "BMPImageIO", "TIFFImageIO")
_MASK_FORMATS = (
    "PNG/JPEG/BMP/TIFF mask pictures, NRRD/NIfTI/MetaImage labelmaps or Slicer .seg.nrrd segmentations"
)


def _prefix(case: str) -> str:
    return f"case {case}: " if case else ""


def _size_text(shape: tuple[int, ...]) -> str:
    """Size as a radiologist reads it: width x height (x slices)."""
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        return f"{shape[1]} x {shape[0]} pixels"
    return f"{shape[2]} x {shape[1]} x {shape[0]} voxels"


def validate_mask(mask: np.ndarray, volume: ImageVolume, case: str = "") -> np.ndarray:
    """Check a lesion mask against its image and binarise it.

    Args:
        mask: (rows, cols) for a 2D image or (slices, rows, cols); any non-zero value is lesion.
        volume: the image the mask belongs to.
        case: case identifier used in messages.

    Returns:
        uint8 (k, j, i) mask of 0/1 with the image's shape.

    Raises:
        LesionError: the sizes differ (both are given), the mask has NaN values, or it is empty.
    """
    data = np.asarray(mask)
    if data.ndim == 2 and volume.shape[0] == 1:
        data = data[np.newaxis]
    if data.shape != volume.shape:
        raise LesionError(
            f"{_prefix(case)}the lesion mask is {_size_text(data.shape)} but the image is "
            f"{_size_text(volume.shape)}; the mask must be drawn on this image (same size)."
        )
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise LesionError(f"{_prefix(case)}the lesion mask contains NaN or infinite values")
    binary = (data != 0).astype(np.uint8)
    if not binary.any():
        raise LesionError(
            f"{_prefix(case)}the lesion segment is empty: paint the lesion in the Segment Editor "
            "(or check that the mask file belongs to this image)."
        )
    fractions = binary.reshape(binary.shape[0], -1).mean(axis=1)
    k = int(np.argmax(fractions))
    if fractions[k] > MAX_LESION_FRACTION:
        where = f" slice {k} of" if binary.shape[0] > 1 else ""
        raise LesionError(
            f"{_prefix(case)}the lesion mask covers {100 * fractions[k]:.1f} % of{where} the image (more "
            f"than {100 * MAX_LESION_FRACTION:.0f} %): that is not a lesion outline but an inverted mask, "
            "a mask whose background is not black or transparent, or the image given as the mask. "
            "Draw only the lesion (background black or transparent)."
        )
    return binary


def picture_lesion(colour: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Lesion pixels of a mask picture as a viewer shows it (rule in the module notes).

    Args:
        colour: per-pixel brightest colour value (grey, or max of R, G, B); non-zero is non-black.
        alpha: per-pixel alpha, or None without an alpha channel.

    Returns:
        Boolean lesion array of ``colour``'s shape.

    Raises:
        LesionError: the alpha channel is 0 everywhere (nothing is visible).
    """
    coloured = np.asarray(colour) != 0
    if alpha is None:
        return coloured
    alpha = np.asarray(alpha)
    if alpha.size and np.all(alpha == alpha.flat[0]) and alpha.flat[0] > 0:
        return coloured  # a constant alpha carries nothing
    visible = alpha > 0
    if not visible.any():
        raise LesionError(
            "the mask picture is fully transparent (alpha 0 everywhere): nothing is drawn on it; "
            "export the lesion mask again"
        )
    lesion = visible & coloured
    return lesion if lesion.any() else visible  # black ink on a transparent layer


def mask_from_array(array: np.ndarray, reference: ImageVolume, case: str = "") -> np.ndarray:
    """Make a validated 0/1 mask from an array (boolean, labels, or an RGB(A) picture).

    Args:
        array: (rows, cols), (slices, rows, cols), or (rows, cols, 3|4) for a 2D reference, read
            like a mask picture (:func:`picture_lesion`: non-black and, with alpha, visible).
        reference: the image the mask belongs to.
        case: case identifier used in messages.

    Returns:
        uint8 (k, j, i) mask of 0/1.

    Raises:
        LesionError: see :func:`validate_mask`.
    """
    data = np.asarray(array)
    is_picture = data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[:2] == reference.shape[1:]
    if is_picture and reference.shape[0] == 1:
        alpha = data[..., 3] if data.shape[-1] == 4 else None
        try:
            data = picture_lesion(np.abs(data[..., :3]).max(axis=-1), alpha)
        except LesionError as exc:
            raise LesionError(f"{_prefix(case)}{exc}") from exc
    return validate_mask(data, reference, case)


def _geometry_text(matrix: np.ndarray) -> str:
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    origin = ", ".join(f"{v:g}" for v in np.round(matrix[:3, 3], 3))
    return f"origin ({origin}) mm, pixel size {' x '.join(f'{v:g}' for v in np.round(spacing, 4))} mm"


def _placement(
    mask_kji: np.ndarray,
    ijk_to_lps: np.ndarray,
    reference: ImageVolume,
    path: Path,
) -> np.ndarray:
    """Put a mask with its own geometry onto the reference grid (rule in the module notes).

    Returns the mask on the reference grid; a resampling leaves a note in
    ``reference.metadata[MASK_NOTE_KEY]``.
    """
    ref_dir = np.asarray(reference.direction, dtype=float).reshape(3, 3)
    ref_matrix = np.eye(4)
    ref_matrix[:3, :3] = ref_dir @ np.diag(reference.spacing)
    ref_matrix[:3, 3] = reference.origin
    matrix = np.array(ijk_to_lps, dtype=float)
    if mask_kji.shape[0] == 1 and reference.shape[0] == 1:
        # Two single-slice grids: the slice axis (thickness, depth) has no meaning; compare in-plane.
        matrix[:3, 2] = ref_matrix[:3, 2]
        depth = np.linalg.solve(ref_matrix[:3, :3], matrix[:3, 3] - ref_matrix[:3, 3])[2]
        matrix[:3, 3] -= ref_matrix[:3, 2] * depth
    same_axes = np.allclose(matrix[:3, :3], ref_matrix[:3, :3], rtol=1e-3, atol=1e-4)
    offset = np.linalg.solve(ref_matrix[:3, :3], matrix[:3, 3] - ref_matrix[:3, 3])
    whole = np.allclose(offset, np.round(offset), atol=1e-2)
    source = reference.metadata.get("spacing_source", images.SPACING_FROM_FILE)
    has_geometry = source == images.SPACING_FROM_FILE  # pictures and given/assumed pixel sizes have none
    same_grid = same_axes and np.allclose(offset, 0, atol=1e-2)
    if mask_kji.shape == reference.shape and (same_grid or not has_geometry):
        return mask_kji  # same grid, or an image without geometry: pixel for pixel
    if same_axes and whole:
        oi, oj, ok = (int(v) for v in np.round(offset))
        placed = np.zeros(reference.shape, dtype=np.uint8)
        ks, js, is_ = mask_kji.shape
        dst = (
            slice(max(ok, 0), min(ok + ks, placed.shape[0])),
            slice(max(oj, 0), min(oj + js, placed.shape[1])),
            slice(max(oi, 0), min(oi + is_, placed.shape[2])),
        )
        src = tuple(slice(d.start - o, d.stop - o) for d, o in zip_strict(dst, (ok, oj, oi)))
        if all(d.stop > d.start for d in dst):
            placed[dst] = mask_kji[src]
    elif not has_geometry:
        raise LesionError(
            f"the mask '{path}' is {_size_text(mask_kji.shape)} but the image is "
            f"{_size_text(reference.shape)}, and its geometry does not match the image grid; "
            "save the segmentation with the image as reference geometry."
        )
    else:
        placed = _resample(mask_kji, matrix, reference)
        reference.metadata[MASK_NOTE_KEY] = (
            f"the lesion mask has another geometry than the image (mask {_geometry_text(matrix)}; image "
            f"{_geometry_text(ref_matrix)}); it was resampled onto the image grid (nearest neighbour): "
            "check that the outline lies on the lesion"
        )
    if mask_kji.any() and not placed.any():
        raise LesionError(
            f"the mask '{path}' does not overlap the image: its lesion lies outside the image's extent "
            f"(mask {_geometry_text(matrix)}; image {_geometry_text(ref_matrix)}); save the segmentation "
            "with the image as reference geometry, or check that the mask belongs to this image."
        )
    return placed


def _resample(mask_kji: np.ndarray, ijk_to_lps: np.ndarray, reference: ImageVolume) -> np.ndarray:
    """Nearest-neighbour resampling of a mask with the given voxel-to-LPS matrix onto the image grid."""
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    source = sitk.GetImageFromArray(np.ascontiguousarray(mask_kji, dtype=np.uint8))
    source.SetSpacing([float(v) for v in spacing])
    source.SetOrigin([float(v) for v in ijk_to_lps[:3, 3]])
    source.SetDirection([float(v) for v in (ijk_to_lps[:3, :3] / spacing).ravel()])
    grid = sitk.Image([int(v) for v in reference.shape[::-1]], sitk.sitkUInt8)
    grid.SetSpacing([float(v) for v in reference.spacing])
    grid.SetOrigin([float(v) for v in reference.origin])
    grid.SetDirection([float(v) for v in reference.direction])
    resampled = sitk.Resample(source, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled).astype(np.uint8)


def _is_segmentation(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return True
    if not name.endswith(".nrrd"):
        return False
    reader = images.read_header(path)
    if reader is None:
        return False
    return reader.HasMetaDataKey("Segment0_ID") or reader.HasMetaDataKey("Segment0_Name")


def _read_segmentation(path: Path, reference: ImageVolume, segment: str | None) -> np.ndarray:
    import slicerio

    images.check_size(path, "volume", "mask")

    try:
        seg = slicerio.read_segmentation(str(path))
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read the segmentation '{path}': {exc}") from exc
    segments = seg.get("segments", [])
    names = [s.get("name", s.get("id", "?")) for s in segments]
    if not segments:
        raise LesionError(
            f"the segmentation '{path}' has no segments: paint the lesion in the Segment Editor"
        )
    if segment is None:
        if len(segments) > 1:
            raise LesionError(
                f"the segmentation '{path}' has {len(segments)} segments ({', '.join(names)}); "
                "name the lesion segment (manifest column 'segment')."
            )
        chosen = segments[0]
    else:
        matches = [s for s in segments if s.get("name") == segment] or [
            s for s in segments if s.get("id") == segment
        ]
        if not matches:
            raise LesionError(
                f"the segmentation '{path}' has no segment named '{segment}'; its segments are: "
                f"{', '.join(names)}."
            )
        chosen = matches[0]
    voxels = seg["voxels"]
    if voxels.ndim == 2:  # a 2D segmentation file: (i, j)
        voxels = voxels[:, :, np.newaxis]
        seg["voxels"] = voxels
    mask_ijk = np.asarray(slicerio.segment_mask(seg, chosen))
    mask_kji = np.ascontiguousarray(mask_ijk.transpose(2, 1, 0)).astype(np.uint8)
    return _placement(mask_kji, np.asarray(seg["ijkToLPS"], dtype=float), reference, path)


def _sitk_ijk_to_lps(image: sitk.Image) -> np.ndarray:
    dim = image.GetDimension()
    matrix = np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    matrix[:dim, :dim] = direction @ np.diag(image.GetSpacing())
    matrix[:dim, 3] = image.GetOrigin()
    return matrix


def _read_labelmap(path: Path, reference: ImageVolume, segment: str | None) -> np.ndarray:
    io_name = sitk.ImageFileReader.GetImageIOFromFileName(str(path))
    if not io_name:
        raise ImageReadError(f"cannot read mask '{path}': unknown file format. Supported: {_MASK_FORMATS}.")
    if io_name in _PICTURE_IOS:
        return _select_label(_picture_values(path, io_name), path, segment)  # no geometry: pixel for pixel
    images.check_size(path, "volume", "mask")
    try:
        image = images.read_with_io(path, io_name)
    except RuntimeError as exc:
        raise ImageReadError(
            f"cannot read mask '{path}': the file could not be decoded; it may be damaged or incomplete: "
            f"export or copy it again. Supported: {_MASK_FORMATS}."
        ) from exc
    if image.GetDimension() not in (2, 3):
        raise InputError(f"the mask '{path}' is {image.GetDimension()}D; a 2D or 3D mask is needed")
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)
    if components in (3, 4):
        values = np.any(array[..., :3] != 0, axis=-1).astype(np.uint8)
    elif components == 1:
        values = array[..., 0] if array.ndim == image.GetDimension() + 1 else array
    else:
        raise InputError(f"the mask '{path}' has {components} values per pixel; use a grayscale or RGB mask")
    return _placement(_select_label(values, path, segment), _sitk_ijk_to_lps(image), reference, path)


def _picture_values(path: Path, io_name: str) -> np.ndarray:
    """Lesion values of a mask picture, upright: grey levels, or 0/1 after the colour/alpha rule."""
    try:
        picture = images.read_picture(path, io_name, what="mask", palette_indices=True)
    except RuntimeError as exc:
        raise ImageReadError(
            f"cannot read mask '{path}': the file could not be decoded; it may be damaged or incomplete: "
            f"export or copy it again. Supported: {_MASK_FORMATS}."
        ) from exc
    data, components = picture.array, picture.components
    try:
        if picture.palette is not None:
            entries = picture.palette[np.unique(data)]
            if not np.any((entries[:, :3].max(axis=1) == 0) | (entries[:, 3] == 0)):
                return (data != 0).astype(np.uint8)  # no black or transparent entry: index 0 is background
            rgba = picture.palette[data]
            return picture_lesion(rgba[..., :3].max(axis=-1), rgba[..., 3]).astype(np.uint8)
        if components == 1:
            values = data
            if io_name == "JPEGImageIO":
                # Lossy compression leaves small non-zero values around the outline: half range.
                values = (values > 0.5 * float(values.max())).astype(np.uint8)
            return values
        if components not in (2, 3, 4):
            raise InputError(
                f"the mask '{path}' has {components} values per pixel; use a grayscale or RGB mask"
            )
        colour = images.component_extreme(np.maximum, data, 3 if components in (3, 4) else 1)
        if io_name == "JPEGImageIO":
            colour = colour > 0.5 * float(colour.max())
        alpha = data[..., -1] if components in (2, 4) else None
        return picture_lesion(colour, alpha).astype(np.uint8)
    except LesionError as exc:
        raise LesionError(f"mask '{path}': {exc}") from exc


def _select_label(values: np.ndarray, path: Path, segment: str | None) -> np.ndarray:
    """0/1 (k, j, i) mask of every non-zero label, or of the label ``segment`` names."""
    if segment is not None:
        try:
            label = int(segment)
        except ValueError:
            raise LesionError(
                f"segment '{segment}' was given, but '{path}' is a labelmap, not a Slicer segmentation; "
                "give a label value (a number) or leave the segment empty."
            ) from None
        present = np.unique(values)
        if label not in present:
            raise LesionError(
                f"the labelmap '{path}' has no label {label}; labels present: "
                f"{', '.join(str(int(v)) for v in present if v != 0) or 'none'}."
            )
        values = values == label
    mask = (values != 0).astype(np.uint8)
    return mask[np.newaxis] if mask.ndim == 2 else mask


def read_mask(path: str | Path, reference: ImageVolume, segment: str | None = None) -> np.ndarray:
    """Read a lesion mask onto the grid of ``reference``.

    Pictures are read upright, transparent pixels as background (module notes) and taken pixel for
    pixel. A labelmap or segmentation on another grid (a segmentation saved cropped to the lesion,
    another pixel size, origin or axes) is placed or resampled onto the image grid; a resampling
    leaves a note in ``reference.metadata[MASK_NOTE_KEY]`` that :func:`representative_slice` turns
    into a warning of the prediction.

    Args:
        path: mask picture, labelmap (NRRD/NIfTI/MetaImage) or Slicer ``.seg.nrrd`` file.
        reference: the image the lesion was drawn on.
        segment: for a segmentation, the lesion segment's name (default: the only segment); for a
            labelmap, a label value such as ``"2"`` (default: every non-zero label).

    Returns:
        uint8 (k, j, i) mask of 0/1 with the image's shape.

    Raises:
        ImageReadError: missing or unreadable file.
        LesionError: unknown or ambiguous segment, size mismatch, a mask outside the image, a fully
            transparent picture, an empty lesion or one covering the image.
    """
    path = Path(path)
    reference.metadata.pop(MASK_NOTE_KEY, None)  # a note belongs to the mask read last
    if not path.is_file():
        what = "is a folder, not a mask file" if path.is_dir() else "the file does not exist"
        raise ImageReadError(f"cannot read mask '{path}': {what}. Supported: {_MASK_FORMATS}.")
    if _is_segmentation(path):
        mask = _read_segmentation(path, reference, segment)
    else:
        mask = _read_labelmap(path, reference, segment)
    try:
        return validate_mask(mask, reference)
    except LesionError as exc:
        raise LesionError(f"mask '{path}': {exc}") from exc


def bounding_box(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the non-zero pixels of a 2D mask.

    Args:
        mask2d: 2D mask; non-zero is lesion.

    Returns:
        (row0, row1, col0, col1), end-exclusive.

    Raises:
        LesionError: the mask is empty.
    """
    binary = np.asarray(mask2d) != 0
    rows = np.flatnonzero(binary.any(axis=1))
    cols = np.flatnonzero(binary.any(axis=0))
    if rows.size == 0:
        raise LesionError("the lesion mask is empty: paint the lesion in the Segment Editor")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def largest_component(mask2d: np.ndarray) -> tuple[np.ndarray, int]:
    """Keep the largest 8-connected region of a 2D mask.

    Args:
        mask2d: 2D mask; non-zero is lesion.

    Returns:
        (uint8 mask of the largest region, number of regions found). Ties go to the region met
        first in row-major order.
    """
    # SimpleITK's fully connected components equal scipy's 8-connected labels, numbered in the
    # same row-major order (test_lesion checks); SimpleITK is loaded anyway, while importing
    # scipy.ndimage would add about 0.3 s to every cold start.
    binary = (np.asarray(mask2d) != 0).astype(np.uint8)
    out = np.zeros_like(binary)
    if not binary.any():
        return out, 0
    # Labelled within the lesion's bounding box only: every region lies inside it, and row-major
    # order inside the box is the image's, so labels, sizes and ties are the same; on a whole
    # 500 x 600 picture the filter took about 2 ms of every prediction.
    row0, row1, col0, col1 = bounding_box(binary)
    components = sitk.ConnectedComponentImageFilter()
    components.SetFullyConnected(True)
    window = sitk.GetImageFromArray(binary[row0:row1, col0:col1])
    labels = sitk.GetArrayFromImage(components.Execute(window))  # a view would outlive the image
    count = components.GetObjectCount()
    keep = 1 if count <= 1 else int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    out[row0:row1, col0:col1] = labels == keep
    return out, int(count)


def _border_sides(bbox: tuple[int, int, int, int], shape: tuple[int, int]) -> list[str]:
    row0, row1, col0, col1 = bbox
    sides = (
        ("top", row0 == 0),
        ("bottom", row1 == shape[0]),
        ("left", col0 == 0),
        ("right", col1 == shape[1]),
    )
    return [name for name, touches in sides if touches]


def _colour_marks(volume: ImageVolume, k: int, bbox: tuple[int, int, int, int]) -> tuple[int, int]:
    """(regions, pixels) of strongly coloured marks on slice k overlapping the lesion crop."""
    row0, row1, col0, col1 = expand_bbox(bbox, volume.shape[1:], COLOUR_CHECK_MARGIN)
    regions = [
        r
        for r in images.decode_colour_regions(volume.metadata)
        if r[0] == k and r[1] < row1 and r[2] > row0 and r[3] < col1 and r[4] > col0
    ]
    return len(regions), sum(r[5] for r in regions)


def representative_slice(volume: ImageVolume, mask: np.ndarray, case: str = "") -> LesionSlice:
    """Take the slice with the largest lesion area and its (largest connected) lesion.

    For a 3D volume the slice k with the most lesion pixels is used (ties: lowest k). If the lesion
    on that slice has several disconnected parts, the largest is kept with a warning. Notes are
    added (the prediction is still possible) when the lesion spans several slices, touches the
    image border, is uniform, or has colour marks in its crop (see the module notes).

    Args:
        volume: the image.
        mask: lesion mask of the image's shape (see :func:`validate_mask`).
        case: case identifier used in messages.

    Returns:
        The 2D slice, mask, pixel spacing, slice index, bounding box and warnings.

    Raises:
        InputError: the image has NaN or infinite values or is constant (volumes that did not
            come through :func:`images.volume_from_array`, e.g. from a scene node).
        LesionError: invalid mask, or a lesion smaller than ``MIN_LESION_PIXELS`` pixels or than
            ``MIN_LESION_EXTENT`` pixels in height or width.
    """
    try:
        images.check_values(volume.array)
    except InputError as exc:
        raise InputError(f"{_prefix(case)}{exc}") from exc
    binary = validate_mask(mask, volume, case)
    areas = binary.reshape(binary.shape[0], -1).sum(axis=1)
    k = int(np.argmax(areas))  # argmax returns the first maximum: lowest index on ties
    kept, count = largest_component(binary[k])
    npx = int(kept.sum())
    warnings: list[str] = [volume.metadata[MASK_NOTE_KEY]] if volume.metadata.get(MASK_NOTE_KEY) else []
    where = f" on slice {k}" if volume.shape[0] > 1 else ""
    spanned = np.flatnonzero(areas)
    if spanned.size > 1:
        warnings.append(
            f"the lesion spans {spanned.size} slices ({int(spanned[0])}-{int(spanned[-1])}); "
            f"features are computed on slice {k}, where its area is largest ({int(areas[k])} pixels)"
        )
    if count > 1:
        warnings.append(
            f"the lesion mask has {count} separate parts{where}; only the largest ({npx} pixels) is used. "
            "If another part is the lesion to assess, segment that one alone"
        )
    row0, row1, col0, col1 = bounding_box(kept)
    height, width = row1 - row0, col1 - col0
    if npx < MIN_LESION_PIXELS or min(height, width) < MIN_LESION_EXTENT:
        raise LesionError(
            f"{_prefix(case)}the lesion is too small ({npx} pixels, {width} x {height}); texture features "
            f"need at least {MIN_LESION_PIXELS} pixels and {MIN_LESION_EXTENT} pixels in each direction. "
            "Check the segmentation."
        )
    sides = _border_sides((row0, row1, col0, col1), kept.shape)
    if sides:
        warnings.append(
            f"the lesion touches the {' and '.join(sides)} border of the image; part of it may lie "
            "outside the image, which changes its shape features: check that the whole lesion is in view"
        )
    image = np.ascontiguousarray(volume.array[k], dtype=np.float32)
    inside = image[kept != 0]
    if float(inside.max()) == float(inside.min()):
        warnings.append("the image is uniform inside the lesion; texture features are degenerate")
    marks, mark_pixels = _colour_marks(volume, k, (row0, row1, col0, col1))
    if marks:
        warnings.append(
            f"{mark_pixels} strongly coloured pixels ({marks} mark{'s' if marks > 1 else ''}) lie in or near "
            "the lesion: burned-in annotations (calipers, text, colour Doppler)? Their grey level is used "
            "as if it were tissue; use an image without annotations if there is one"
        )
    return LesionSlice(
        image=image,
        mask=kept,
        spacing=(float(volume.spacing[0]), float(volume.spacing[1])),
        slice_index=k,
        bbox=(row0, row1, col0, col1),
        warnings=tuple(warnings),
    )


def expand_bbox(
    bbox: tuple[int, int, int, int],
    shape: tuple[int, int],
    margin_fraction: float,
    square: bool = True,
) -> tuple[int, int, int, int]:
    """Enlarge a bounding box by a margin, optionally to a square, kept inside the image.

    Each side grows by ``margin_fraction`` of the box size (of the longer side when ``square``).
    The box stays centred on the lesion where possible and is shifted, then clipped, to fit.

    Args:
        bbox: (row0, row1, col0, col1), end-exclusive.
        shape: image (rows, cols).
        margin_fraction: margin per side as a fraction of the box size (0.1 = 10 %).
        square: make the box square before adding the margin.

    Returns:
        The enlarged (row0, row1, col0, col1), always containing ``bbox``.

    Raises:
        InputError: negative margin or a box outside the image.
    """
    row0, row1, col0, col1 = (int(v) for v in bbox)
    rows, cols = int(shape[0]), int(shape[1])
    if margin_fraction < 0:
        raise InputError(f"the crop margin must be >= 0, got {margin_fraction}")
    if not (0 <= row0 < row1 <= rows and 0 <= col0 < col1 <= cols):
        raise InputError(f"bounding box {bbox} does not lie inside an image of {rows} x {cols}")
    height, width = row1 - row0, col1 - col0
    if square:
        height = width = max(height, width)
    target_h = int(np.ceil(height * (1.0 + 2.0 * margin_fraction)))
    target_w = int(np.ceil(width * (1.0 + 2.0 * margin_fraction)))

    def _fit(start: int, stop: int, length: int, limit: int) -> tuple[int, int]:
        length = min(length, limit)
        begin = int(np.floor((start + stop) / 2.0 - length / 2.0))
        begin = min(max(begin, 0), limit - length)
        return min(begin, start), max(begin + length, stop)

    r0, r1 = _fit(row0, row1, target_h, rows)
    c0, c1 = _fit(col0, col1, target_w, cols)
    return r0, r1, c0, c1
