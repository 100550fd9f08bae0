"""Cohort manifest CSV: columns, ids, spacing, labels, encodings, delimiters and paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from DLRPredictorLib.base.errors import ManifestError
from DLRPredictorLib.inputs.cohort_csv import CohortRow, read_cohort_csv, resolve_path


def _write(tmp_path: Path, text: str, *, encoding: str = "utf-8", name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_rows_with_all_optional_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "case_id,image,mask,segment,spacing_mm,label,patient_id,age,birads\n"
        "c1,img/c1.png,img/c1_mask.png,,0.08,1,p1,54,4a\n"
        "c2,img/c2.png,seg/c2.seg.nrrd,Lesion,,0,p1,,3\n",
    )
    rows = read_cohort_csv(path, clinical_names=("age", "birads"))
    assert [r.case_id for r in rows] == ["c1", "c2"]
    c1, c2 = rows
    assert c1.row_number == 2 and c2.row_number == 3
    assert c1.image == "img/c1.png"
    assert c1.resolved_image == tmp_path / "img" / "c1.png"
    assert c1.resolved_mask == tmp_path / "img" / "c1_mask.png"
    assert c1.segment is None and c2.segment == "Lesion"
    assert c1.spacing_mm == 0.08 and c2.spacing_mm is None  # float("0.08") is the literal: exact
    assert (c1.label, c2.label) == (1, 0)
    assert c1.patient_id == "p1"
    assert c1.clinical == {"age": "54", "birads": "4a"}
    assert c2.clinical == {"age": "", "birads": "3"}
    assert c1.extra == {}


def test_missing_files_are_not_a_manifest_error(tmp_path: Path) -> None:
    rows = read_cohort_csv(_write(tmp_path, "case_id,image,mask\nc1,absent.png,absent_mask.png\n"))
    assert rows[0].resolved_image == tmp_path / "absent.png"
    assert not rows[0].resolved_image.exists()


def test_absolute_and_sibling_folder_paths(tmp_path: Path) -> None:
    cohort = tmp_path / "study" / "manifests"
    cohort.mkdir(parents=True)
    absolute = tmp_path / "elsewhere" / "c1.png"
    path = _write(cohort, f"case_id,image,mask\nc1,{absolute},../data/./c1_mask.png\n")
    (row,) = read_cohort_csv(path)
    assert row.resolved_image == absolute
    # Leaving the manifest's folder is allowed, normalised lexically, never resolved further.
    assert row.resolved_mask == tmp_path / "study" / "data" / "c1_mask.png"
    assert ".." not in row.resolved_mask.parts
    assert row.mask == "../data/./c1_mask.png"


def test_symbolic_links_in_paths_are_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (row,) = read_cohort_csv(_write(tmp_path, "case_id,image,mask\nc1,link/c1.png,link/m.png\n"))
    assert row.resolved_image == tmp_path / "link" / "c1.png"


def test_home_and_variables_are_not_expanded(tmp_path: Path) -> None:
    (row,) = read_cohort_csv(_write(tmp_path, "case_id,image,mask\nc1,~/c1.png,$HOME/m.png\n"))
    assert row.resolved_image == tmp_path / "~" / "c1.png"
    assert row.resolved_mask == tmp_path / "$HOME" / "m.png"


def test_windows_separators_in_relative_paths(tmp_path: Path) -> None:
    (row,) = read_cohort_csv(_write(tmp_path, "case_id,image,mask\nc1,images\\c1.png,masks\\c1.png\n"))
    assert row.resolved_image == tmp_path / "images" / "c1.png"


def test_resolve_path_keeps_absolute_paths(tmp_path: Path) -> None:
    assert resolve_path(tmp_path, "/data/x.png") == Path("/data/x.png")
    assert resolve_path(tmp_path, "a/../b.png") == tmp_path / "b.png"


def test_utf8_bom_from_excel(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask\r\nc1,a.png,b.png\r\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    (row,) = read_cohort_csv(path)
    assert row.case_id == "c1" and row.resolved_mask == tmp_path / "b.png"


def test_semicolon_delimiter_with_bom(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'case_id;image;mask;spacing_mm;age\nc1;a.png;b.png;0.1;61\nc2;"x;y.png";m.png;;\n',
        encoding="utf-8-sig",
    )
    rows = read_cohort_csv(path, clinical_names=("age",))
    assert [r.case_id for r in rows] == ["c1", "c2"]
    # Exact: the float parsed from the literal "0.1" written in the CSV.
    assert rows[0].spacing_mm == 0.1 and rows[0].clinical == {"age": "61"}
    assert rows[1].image == "x;y.png"


def test_tab_delimiter(tmp_path: Path) -> None:
    (row,) = read_cohort_csv(_write(tmp_path, "case_id\timage\tmask\nc1\ta.png\tb.png\n"))
    assert row.image == "a.png"


def test_non_ascii_values(tmp_path: Path) -> None:
    (row,) = read_cohort_csv(_write(tmp_path, "case_id,image,mask\nł1,obrazy/zdjęcie.png,m.png\n"))
    assert row.case_id == "ł1" and row.resolved_image == tmp_path / "obrazy" / "zdjęcie.png"


def test_blank_lines_are_skipped_and_rows_keep_spreadsheet_numbers(tmp_path: Path) -> None:
    rows = read_cohort_csv(_write(tmp_path, "case_id,image,mask\n\nc1,a.png,b.png\n,,\nc2,c.png,d.png\n"))
    assert [(r.case_id, r.row_number) for r in rows] == [("c1", 3), ("c2", 5)]


def test_surrounding_spaces_are_ignored(tmp_path: Path) -> None:
    (row,) = read_cohort_csv(_write(tmp_path, " case_id , image ,mask\n c1 , a.png ,b.png\n"))
    assert (row.case_id, row.image) == ("c1", "a.png")


# --- errors -------------------------------------------------------------------------------------------


def test_missing_columns_are_named_with_those_present(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,img,label\nc1,a.png,1\n")
    with pytest.raises(
        ManifestError, match=r"lacks the column\(s\) image, mask; its columns are: case_id, img, label"
    ):
        read_cohort_csv(path)


def test_required_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask\nc1,a.png,b.png\n")
    with pytest.raises(ManifestError, match=r"lacks the column\(s\) label"):
        read_cohort_csv(path, required=("case_id", "image", "mask", "label"))


def test_empty_required_cell(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask,label\nc1,a.png,b.png,1\nc2,c.png,d.png,\n")
    with pytest.raises(ManifestError, match=r"row 3 \(case 'c2'\) has an empty 'label' cell"):
        read_cohort_csv(path, required=("case_id", "image", "mask", "label"))
    path = _write(tmp_path, "case_id,image,mask\nc1,a.png,\n")
    with pytest.raises(ManifestError, match=r"row 2 \(case 'c1'\) has an empty 'mask' cell"):
        read_cohort_csv(path)


def test_duplicate_case_ids_are_named_with_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "case_id,image,mask\nc1,a.png,b.png\nc2,a.png,b.png\nc1,a.png,b.png\nc2,x.png,y.png\nc3,a.png,b.png\n",
    )
    with pytest.raises(
        ManifestError, match=r"duplicate case_id values: 'c1' \(rows 2, 4\); 'c2' \(rows 3, 5\)"
    ):
        read_cohort_csv(path)


@pytest.mark.parametrize("text", ["", "\ufeff", "  \n\n", "\r\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(ManifestError, match=r"'cohort\.csv' is empty: it needs a header row"):
        read_cohort_csv(_write(tmp_path, text))


def test_header_without_cases(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="has a header but no case rows"):
        read_cohort_csv(_write(tmp_path, "case_id,image,mask\n"))


def test_empty_case_id(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask\nc1,a.png,b.png\n  ,c.png,d.png\n")
    with pytest.raises(ManifestError, match="row 3 has an empty case_id"):
        read_cohort_csv(path)


@pytest.mark.parametrize("value", ["abc", "-0.1", "0", "nan", "inf", "0,08"])
def test_bad_spacing(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f'case_id,image,mask,spacing_mm\nc1,a.png,b.png,"{value}"\n')
    with pytest.raises(
        ManifestError, match=rf"row 2 \(case 'c1'\): spacing_mm '{value}' is not a positive number"
    ):
        read_cohort_csv(path)


def test_bad_label(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask,label\nc1,a.png,b.png,yes\n")
    with pytest.raises(ManifestError, match=r"row 2 \(case 'c1'\): label 'yes' is not one of '0', '1'"):
        read_cohort_csv(path)


def test_label_text_mapping_from_the_bundle_classes(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "case_id,image,mask,label\nc1,a.png,b.png,Malignant\nc2,a.png,b.png,benign\nc3,a,b,\n"
    )
    rows = read_cohort_csv(path, label_values={"malignant": 1, "benign": 0})
    assert [r.label for r in rows] == [1, 0, None]
    assert rows[0].label_raw == "Malignant"


def test_too_many_values_in_a_row(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask\nc1,a.png,b.png,extra\n")
    with pytest.raises(ManifestError, match="row 2 has 4 values but the header has 3 columns"):
        read_cohort_csv(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask\nc1,zdjęcie.png,b.png\n", encoding="cp1250")
    with pytest.raises(ManifestError, match=r"is not UTF-8 text .*save it as 'CSV UTF-8'"):
        read_cohort_csv(path)


def test_duplicate_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask,age,age\nc1,a.png,b.png,1,2\n")
    with pytest.raises(ManifestError, match=r"has the column\(s\) age more than once"):
        read_cohort_csv(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot be read"):
        read_cohort_csv(tmp_path / "absent.csv")


# --- clinical columns ---------------------------------------------------------------------------------


def test_unknown_column_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "case_id,image,mask,agee,birads,scanner\nc1,a.png,b.png,54,4a,X\n")
    messages: list[str] = []
    (row,) = read_cohort_csv(path, clinical_names=("age", "birads"), warn=messages.append)
    assert messages == [
        "column 'agee' is not a clinical variable of this bundle (did you mean 'age'?); it is ignored",
        "column 'scanner' is not a clinical variable of this bundle; it is ignored",
    ]
    assert row.clinical == {"birads": "4a"}
    assert row.extra == {"agee": "54", "scanner": "X"}


def test_no_declared_names_accepts_every_other_column(tmp_path: Path) -> None:
    messages: list[str] = []
    (row,) = read_cohort_csv(
        _write(tmp_path, "case_id,image,mask,age\nc1,a.png,b.png,54\n"),
        clinical_names=None,
        warn=messages.append,
    )
    assert messages == []
    assert row.clinical == {"age": "54"}


def test_row_is_immutable(tmp_path: Path) -> None:
    (row,) = read_cohort_csv(_write(tmp_path, "case_id,image,mask\nc1,a.png,b.png\n"))
    assert isinstance(row, CohortRow)
    with pytest.raises(AttributeError):
        row.case_id = "other"  # type: ignore[misc]
