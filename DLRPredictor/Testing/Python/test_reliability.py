"""The failure catalogue (docs/FAILURES.md): every bad input through the real predictor.

One cohort run (`batch.predict_cohort`, one worker, scenes on) holds one manifest row per
catalogue entry, each made from one case of the synthetic training cohort by a single defect;
each entry's test then reads its own row: the status, the message (what is wrong, with which
input, what to do; one line, no traceback), the warnings of a prediction that is still made, and
that nothing was lost or left behind (exactly one row per case in manifest order, a scene only
for predicted cases, no journal or temporary file, inputs unchanged). Manifest-level errors stop
before any output is written; the logic API leaves the scene as it was.

Elsewhere: bundle tampering and executable file types in test_bundle.py; kill-and-resume,
worker crashes and determinism in test_batch.py; patient identifiers in test_privacy.py;
random images and masks in test_properties.py.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib import cli
from DLRPredictorLib.base.case import ImageVolume
from DLRPredictorLib.base.errors import ClinicalValueError, InputError, LesionError, ManifestError
from DLRPredictorLib.bundle.trust import UNSIGNED_WARNING
from DLRPredictorLib.cohort import batch
from DLRPredictorLib.inference import predictor
from DLRPredictorLib.inputs import cohort_csv as manifest
from DLRPredictorLib.inputs import images, lesion
from scipy import ndimage

MENOPAUSE = "menopause"  # a clinical column the bundle does not know


@dataclass(frozen=True)
class Base:
    """A clean case of the training cohort's kind: every catalogue entry changes one thing."""

    image: np.ndarray  # (rows, cols) float32, integer grey levels 0-255
    mask: np.ndarray  # (rows, cols) uint8 0/1, one part, away from the border
    spacing: float
    age: str
    birads: str

    @property
    def size(self) -> str:
        return f"{self.image.shape[1]} x {self.image.shape[0]} pixels"


@pytest.fixture(scope="module")
def base(synthetic_cohort: Path) -> Base:
    """The first cohort case with complete clinical values whose lesion needs no warning."""
    labels = {"malignant": 1, "benign": 0}
    for row in manifest.read_cohort_csv(
        synthetic_cohort, clinical_names=["age", "birads"], label_values=labels
    ):
        if not (row.clinical.get("age") and row.clinical.get("birads")):
            continue
        volume = images.read_image(row.resolved_image, spacing_mm=row.spacing_mm)
        mask = lesion.read_mask(row.resolved_mask, volume)
        if volume.shape[0] == 1 and not lesion.representative_slice(volume, mask).warnings:
            image = np.round(volume.array[0]).astype(np.float32)
            return Base(image, mask[0], float(volume.spacing[0]), row.clinical["age"], row.clinical["birads"])
    raise AssertionError("the synthetic cohort has no clean case")


# ------------------------------------------------------------------------------------ writers


def _write(
    array: np.ndarray, path: Path, spacing: tuple[float, ...] | None = None, vector: bool = False
) -> str:
    image = sitk.GetImageFromArray(array, isVector=vector)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path.name


def _png(array: np.ndarray, path: Path, dtype: type = np.uint8) -> str:
    return _write(np.asarray(array).astype(dtype), path)


def _cine_dicom(path: Path, frames: np.ndarray) -> str:
    """An ultrasound multi-frame (cine loop) DICOM written with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames = frames.shape[0]
    ds.FrameTime = 33.3
    ds.FrameIncrementPointer = 0x00181063
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.astype(np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path.name


def _with_calipers(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB copy of a grey image with yellow caliper crosses at the lesion's left and right ends."""
    rgb = np.repeat(np.asarray(image, dtype=np.uint8)[..., None], 3, axis=-1)
    rows, cols = np.nonzero(mask)
    centre = int(rows.mean())
    for col in (int(cols.min()), int(cols.max())):
        rgb[centre - 4 : centre + 5, col] = (255, 255, 0)
        rgb[centre, col - 4 : col + 5] = (255, 255, 0)
    return rgb


def _far_corner_block(mask: np.ndarray, side: int = 8) -> tuple[slice, slice]:
    """A side x side block in the image corner farthest from the lesion (2 pixels from the edges)."""
    rows, cols = np.nonzero(mask)
    top = rows.mean() > mask.shape[0] / 2
    left = cols.mean() > mask.shape[1] / 2
    r0 = 2 if top else mask.shape[0] - 2 - side
    c0 = 2 if left else mask.shape[1] - 2 - side
    return slice(r0, r0 + side), slice(c0, c0 + side)


