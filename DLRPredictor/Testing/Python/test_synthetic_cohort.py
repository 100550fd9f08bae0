"""synthetic_cohort.py: a deterministic, labelled, patient-grouped synthetic cohort with (or without) signal.

Class differences are measured on the written files (mask solidity, posterior echo, age), never
read back from the generator's internals.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from DLRPredictorLib.base.errors import InputError
from DLRPredictorLib.inputs.cohort_csv import read_cohort_csv
from DLRPredictorLib.inputs.images import read_image
from DLRPredictorLib.inputs.lesion import read_mask, representative_slice
from DLRPredictorLib.inputs.synthetic_cohort import MANIFEST_COLUMNS, write_cohort
from skimage.measure import regionprops
from sklearn.metrics import roc_auc_score

BIRADS_ORDER = {"2": 2.0, "3": 3.0, "4a": 4.0, "4b": 4.3, "4c": 4.6, "5": 5.0}


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _measure(manifest: Path) -> dict[str, np.ndarray]:
    """Per image: label, mask solidity, posterior echo ratio (below the lesion / beside it), age."""
    out = defaultdict(list)
    for row in read_cohort_csv(
        manifest,
        required=("case_id", "image", "mask", "label"),
        clinical_names=None,
        label_values={"malignant": 1, "benign": 0},
    ):
        volume = read_image(row.resolved_image, spacing_mm=row.spacing_mm)
        lesion = representative_slice(volume, read_mask(row.resolved_mask, volume), row.case_id)
        image, mask = lesion.image, lesion.mask.astype(bool)
        _, r1, c0, c1 = lesion.bbox
        band = image[r1 + 3 : r1 + 30]
        out["label"].append(row.label)
        out["solidity"].append(regionprops(mask.astype(int))[0].solidity)
        out["posterior"].append(band[:, c0:c1].mean() / band.mean())
        out["age"].append(float(row.clinical["age"]) if row.clinical["age"] else np.nan)
        out["birads"].append(BIRADS_ORDER.get(row.clinical["birads"], np.nan))
    return {k: np.array(v) for k, v in out.items()}


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    ok = ~np.isnan(score)
    return float(roc_auc_score(y[ok], score[ok]))


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cohorts")
    return {
        "a": write_cohort(root / "a", n_cases=40, seed=0),
        "b": write_cohort(root / "b", n_cases=40, seed=0),
        "c": write_cohort(root / "c", n_cases=40, seed=1),
        "signal80": write_cohort(root / "s80", n_cases=80, seed=0),
        "noise80": write_cohort(root / "n80", n_cases=80, seed=0, signal=False),
    }


def _files(manifest: Path) -> dict[str, bytes]:
    root = manifest.parent
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(cohorts):
    a, b, c = _files(cohorts["a"]), _files(cohorts["b"]), _files(cohorts["c"])
    assert a == b  # byte-identical files: the same seeded generator run twice
    assert a.keys() == c.keys()
    assert a["manifest.csv"] != c["manifest.csv"]
    assert a["images/syn002.nrrd"] != c["images/syn002.nrrd"]


def test_manifest_columns_ids_and_balance(cohorts):
    for key in ("a", "c", "signal80", "noise80"):
        rows = _rows(cohorts[key])
        assert list(rows[0]) == MANIFEST_COLUMNS
        assert len(rows) == (80 if "80" in key else 40)
        assert len({r["case_id"] for r in rows}) == len(rows)
        labels = [r["label"] for r in rows]
        assert set(labels) == {"malignant", "benign"}
        assert 0.3 <= labels.count("malignant") / len(labels) <= 0.7


def test_readable_by_the_manifest_reader_and_lesions_usable(cohorts):
    manifest = cohorts["a"]
    rows = read_cohort_csv(
        manifest,
        required=("case_id", "image", "mask", "label"),
        clinical_names=["age", "birads"],
        label_values={"malignant": 1, "benign": 0},
    )
    assert len(rows) == 40
    for row in rows:
        assert row.label in (0, 1) and row.patient_id and row.spacing_mm in (0.08, 0.1, 0.12)
        assert set(row.clinical) == {"age", "birads"} and not row.extra
        volume = read_image(row.resolved_image, spacing_mm=row.spacing_mm)
        assert volume.spacing[:2] == pytest.approx((row.spacing_mm, row.spacing_mm))
        lesion = representative_slice(volume, read_mask(row.resolved_mask, volume), row.case_id)
        assert lesion.warnings == ()  # one part, inside the image, not uniform
        assert 100 <= lesion.mask.sum() <= 0.2 * lesion.mask.size


def test_mixed_file_formats_carry_the_same_spacing(cohorts):
    rows = _rows(cohorts["a"])
    suffixes = {(Path(r["image"]).suffix, Path(r["mask"]).suffix) for r in rows}
    assert {s[0] for s in suffixes} == {".png", ".nrrd"} and {s[1] for s in suffixes} == {".png", ".nrrd"}
    for row in rows:
        if row["image"].endswith(".nrrd"):
            spacing = sitk.ReadImage(str(cohorts["a"].parent / row["image"])).GetSpacing()
            assert spacing == pytest.approx((float(row["spacing_mm"]),) * 2)


def test_patients_with_several_views_share_label_and_clinical_values(cohorts):
    by_patient = defaultdict(list)
    for row in _rows(cohorts["signal80"]):
        by_patient[row["patient_id"]].append(row)
    multi = [rows for rows in by_patient.values() if len(rows) > 1]
    assert len(multi) >= 5 and len(by_patient) >= 30
    for rows in by_patient.values():
        for col in ("label", "age", "birads", "spacing_mm"):
            assert len({r[col] for r in rows}) == 1, col
    # Views are different images of one lesion, not copies.
    root = cohorts["signal80"].parent
    first, second = multi[0][:2]
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(root / first["image"])))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(root / second["image"])))
    # Exact inequality: any difference at all shows the two cases got different images.
    assert not np.array_equal(a, b)


def test_clinical_values_are_plausible_with_a_few_missing(cohorts):
    rows = _rows(cohorts["signal80"])
    ages = [r["age"] for r in rows]
    birads = [r["birads"] for r in rows]
    assert 0 < ages.count("") < 0.3 * len(rows)
    assert 0 < birads.count("") < 0.3 * len(rows)
    assert all(20 <= int(a) <= 90 for a in ages if a)
    assert {b for b in birads if b} <= set(BIRADS_ORDER)


def test_malignant_lesions_differ_from_benign_but_overlap(cohorts):
    m = _measure(cohorts["signal80"])
    y = m["label"]
    malignant, benign = y == 1, y == 0
    # Irregular, spiculated outlines: lower solidity; posterior shadowing: darker band below.
    assert m["solidity"][malignant].mean() < m["solidity"][benign].mean()
    assert m["posterior"][malignant].mean() < m["posterior"][benign].mean()
    assert m["age"][malignant][~np.isnan(m["age"][malignant])].mean() > np.nanmean(m["age"][benign])
    # Measured on this seed: AUC 0.95 (solidity), 0.87 (posterior), 0.92 (age), 0.86 (BI-RADS).
    # Separable, not perfectly: about one patient in seven looks like the other class.
    for name, score in (
        ("solidity", -m["solidity"]),
        ("posterior", -m["posterior"]),
        ("age", m["age"]),
        ("birads", m["birads"]),
    ):
        assert 0.65 < _auc(y, score) < 0.97, name


def test_signal_false_keeps_the_images_and_randomises_the_labels(cohorts):
    signal, noise = cohorts["signal80"], cohorts["noise80"]
    files_s, files_n = _files(signal), _files(noise)
    assert files_s.keys() == files_n.keys()
    assert all(files_s[k] == files_n[k] for k in files_s if k != "manifest.csv")
    rows_s, rows_n = _rows(signal), _rows(noise)
    for rs, rn in zip(rows_s, rows_n, strict=True):
        assert {k: v for k, v in rs.items() if k != "label"} == {k: v for k, v in rn.items() if k != "label"}
    changed = sum(rs["label"] != rn["label"] for rs, rn in zip(rows_s, rows_n, strict=True))
    assert 0.25 * len(rows_s) < changed < 0.75 * len(rows_s)
    m = _measure(noise)
    # 80 images of about 55 patients: a chance AUC has a standard deviation near 0.07-0.08.
    # Measured: 0.40 (solidity), 0.43 (posterior), 0.54 (age), 0.55 (BI-RADS).
    for name, score in (
        ("solidity", -m["solidity"]),
        ("posterior", -m["posterior"]),
        ("age", m["age"]),
        ("birads", m["birads"]),
    ):
        assert 0.25 < _auc(m["label"], score) < 0.75, name


def test_small_and_invalid_sizes(tmp_path):
    rows = _rows(write_cohort(tmp_path / "one", n_cases=1, seed=3))
    assert len(rows) == 1
    with pytest.raises(InputError, match="at least 1 case"):
        write_cohort(tmp_path / "none", n_cases=0)
