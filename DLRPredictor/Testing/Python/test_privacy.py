"""Privacy: DICOM input carrying patient identifiers leaves none of them in any output.

Ultrasound DICOM files are written with pydicom with a patient name, id, birth date, address,
telephone, institution, referring physician, accession number, study id and instance UIDs. They
then go through the real product: the command-line batch with scenes (results CSV, the journal
as it stands while the run is under way, one .mrb per case, stdout and stderr), the statistics
report made from the results, and the logic API into a scene saved as .mrb (with the captured
log records and output). Every output byte, including the inside of .mrb archives and of
gzip-compressed NRRD data, is searched for every identifier.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib import cli
from DLRPredictorLib.inputs import images, phantom

SPACING_MM = 0.1
REPO_ROOT = Path(__file__).resolve().parents[3]

IDENTIFIERS = {
    "PatientName": "Zyxwvut^Qponmlk",
    "PatientID": "PID-73194-XQ",
    "PatientBirthDate": "19570312",
    "OtherPatientIDs": "OPID-55120-ZZ",
    "PatientAddress": "12 Elmwood Crescent Brightvale",
    "PatientTelephoneNumbers": "555-0199-2271",
    "InstitutionName": "Saint Nowhere Breast Clinic",
    "ReferringPhysicianName": "Quibble^Hortense",
    "AccessionNumber": "ACC8842913",
    "StudyID": "STUDY4471",
}
# Also the forms a careless writer would produce: name parts, the date with separators.
DERIVED = ("Zyxwvut", "Qponmlk", "Quibble", "Hortense", "1957-03-12", "12/03/1957", "12.03.1957")
UID_PREFIX = "1.2.826.0.1.3680043.8.498.77"  # made-up root for this test's instance UIDs


def _dicom(path: Path, pixels: np.ndarray, index: int) -> Path:
    """An 8-bit ultrasound image (Ultrasound Image Storage) with region calibration and identifiers."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = f"{UID_PREFIX}.3.{index}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = f"{UID_PREFIX}.1.{index}"
    ds.SeriesInstanceUID = f"{UID_PREFIX}.2.{index}"
    ds.Modality = "US"
    ds.BodyPartExamined = "BREAST"
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    ds.StudyDate = ds.SeriesDate = "20240117"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = pixels.shape[1] - 1, pixels.shape[0] - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = SPACING_MM / 10.0
    ds.SequenceOfUltrasoundRegions = [region]
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _uids(n: int) -> list[str]:
    return [f"{UID_PREFIX}.{kind}.{i}" for i in range(n) for kind in (1, 2, 3)]


def _needles(n_cases: int) -> list[str]:
    return [*IDENTIFIERS.values(), *DERIVED, *_uids(n_cases)]


def _payloads(path: Path, data: bytes | None = None) -> Iterator[tuple[str, bytes]]:
    """The bytes of a file, of each member of a zip (.mrb) and of gzip-compressed NRRD data."""
    data = path.read_bytes() if data is None else data
    yield str(path), data
    if data[:2] == b"PK":
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from _payloads(Path(f"{path}!{member}"), archive.read(member))
    elif data[:4] == b"NRRD" and b"encoding: gzip" in data.split(b"\n\n", 1)[0]:
        yield f"{path}(data)", gzip.decompress(data.split(b"\n\n", 1)[1])


def _pattern(needle: str) -> re.Pattern[bytes]:
    """Case-insensitive; an all-digit needle (the birth date) only as a whole number, so that the
    digits of a feature value such as 0.1195703121 do not count as the date."""
    body = re.escape(needle.encode())
    if needle.isdigit():
        body = rb"(?<![0-9.])" + body + rb"(?![0-9])"
    return re.compile(body, re.IGNORECASE)


def _leaks(texts: dict[str, bytes], needles: list[str]) -> list[str]:
    patterns = {needle: _pattern(needle) for needle in needles}
    return [
        f"{n!r} in {where}"
        for where, data in texts.items()
        for n, pat in patterns.items()
        if pat.search(data)
    ]


def _all_files(*folders: Path) -> dict[str, bytes]:
    texts: dict[str, bytes] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                texts.update(dict(_payloads(path)))
    return texts


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory) -> tuple[Path, int]:
    """Four DICOM cases (two of each label) with PNG masks and a manifest, in a neutral folder."""
    root = tmp_path_factory.mktemp("cohort")
    rows = []
    for index in range(4):
        volume, mask = phantom.make_phantom(index, spacing_mm=SPACING_MM)
        _dicom(root / f"us{index}.dcm", volume.array[0], index)
        sitk.WriteImage(
            sitk.GetImageFromArray((mask[0] * 255).astype(np.uint8)), str(root / f"us{index}_mask.png")
        )
        rows.append(
            {
                "case_id": f"case{index}",
                "image": f"us{index}.dcm",
                "mask": f"us{index}_mask.png",
                "label": "malignant" if index % 2 else "benign",
                "age": str(40 + 5 * index),
                "birads": "4a",
            }
        )
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root, len(rows)