# ------------------------------------------------------------------------------ the catalogue

Row = dict[str, str]


def _good(folder: Path, b: Base) -> Row:
    return {
        "image": _png(b.image, folder / "good.png"),
        "mask": _png(b.mask * 255, folder / "good_mask.png"),
        "spacing_mm": repr(b.spacing),
    }


def _missing_image(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "image": "nowhere.png"}


def _unreadable_image(folder: Path, b: Base) -> Row:
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return {**_good(folder, b), "image": "broken.png"}


def _missing_mask(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "mask": "nowhere_mask.png"}


def _unreadable_mask(folder: Path, b: Base) -> Row:
    (folder / "broken_mask.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return {**_good(folder, b), "mask": "broken_mask.png"}


def _mask_other_size(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "mask": _png(b.mask[::2, ::2] * 255, folder / "half_mask.png")}


def _labelmap(array: np.ndarray, path: Path, spacing: float, origin: tuple[float, float]) -> str:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing, spacing))
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path.name


def _mask_other_geometry(folder: Path, b: Base) -> Row:
    """A labelmap cropped to the lesion, with another pixel size and an origin far from the image."""
    rows, cols = np.nonzero(b.mask)
    crop = b.mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return {
        "image": _write(b.image.astype(np.uint8), folder / "geo_image.nrrd", spacing=(b.spacing, b.spacing)),
        "mask": _labelmap(crop, folder / "geo_mask.nrrd", 2.5 * b.spacing, (1000.0, 1000.0)),
    }


def _mask_resampled(folder: Path, b: Base) -> Row:
    """A labelmap whose origin is shifted by 0.3 pixel: resampled (nearest neighbour) onto the same pixels."""
    shift = 0.3 * b.spacing
    return {
        "image": _write(b.image.astype(np.uint8), folder / "rs_image.nrrd", spacing=(b.spacing, b.spacing)),
        "mask": _labelmap(b.mask, folder / "rs_mask.nrrd", b.spacing, (shift, shift)),
    }


def _empty_mask(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "mask": _png(np.zeros(b.mask.shape), folder / "empty_mask.png")}


def _border(folder: Path, b: Base) -> Row:
    first_row = int(np.flatnonzero(b.mask.any(axis=1))[0])
    shifted = np.roll(b.mask, -first_row, axis=0)  # the lesion moved up to touch the top edge
    return {**_good(folder, b), "mask": _png(shifted * 255, folder / "border_mask.png")}


def _disconnected(folder: Path, b: Base) -> Row:
    two = b.mask.copy()
    two[_far_corner_block(two)] = 1  # a small second part far from the lesion
    return {**_good(folder, b), "mask": _png(two * 255, folder / "two_parts_mask.png")}


def _too_small(folder: Path, b: Base) -> Row:
    rows, cols = np.nonzero(b.mask)
    tiny = np.zeros(b.mask.shape, np.uint8)
    r, c = int(rows.mean()), int(cols.mean())
    tiny[r : r + 5, c : c + 5] = 255  # 25 pixels inside the lesion
    return {**_good(folder, b), "mask": _png(tiny, folder / "tiny_mask.png")}


def _constant(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "image": _png(np.full(b.image.shape, 128), folder / "constant.png")}


def _sixteen_bit(folder: Path, b: Base) -> Row:
    raw = b.image.astype(np.uint16) * 16  # 12-bit raw data
    return {**_good(folder, b), "image": _png(raw, folder / "raw16.png", np.uint16)}


def _sixteen_bit_in_range(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "image": _png(b.image, folder / "in_range16.png", np.uint16)}


def _float_nrrd(folder: Path, b: Base, values: np.ndarray, name: str) -> Row:
    return {
        **_good(folder, b),
        "image": _write(values.astype(np.float32), folder / name, (b.spacing, b.spacing)),
    }


def _float_in_range(folder: Path, b: Base) -> Row:
    return _float_nrrd(folder, b, b.image, "float.nrrd")


def _float_normalised(folder: Path, b: Base) -> Row:
    return _float_nrrd(folder, b, b.image / 255.0, "normalised.nrrd")


def _float_decibels(folder: Path, b: Base) -> Row:
    return _float_nrrd(folder, b, b.image / 255.0 * 60.0 - 60.0, "decibels.nrrd")


def _nan(folder: Path, b: Base) -> Row:
    bad = b.image.copy()
    bad[10, 10], bad[20, 20] = np.nan, np.inf
    return _float_nrrd(folder, b, bad, "nan.nrrd")


def _volume_3d(folder: Path, b: Base) -> Row:
    """Three slices; the middle one is the good case and holds the largest lesion area."""
    smaller = ndimage.binary_erosion(b.mask, iterations=3).astype(np.uint8)
    other = b.image[::-1].copy()
    spacing = (b.spacing, b.spacing, 1.0)
    return {
        "image": _write(np.stack([other, b.image, other]), folder / "volume.nrrd", spacing=spacing),
        "mask": _write(np.stack([smaller, b.mask, smaller]), folder / "volume_mask.nrrd", spacing=spacing),
    }


def _volume_4d(folder: Path, b: Base) -> Row:
    four = np.stack([np.stack([b.image, b.image])] * 2)  # (t, k, j, i)
    return {**_good(folder, b), "image": _write(four, folder / "four_d.nrrd")}


def _cine(folder: Path, b: Base) -> Row:
    return {**_good(folder, b), "image": _cine_dicom(folder / "cine.dcm", np.stack([b.image] * 4))}


def _rgb_annotated(folder: Path, b: Base) -> Row:
    rgb = _with_calipers(b.image, b.mask)
    return {**_good(folder, b), "image": _write(rgb, folder / "calipers.png", vector=True)}


def _clinical(**values: str) -> Callable[[Path, Base], Row]:
    return lambda folder, b: {**_good(folder, b), **values}


def _far_from_training(folder: Path, b: Base) -> Row:
    """The lesion's texture replaced by a one-pixel 0/255 checkerboard: nothing like B-mode."""
    yy, xx = np.indices(b.image.shape)
    board = np.where((yy + xx) % 2 == 0, 0.0, 255.0)
    return {**_good(folder, b), "image": _png(np.where(b.mask != 0, board, b.image), folder / "checker.png")}


@dataclass(frozen=True)
class Entry:
    """One catalogue line: the case written to disk and what the run must say about it.

    ``message`` fragments may hold ``{size}`` and ``{half}`` (the base image's size and half of it).
    ``ood``: True / False asserted, None left open (a defect that changes the texture may or may
    not move the case out of the training distribution).
    """

    case_id: str
    build: Callable[[Path, Base], Row]
    status: str  # "ok" or "error"
    message: tuple[str, ...] = ()  # fragments of the error (status error)
    warnings: tuple[str, ...] = ()  # fragments of the warnings (status ok)
    same_probability_as: str = ""  # a case that must give the bit-identical probability
    ood: bool | None = None