def test_the_inputs_do_carry_the_identifiers(dicom_cohort: tuple[Path, int]) -> None:
    """Guard against a vacuous test: the DICOM files hold every identifier that is searched for."""
    root, n = dicom_cohort
    texts = {p.name: p.read_bytes() for p in root.glob("*.dcm")}
    for needle in [*IDENTIFIERS.values(), "Zyxwvut", "Quibble"]:
        assert all(needle.lower().encode() in t.lower() for t in texts.values()), needle
    assert len(_leaks(texts, _uids(n))) == 3 * n
    volume = images.read_image(root / "us0.dcm")
    assert volume.spacing[:2] == pytest.approx((SPACING_MM, SPACING_MM))  # calibration was read
    assert _leaks({"volume": (volume.description + repr(volume.metadata)).encode()}, _needles(n)) == []


def _run_batch_catching_the_journal(
    manifest: Path, out: Path, scenes: Path, bundle: Path
) -> tuple[str, bytes]:
    """Run `dlrpredictor predict` in a subprocess; copy its journal while the run is under way."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "DLRPredictor")}
    command = [sys.executable, "-m", "DLRPredictorLib", "predict", str(manifest), "--out", str(out)]
    command += ["--bundle", str(bundle), "--scenes", str(scenes), "--no-progress"]
    journal = out.with_name(out.name + ".journal")
    snapshot = b""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
        while proc.poll() is None:
            if journal.exists():
                data = journal.read_bytes()
                if data.count(b"\n") > snapshot.count(b"\n"):
                    snapshot = data
            time.sleep(0.02)
        output = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
    assert proc.returncode == 0, output
    return output, snapshot


def test_batch_scenes_journal_report_and_logs_carry_no_identifier(
    dicom_cohort: tuple[Path, int], tiny_bundle: Path, tmp_path: Path, capfd
) -> None:
    root, n = dicom_cohort
    out, scenes, report_dir = tmp_path / "results.csv", tmp_path / "scenes", tmp_path / "report"
    output, journal = _run_batch_catching_the_journal(root / "manifest.csv", out, scenes, tiny_bundle)
    assert journal.count(b"\n") >= 2, "the journal was not seen with a finished case"
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok"] * n
    assert sorted(p.name for p in scenes.iterdir()) == [f"case{i}.mrb" for i in range(n)]

    argv = [
        "report",
        str(out),
        "--label",
        "label",
        "--scores",
        "probability,score_rad",
        "--report",
        str(report_dir),
    ]
    code = cli.main(argv)
    assert code == 0
    captured = capfd.readouterr()
    assert (report_dir / "index.html").is_file()

    texts = _all_files(tmp_path)
    texts["batch output"] = output.encode()
    texts["journal while running"] = journal
    texts["report command output"] = (captured.out + captured.err).encode()
    assert any(name.endswith(".mrml") for name in texts)  # the scenes were opened and searched
    assert _leaks(texts, _needles(n)) == []


def test_api_scene_and_logs_carry_no_identifier(
    dicom_cohort: tuple[Path, int], tiny_bundle: Path, tmp_path: Path, caplog, capfd
) -> None:
    from DLRPredictorLib import api
    from DLRPredictorLib.inputs import lesion
    from DLRPredictorLib.scene import adapter as scene_adapter
    from DLRPredictorLib.scene import scene_io

    root, n = dicom_cohort
    caplog.set_level(logging.DEBUG)
    scene = scene_adapter.create_scene()
    volume = images.read_image(root / "us1.dcm")
    mask = lesion.read_mask(root / "us1_mask.png", volume)
    vnode = scene_io.add_volume_node(scene, volume, "US image")
    seg, _ = scene_io.add_segmentation_from_mask(scene, mask, vnode, "Lesion segmentation", "Lesion")
    result = api.predict_nodes(vnode, seg, clinical={"age": "45", "birads": "4a"}, bundle_path=tiny_bundle)
    assert 0.0 <= result.probability <= 1.0 and result.heatmap_node_id
    saved = scene_io.save_scene(scene, tmp_path / "case.mrb")
    scene.Clear(1)
    captured = capfd.readouterr()

    texts = dict(_payloads(saved))
    texts["log records"] = "\n".join(r.getMessage() for r in caplog.records).encode()
    texts["output"] = (captured.out + captured.err).encode()
    texts["result"] = repr(result).encode()
    assert any(name.endswith(".mrml") for name in texts)
    assert _leaks(texts, _needles(n)) == []