CATALOGUE: tuple[Entry, ...] = (
    Entry("good", _good, "ok", ood=False),
    Entry(
        "missing_image",
        _missing_image,
        "error",
        ("cannot read image", "nowhere.png", "does not exist", "Supported formats"),
    ),
    Entry(
        "unreadable_image",
        _unreadable_image,
        "error",
        (
            "cannot read image",
            "broken.png",
            "could not be decoded (PNG critical error)",
            "export or copy it again",
        ),
    ),
    Entry("missing_mask", _missing_mask, "error", ("cannot read mask", "nowhere_mask.png", "does not exist")),
    Entry(
        "unreadable_mask",
        _unreadable_mask,
        "error",
        ("cannot read mask", "broken_mask.png", "could not be decoded", "export or copy it again"),
    ),
    Entry(
        "mask_other_size",
        _mask_other_size,
        "error",
        ("half_mask.png", "the lesion mask is {half} but the image is {size}", "same size"),
    ),
    Entry(
        "mask_other_geometry",
        _mask_other_geometry,
        "error",
        ("geo_mask.nrrd", "does not overlap the image", "image as reference geometry"),
    ),
    Entry(
        "mask_resampled",
        _mask_resampled,
        "ok",
        warnings=("another geometry than the image", "resampled onto the image grid (nearest neighbour)"),
        same_probability_as="good",
        ood=False,
    ),
    Entry(
        "empty_mask",
        _empty_mask,
        "error",
        ("empty_mask.png", "the lesion segment is empty", "paint the lesion"),
    ),
    Entry(
        "lesion_at_border",
        _border,
        "ok",
        warnings=("the lesion touches the top border", "check that the whole lesion is in view"),
    ),
    Entry(
        "two_lesions",
        _disconnected,
        "ok",
        warnings=("the lesion mask has 2 separate parts", "only the largest", "segment that one alone"),
        same_probability_as="good",
        ood=False,
    ),
    Entry(
        "lesion_too_small",
        _too_small,
        "error",
        (
            "case lesion_too_small",
            "too small (25 pixels, 5 x 5)",
            "at least 30 pixels",
            "Check the segmentation",
        ),
    ),
    Entry(
        "constant_image",
        _constant,
        "error",
        ("constant.png", "the image is constant (every pixel is 128)", "Check that the right image"),
    ),
    Entry(
        "raw_16_bit",
        _sixteen_bit,
        "error",
        ("grey levels range from", "outside the 8-bit B-mode range (0-255)", "export the image"),
    ),
    Entry("uint16_in_range", _sixteen_bit_in_range, "ok", same_probability_as="good", ood=False),
    Entry("float_in_range", _float_in_range, "ok", same_probability_as="good", ood=False),
    Entry(
        "float_normalised",
        _float_normalised,
        "error",
        ("grey levels all lie between 0 and 1", "normalised image or a mask", "not the mask"),
    ),
    Entry(
        "float_decibels",
        _float_decibels,
        "error",
        ("grey levels range from -60 to", "16-bit or float image", "export the image"),
    ),
    Entry(
        "volume_3d",
        _volume_3d,
        "ok",
        warnings=("the lesion spans 3 slices (0-2)", "features are computed on slice 1"),
        same_probability_as="good",
        ood=False,
    ),
    Entry(
        "volume_4d",
        _volume_4d,
        "error",
        ("four_d.nrrd", "is a 4D image", "only 2D images and 3D volumes", "Extract one frame"),
    ),
    Entry(
        "cine_loop_dicom",
        _cine,
        "error",
        ("cine.dcm", "a cine loop of 4 frames", "export the single frame that shows the lesion"),
    ),
    Entry(
        "rgb_calipers",
        _rgb_annotated,
        "ok",
        warnings=("strongly coloured pixels (2 marks)", "calipers", "use an image without annotations"),
    ),
    Entry("nan_values", _nan, "error", ("nan.nrrd", "NaN or infinite values", "Check the export")),
    Entry(
        "age_out_of_range",
        _clinical(age="250"),
        "error",
        ("Age 250 is outside 10-110 years", "check the value and its unit"),
    ),
    Entry(
        "age_not_numeric", _clinical(age="sixty"), "error", ("Age 'sixty' is not a number", "enter a number")
    ),
    Entry(
        "birads_7",
        _clinical(birads="7"),
        "error",
        ("BI-RADS '7' is not one of 1, 2, 3, 4, 4a, 4b, 4c, 5", "enter one of these values"),
    ),
    Entry(
        "far_from_training",
        _far_from_training,
        "ok",
        warnings=("far from the training data", "the prediction may be unreliable"),
        ood=True,
    ),
)
ENTRIES = {e.case_id: e for e in CATALOGUE}


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


@dataclass
class CohortRun:
    """What the catalogue's cohort run produced."""

    base: Base
    rows: list[dict[str, str]]
    by_case: dict[str, dict[str, str]]
    out_dir: Path
    scenes: Path
    warnings: list[str]
    inputs_before: dict[str, str]
    inputs_after: dict[str, str]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, tiny_bundle: Path, base: Base) -> CohortRun:
    """Every catalogue entry as one row of a manifest that lives in its own folder.

    The images are in a sibling folder and the manifest names them as ``../images/<file>``:
    relative paths leading outside the manifest's folder are allowed (resolved textually).
    """
    root = tmp_path_factory.mktemp("catalogue")
    data, lists, out_dir = root / "images", root / "lists", root / "results"
    for folder in (data, lists, out_dir):
        folder.mkdir()
    records = []
    for entry in CATALOGUE:
        row = {"age": base.age, "birads": base.birads, MENOPAUSE: "yes", **entry.build(data, base)}
        row["image"], row["mask"] = f"../images/{row['image']}", f"../images/{row['mask']}"
        records.append({"case_id": entry.case_id, **row})
    manifest_path = lists / "manifest.csv"
    with open(manifest_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]), restval="")
        writer.writeheader()
        writer.writerows(records)
    before = _tree_digest(data)
    warned: list[str] = []
    out, scenes = out_dir / "results.csv", out_dir / "scenes"
    batch.predict_cohort(
        manifest_path, out, tiny_bundle, jobs=1, scenes_dir=scenes, show_progress=False, warn=warned.append
    )
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_case = {r["case_id"]: r for r in rows}
    return CohortRun(base, rows, by_case, out_dir, scenes, warned, before, _tree_digest(data))


# ------------------------------------------------------------------------------ cohort results


def test_one_row_per_case_in_manifest_order_and_nothing_left_behind(cohort: CohortRun) -> None:
    assert [r["case_id"] for r in cohort.rows] == [e.case_id for e in CATALOGUE]
    leftovers = sorted(p.name for p in cohort.out_dir.iterdir() if p.name not in ("results.csv", "scenes"))
    assert leftovers == []  # no journal, no temporary results file
    scene_files = sorted(p.name for p in cohort.scenes.iterdir())
    expected = sorted(f"{e.case_id}.mrb" for e in CATALOGUE if e.status == "ok")
    assert scene_files == expected  # a scene for each predicted case only, and no staging folder


def test_inputs_are_neither_changed_nor_removed(cohort: CohortRun) -> None:
    assert cohort.inputs_after == cohort.inputs_before


@pytest.mark.parametrize("case_id", [e.case_id for e in CATALOGUE])
def test_catalogue_entry(cohort: CohortRun, case_id: str) -> None:
    entry = ENTRIES[case_id]
    row = cohort.by_case[case_id]
    assert row["status"] == entry.status, row["error"]
    if entry.status == "error":
        message = row["error"]
        shape = cohort.base.image.shape
        for fragment in entry.message:
            expected = fragment.format(
                size=cohort.base.size, half=f"{(shape[1] + 1) // 2} x {(shape[0] + 1) // 2} pixels"
            )
            assert expected in message, message
        assert "Traceback" not in message and "\n" not in message and "internal error" not in message
        assert "0x" not in message  # no object addresses: the same input gives the same message
        assert row["probability"] == "" and row["predicted_label"] == ""
        return
    assert row["error"] == ""
    assert 0.0 <= float(row["probability"]) <= 1.0
    for fragment in entry.warnings:
        assert fragment in row["warnings"], row["warnings"]
    if entry.ood is not None:
        assert row["out_of_distribution"] == str(entry.ood).lower(), row["ood_distance"]
    if entry.same_probability_as:
        # Bit-identical: these inputs reach the predictor as the very same pixels and mask as the
        # reference case, and a prediction's digits are reproducible (one thread per crop, README).
        assert row["probability"] == cohort.by_case[entry.same_probability_as]["probability"]


def test_good_case_has_no_warnings(cohort: CohortRun) -> None:
    """The reference case is clean, so each warning above comes from its entry's defect."""
    good = cohort.by_case["good"]
    # Only the bundle's own warning (the tiny bundle is unsigned: bundle.trust), none of the case's.
    assert good["status"] == "ok" and good["warnings"] == UNSIGNED_WARNING


def test_relative_paths_outside_the_manifest_folder_are_allowed(cohort: CohortRun) -> None:
    """Every row names ``../images/...``; the good case was read and predicted from there."""
    assert cohort.by_case["good"]["status"] == "ok"
    assert (cohort.scenes / "good.mrb").is_file()


def test_unknown_clinical_column_is_reported_once_and_ignored(cohort: CohortRun) -> None:
    assert cohort.warnings == [
        f"column '{MENOPAUSE}' is not a clinical variable of this bundle; it is ignored"
    ]
    assert cohort.by_case["good"]["model_used"].startswith("Combined")  # age and birads still used


def test_ood_limit_is_the_documented_rule(cohort: CohortRun, tiny_bundle: Path) -> None:
    ood = predictor.load_predictor(tiny_bundle).pipeline.ood
    assert ood["rule"] == "RMS z-distance > 1.5 x 99.5th pct of training"
    far = cohort.by_case["far_from_training"]
    assert float(far["ood_distance"]) > ood["threshold"] >= float(cohort.by_case["good"]["ood_distance"])
    assert f"limit {ood['threshold']:.2f}" in far["warnings"]


# --------------------------------------------------------------------------- manifest errors


def _write_manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


MANIFEST_ERRORS = {
    "duplicate_case_ids": (
        ["case_id", "image", "mask"],
        [["a", "good.png", "good_mask.png"], ["b", "good.png", "good_mask.png"], ["a", "x.png", "y.png"]],
        ("duplicate case_id values", "'a' (rows 2, 4)", "each case needs its own id"),
    ),
    "missing_required_column": (
        ["case_id", "picture", "mask"],
        [["a", "good.png", "good_mask.png"]],
        ("lacks the column(s) image", "its columns are: case_id, picture, mask"),
    ),
}


@pytest.mark.parametrize("kind", list(MANIFEST_ERRORS))
def test_manifest_errors_stop_before_any_output(
    tmp_path: Path, tiny_bundle: Path, base: Base, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    header, rows, fragments = MANIFEST_ERRORS[kind]
    _good(tmp_path, base)
    manifest_path = _write_manifest(tmp_path / "manifest.csv", header, rows)
    out = tmp_path / "out" / "results.csv"
    with pytest.raises(ManifestError) as info:
        batch.predict_cohort(manifest_path, out, tiny_bundle, show_progress=False)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not out.parent.exists()
    # The command line says the same in one line, without a traceback, and exits with 2.
    argv = ["predict", str(manifest_path), "--out", str(out), "--bundle", str(tiny_bundle), "--no-progress"]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and fragments[0] in err
    assert not out.parent.exists()


# ------------------------------------------------------------------------------ API and scene


def _scene_with_case(scene: Any, image: np.ndarray, mask: np.ndarray, spacing: float) -> tuple[Any, Any]:
    """A volume node named 'US image' and a one-segment segmentation, as a user has them in Slicer."""
    from DLRPredictorLib.scene import scene_io

    # Straight into the node, not through images.volume_from_array: a node's array is whatever the
    # user loaded or computed in Slicer, unvalidated.
    volume = ImageVolume(np.asarray(image, dtype=np.float32)[None], spacing=(spacing, spacing, 1.0))
    vnode = scene_io.add_volume_node(scene, volume, "US image")
    seg, _ = scene_io.add_segmentation_from_mask(scene, mask[None], vnode, "Lesion segmentation", "Lesion")
    return vnode, seg


def _node_names(scene: Any) -> list[str]:
    return sorted(scene.GetNthNode(i).GetName() or "" for i in range(scene.GetNumberOfNodes()))


def _api_case(b: Base, kind: str) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    image, mask = b.image.copy(), b.mask.copy()
    clinical = {"age": b.age, "birads": b.birads}
    if kind == "nan_volume":
        image[3, 3] = np.nan
    elif kind == "sixteen_bit_volume":
        image = image * 16.0
    elif kind == "age_out_of_range":
        clinical["age"] = "250"
    elif kind == "unknown_variable":
        clinical[MENOPAUSE] = "yes"
    elif kind == "lesion_too_small":
        rows, cols = np.nonzero(mask)
        mask[:] = 0
        mask[int(rows.mean()) : int(rows.mean()) + 5, int(cols.mean()) : int(cols.mean()) + 5] = 1
    return image, mask, clinical


API_ERRORS = {
    "nan_volume": (InputError, ("case US image", "NaN or infinite values", "Check the export")),
    "sixteen_bit_volume": (InputError, ("grey levels range from", "8-bit B-mode range", "export the image")),
    "age_out_of_range": (ClinicalValueError, ("Age 250 is outside 10-110 years", "check the value")),
    "unknown_variable": (
        ClinicalValueError,
        (f"unknown clinical variable(s) {MENOPAUSE}", "this model knows age, birads", "leave it out"),
    ),
    "lesion_too_small": (
        LesionError,
        ("case US image", "too small (25 pixels, 5 x 5)", "Check the segmentation"),
    ),
}


@pytest.mark.parametrize("kind", list(API_ERRORS))
def test_api_error_leaves_the_scene_as_it_was(scene: Any, tiny_bundle: Path, base: Base, kind: str) -> None:
    from DLRPredictorLib import api

    error, fragments = API_ERRORS[kind]
    image, mask, clinical = _api_case(base, kind)
    vnode, seg = _scene_with_case(scene, image, mask, base.spacing)
    before = _node_names(scene)
    with pytest.raises(error) as info:
        api.predict_nodes(vnode, seg, clinical=clinical, bundle_path=tiny_bundle)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert _node_names(scene) == before


def test_api_prediction_with_a_warning_writes_it_into_the_prediction_table(
    scene: Any, tiny_bundle: Path, base: Base
) -> None:
    from DLRPredictorLib import api
    from DLRPredictorLib.scene import scene_io

    two = base.mask.copy()
    two[_far_corner_block(two)] = 1
    vnode, seg = _scene_with_case(scene, base.image, two, base.spacing)
    result = api.predict_nodes(
        vnode, seg, clinical={"age": base.age, "birads": base.birads}, bundle_path=tiny_bundle
    )
    assert 0.0 <= result.probability <= 1.0
    table = dict(scene_io.read_key_value_table(scene.GetNodeByID(result.prediction_table_node_id)))
    assert any("2 separate parts" in v for k, v in table.items() if k.startswith("Warning"))


# ---------------------------------------------------------------------- layer-level details


def test_an_undefined_feature_the_model_uses_is_an_error_not_a_nan_probability(
    tiny_bundle: Path, base: Base, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: pyradiomics returns NaN for one feature (as it can on degenerate lesions)."""
    from DLRPredictorLib.features import radiomics as rf

    pred = predictor.load_predictor(tiny_bundle)
    pipe = pred.pipeline
    signatures = [pipe.rad, pipe.dl, *getattr(pipe.dlr, "members", [pipe.dlr])]
    selected = {n for sig in signatures if sig is not None for n in sig.selector.selected_names}
    used = next(c for c in pipe.ood["columns"] if c in pipe.radiomics_columns)
    unused = next(c for c in pipe.radiomics_columns if c not in selected | set(pipe.ood["columns"]))
    real = rf.extract_features
    volume = images.volume_from_array(base.image, spacing=base.spacing)
    for name, refused in ((unused, False), (used, True)):
        monkeypatch.setattr(
            rf, "extract_features", lambda *a, n=name, **k: {**real(*a, **k), n: float("nan")}
        )
        if refused:
            with pytest.raises(LesionError, match=f"the feature {used} that the model uses is undefined"):
                pred.predict(volume, base.mask[None], heatmap=False, case="c")
        else:  # a feature no signature selects does not matter
            assert 0.0 <= pred.predict(volume, base.mask[None], heatmap=False, case="c").probability <= 1.0


def test_colour_marks_away_from_the_lesion_give_no_warning(base: Base) -> None:
    """Annotations elsewhere in the picture (logos, depth scale) do not concern the lesion."""
    rgb = np.repeat(base.image.astype(np.uint8)[..., None], 3, axis=-1)
    block = _far_corner_block(base.mask, side=6)
    rgb[block] = (0, 255, 0)  # a green text block in the corner away from the lesion
    volume = images.volume_from_array(rgb, spacing=base.spacing)
    r, c = block
    assert images.decode_colour_regions(volume.metadata) == [(0, r.start, r.stop, c.start, c.stop, 36)]
    assert not any("coloured" in w for w in lesion.representative_slice(volume, base.mask[None]).warnings)
    near = images.volume_from_array(_with_calipers(base.image, base.mask), spacing=base.spacing)
    assert any("coloured" in w for w in lesion.representative_slice(near, base.mask[None]).warnings)


def test_tinted_grey_map_is_not_an_annotation(base: Base) -> None:
    """A sepia-tinted B-mode (R, G, B spread up to ~40 grey levels) has no strongly coloured pixel."""
    tint = np.stack([base.image, base.image * 0.93, base.image * 0.85], axis=-1)
    volume = images.volume_from_array(tint, spacing=base.spacing)
    assert images.COLOUR_REGIONS_KEY not in volume.metadata


def test_cine_loop_is_refused_but_a_multi_slice_volume_is_not(tmp_path: Path, base: Base) -> None:
    with pytest.raises(InputError, match="cine loop of 3 frames"):
        images.read_image(tmp_path / _cine_dicom(tmp_path / "cine.dcm", np.stack([base.image] * 3)))
    volume = images.read_image(tmp_path / _write(np.stack([base.image] * 3), tmp_path / "v.nrrd"))
    assert volume.shape == (3, *base.image.shape)
