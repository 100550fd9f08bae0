"""Model bundle: atomic writing, and complete verification before any use."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_listed_file
from DLRPredictorLib.base.errors import BundleError
from DLRPredictorLib.bundle import manifest as M
from DLRPredictorLib.bundle import software as S
from DLRPredictorLib.bundle import verify as B
from DLRPredictorLib.bundle import write as W

MODEL_CARD = "# Test bundle\n\nA tiny bundle for tests. Not for clinical use.\n"
CONFIG = {"steps": ["scale", "pca"], "n_components": 3}
NOTES = "first line\nsecond line\n"
PARAMS_YAML = "setting:\n  binWidth: 25\n  force2D: true\n"
ARRAYS = {"mean": np.arange(5, dtype=np.float64), "coef": np.eye(3, dtype=np.float32)}


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _safetensors() -> bytes:
    from safetensors.numpy import save

    return save({"fc.weight": np.full((2, 4), 0.5, dtype=np.float32)})


def _manifest() -> dict[str, Any]:
    return {
        "id": "test-bundle",
        "version": "0.0.1",
        "title": "Test bundle",
        "task": {
            "name": "malignancy",
            "description": "benign vs malignant",
            "positive_class": "malignant",
            "negative_class": "benign",
        },
        "inputs": {
            "image": {"modality": "US", "dimensions": 2, "notes": "B-mode"},
            "clinical_variables": [
                {"name": "age", "type": "numeric", "unit": "years", "minimum": 10, "maximum": 110,
                 "description": "age at imaging", "required": False},
                {"name": "birads", "type": "categorical", "allowed": ["3", "4a", "4b", "4c", "5"],
                 "description": "BI-RADS category", "required": False},
            ],
        },
        "files": {"fusion.npz": {"role": "fusion"}},
        "training": {"datasets": ["synthetic"], "split": "none", "counts": {"train": 0}},
        "cutoff": 0.42,
        "models": {"default": "combined", "image_only": "dlr"},
        "metrics": {"auc": 0.5},
        "licence": "CC BY 4.0",
        "citation": ["A test."],
        "intended_use": "Software tests only.",
    }  # fmt: skip


def _files() -> dict[str, bytes]:
    return {
        "model_card.md": MODEL_CARD.encode(),
        "fusion.npz": _npz(ARRAYS),
        "config.json": json.dumps(CONFIG).encode(),
        "notes.txt": NOTES.encode(),
        "weights.safetensors": _safetensors(),
        "params/radiomics.yaml": PARAMS_YAML.encode(),
    }


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return W.write_bundle(tmp_path / "bundle", _manifest(), _files())


def _edit_manifest(root: Path, change) -> None:
    path = root / "manifest.json"
    man = json.loads(path.read_text(encoding="utf-8"))
    change(man)
    path.write_text(json.dumps(man, indent=2), encoding="utf-8")


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --- schema, write and load ----------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    import jsonschema

    schema = json.loads(M.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_round_trip_returns_the_given_content(bundle_dir: Path) -> None:
    vb = B.load_bundle(bundle_dir)
    given = _files()
    assert set(vb.files) == set(given)
    for name, content in given.items():
        assert vb.read_bytes(name) == content
        entry = vb.manifest["files"][name]
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)
    assert vb.manifest["files"]["fusion.npz"]["role"] == "fusion"  # the caller's role is kept
    assert vb.read_json("config.json") == CONFIG
    assert vb.read_text("notes.txt") == NOTES
    assert vb.read_yaml("params/radiomics.yaml") == {"setting": {"binWidth": 25, "force2D": True}}
    arrays = vb.read_arrays("fusion.npz")
    assert set(arrays) == set(ARRAYS)
    for k, v in ARRAYS.items():
        np.testing.assert_array_equal(arrays[k], v)  # stored and read back in their own dtype: exact
        assert arrays[k].dtype == v.dtype
    # 0.5 is exact in any float format, and storage does no arithmetic.
    np.testing.assert_array_equal(vb.read_arrays("weights.safetensors")["fc.weight"], np.full((2, 4), 0.5))
    # The cutoff is the manifest's JSON number read back (shortest repr round trip): exact.
    assert vb.id == "test-bundle" and vb.version == "0.0.1" and vb.cutoff == 0.42
    assert vb.path == bundle_dir.resolve()
    assert vb.warnings == ()
    age, birads = vb.clinical_variables
    # Exact: the manifest's JSON numbers, parsed, with no arithmetic.
    assert (age.name, age.type, age.unit, age.minimum, age.maximum) == (
        "age",
        "numeric",
        "years",
        10.0,
        110.0,
    )
    assert (birads.name, birads.type, birads.allowed) == (
        "birads",
        "categorical",
        ("3", "4a", "4b", "4c", "5"),
    )
    man = vb.manifest
    assert man["format_version"] == 1
    assert man["software"]["numpy"] == np.__version__
    assert _leftovers(bundle_dir.parent) == []


def test_verified_bytes_are_used_even_if_the_disk_changes_later(bundle_dir: Path) -> None:
    vb = B.load_bundle(bundle_dir)
    (bundle_dir / "notes.txt").write_text("changed after verification\n")
    assert vb.read_text("notes.txt") == NOTES


def test_manifest_copy_cannot_alter_the_bundle(bundle_dir: Path) -> None:
    vb = B.load_bundle(bundle_dir)
    vb.manifest["cutoff"] = 0.99
    assert vb.cutoff == 0.42  # the stored JSON number, read back: exact


def test_unknown_file_name_is_a_bundle_error(bundle_dir: Path) -> None:
    vb = B.load_bundle(bundle_dir)
    with pytest.raises(BundleError, match=r"no file 'absent\.npz'.*fusion\.npz"):
        vb.read_bytes("absent.npz")


def test_pinned_manifest_hash(bundle_dir: Path) -> None:
    digest = hashlib.sha256((bundle_dir / "manifest.json").read_bytes()).hexdigest()
    assert B.load_bundle(bundle_dir, expected_manifest_sha256=digest).id == "test-bundle"
    with pytest.raises(BundleError, match=r"'manifest\.json'.*not the expected one"):
        B.load_bundle(bundle_dir, expected_manifest_sha256="0" * 64)


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert B.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_software_versions_of_the_running_environment() -> None:
    v = S.software_versions()
    expected_keys = {"python", "numpy", "scikit-learn", "torch", "torchvision", "pyradiomics",
                     "SimpleITK", "lightgbm", "xgboost", "dlrpredictor"}  # fmt: skip
    assert set(v) == expected_keys
    assert v["python"] == platform.python_version()
    assert v["numpy"] == np.__version__
    import sklearn

    assert v["scikit-learn"] == sklearn.__version__
    try:
        assert v["torch"] == metadata.version("torch")
    except metadata.PackageNotFoundError:
        assert v["torch"] is None


# --- tampering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_files()))
def test_one_changed_byte_in_any_file_is_refused(bundle_dir: Path, name: str) -> None:
    path = bundle_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"bundle file '{name}' does not match its checksum"):
        B.load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('{\n  "id"', 'x\n  "id"', r"'manifest\.json' is not valid JSON"),
        (
            '"numeric"',
            '"nuheric"',
            r"'manifest\.json' is invalid: field 'inputs\.clinical_variables\[0\]\.type'",
        ),
        ('"cutoff": 0.42', '"cutoff": 7.42', r"'manifest\.json' is invalid: field 'cutoff'"),
        ('"positive_class"', '"positive_clas_"', r"required field 'task\.positive_class' is missing"),
        ('"licence"', '"licencE"', r"required field 'licence' is missing"),
    ],
)
def test_one_changed_byte_in_manifest_is_refused(bundle_dir: Path, old: str, new: str, expected: str) -> None:
    path = bundle_dir / "manifest.json"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1 and len(old) == len(new)
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(BundleError, match=expected):
        B.load_bundle(bundle_dir)


def test_changed_checksum_digit_in_manifest_names_the_file(bundle_dir: Path) -> None:
    digest = hashlib.sha256(_files()["notes.txt"]).hexdigest()
    changed = ("1" if digest[0] != "1" else "2") + digest[1:]
    path = bundle_dir / "manifest.json"
    path.write_text(path.read_text(encoding="utf-8").replace(digest, changed), encoding="utf-8")
    with pytest.raises(BundleError, match=r"bundle file 'notes\.txt' does not match its checksum"):
        B.load_bundle(bundle_dir)


def test_changed_size_names_the_file(bundle_dir: Path) -> None:
    (bundle_dir / "notes.txt").write_text(NOTES + "more\n")
    with pytest.raises(BundleError, match=r"bundle file 'notes\.txt' has \d+ bytes but"):
        B.load_bundle(bundle_dir)


def test_missing_listed_file(bundle_dir: Path) -> None:
    (bundle_dir / "config.json").unlink()
    with pytest.raises(BundleError, match=r"'config\.json' listed in manifest\.json is missing"):
        B.load_bundle(bundle_dir)


def test_missing_manifest(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        B.load_bundle(bundle_dir)


def test_duplicate_json_key_in_manifest_is_refused(bundle_dir: Path) -> None:
    path = bundle_dir / "manifest.json"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"cutoff": 0.42', '"cutoff": 0.42, "cutoff": 0.1'), encoding="utf-8")
    with pytest.raises(
        BundleError, match=r"'manifest\.json' is not valid JSON \(key 'cutoff' appears twice\)"
    ):
        B.load_bundle(bundle_dir)


# --- files that must never be loaded ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("extra.pkl", pickle.dumps({"a": 1}), r"'extra\.pkl' is a Python pickle"),
        ("model.pt", b"PK\x03\x04 torch", r"'model\.pt' is a PyTorch checkpoint"),
        ("pytorch_model.bin", b"\x80\x02", r"'pytorch_model\.bin' is a PyTorch binary checkpoint"),
        ("hook.py", b"import os\n", r"'hook\.py' is Python code"),
        ("lib/fast.so", b"\x7fELF", r"'lib/fast\.so' is a native library"),
        ("readme.txt", b"harmless\n", r"holds the file 'readme\.txt' that manifest\.json does not list"),
        (".DS_Store", b"\x00", r"holds the file '\.DS_Store' that manifest\.json does not list"),
    ],
)
def test_unlisted_file_is_refused(bundle_dir: Path, name: str, content: bytes, expected: str) -> None:
    target = bundle_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    with pytest.raises(BundleError, match=expected):
        B.load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("extra.pkl", pickle.dumps({"a": 1}), r"'extra\.pkl' is a Python pickle.*run any code"),
        ("weights.pth", b"\x80\x02", r"'weights\.pth' is a PyTorch checkpoint"),
        ("model.h5", b"\x89HDF", r"'model\.h5' is an HDF5/Keras model"),
        ("model.onnx", b"\x08\x07", r"'model\.onnx' has a type \('\.onnx'\) that a bundle may not hold"),
        (
            "objects.npz",
            _npz({"o": np.array([{"a": 1}], dtype=object)}),
            r"'objects\.npz' holds an object array",
        ),
        ("objects.npy", b"", r"'objects\.npy' holds an object array"),
        ("bad.safetensors", b"\xff" * 16, r"'bad\.safetensors' is not a valid array file"),
    ],
)
def test_listed_unsafe_file_is_refused_even_with_a_correct_hash(
    bundle_dir: Path, name: str, content: bytes, expected: str
) -> None:
    if name == "objects.npy":
        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        content = buf.getvalue()
    write_listed_file(bundle_dir, name, content)  # a correct hash: only the type rules refuse it
    with pytest.raises(BundleError, match=expected):
        B.load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ("../outside.txt", r"'\.\./outside\.txt' points outside the bundle folder"),
        ("sub/../../outside.txt", r"'sub/\.\./\.\./outside\.txt' points outside the bundle folder"),
        ("/tmp/outside.txt", r"'/tmp/outside\.txt' is not a relative path"),
        ("sub\\..\\..\\outside.txt", r"is not a relative path"),
    ],
)
def test_paths_leaving_the_folder_are_refused(bundle_dir: Path, listed: str, expected: str) -> None:
    content = b"outside\n"
    (bundle_dir.parent / "outside.txt").write_bytes(content)
    entry = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content), "role": "data"}
    _edit_manifest(bundle_dir, lambda m: m["files"].__setitem__(listed, entry))
    with pytest.raises(BundleError, match=expected):
        B.load_bundle(bundle_dir)


def test_symlinked_file_with_identical_content_is_refused(bundle_dir: Path) -> None:
    outside = bundle_dir.parent / "notes_copy.txt"
    shutil.copyfile(bundle_dir / "notes.txt", outside)
    (bundle_dir / "notes.txt").unlink()
    os.symlink(outside, bundle_dir / "notes.txt")
    with pytest.raises(BundleError, match=r"'notes\.txt' is a symbolic link"):
        B.load_bundle(bundle_dir)


def test_symlinked_folder_is_refused(bundle_dir: Path) -> None:
    outside = bundle_dir.parent / "params_copy"
    shutil.copytree(bundle_dir / "params", outside)
    shutil.rmtree(bundle_dir / "params")
    os.symlink(outside, bundle_dir / "params")
    with pytest.raises(BundleError, match=r"'params' is a symbolic link"):
        B.load_bundle(bundle_dir)


# --- versions ------------------------------------------------------------------------------------------


def test_newer_format_version_is_refused(bundle_dir: Path) -> None:
    _edit_manifest(bundle_dir, lambda m: m.__setitem__("format_version", 2))
    with pytest.raises(BundleError, match=r"format version 2, newer .*update DLRPredictor"):
        B.load_bundle(bundle_dir)


def _other_major(version: str) -> str:
    return f"{int(version.split('.', maxsplit=1)[0]) + 1}.0.0"


def test_different_numpy_major_only_warns(bundle_dir: Path) -> None:
    # numpy 1.x (Slicer 5.4-5.8) and 2.x read the bundle's numeric .npz arrays alike.
    other = _other_major(np.__version__)
    _edit_manifest(bundle_dir, lambda m: m["software"].__setitem__("numpy", other))
    vb = B.load_bundle(bundle_dir)
    assert len(vb.warnings) == 1
    assert f"built with numpy {other} and numpy {np.__version__} is installed" in vb.warnings[0]


def test_torch_versions_are_provenance_only(bundle_dir: Path) -> None:
    # A prediction runs the network in numpy: another torch major, or no torch, changes nothing.
    for version in ("1.13.1", "99.0.0", None):
        _edit_manifest(bundle_dir, lambda m, v=version: m["software"].update(torch=v, torchvision=v))
        vb = B.load_bundle(bundle_dir)
        assert vb.warnings == (), version
        assert vb.manifest["software"]["torch"] == version


def test_different_sklearn_major_only_warns(bundle_dir: Path) -> None:
    import sklearn

    other = _other_major(sklearn.__version__)
    _edit_manifest(bundle_dir, lambda m: m["software"].__setitem__("scikit-learn", other))
    vb = B.load_bundle(bundle_dir)
    assert len(vb.warnings) == 1
    assert f"scikit-learn {other}" in vb.warnings[0]


def test_same_major_other_minor_is_accepted_silently(bundle_dir: Path) -> None:
    major = np.__version__.split(".")[0]
    _edit_manifest(bundle_dir, lambda m: m["software"].__setitem__("numpy", f"{major}.0.0"))
    assert B.load_bundle(bundle_dir).warnings == ()


# --- manifest rules beyond the schema --------------------------------------------------------------


def test_reserved_clinical_variable_name_is_refused(tmp_path: Path) -> None:
    man = _manifest()
    man["inputs"]["clinical_variables"][0]["name"] = "label"
    with pytest.raises(BundleError, match=r"'inputs\.clinical_variables\[0\]\.name' is 'label', a reserved"):
        W.write_bundle(tmp_path / "b", man, _files())
    assert not (tmp_path / "b").exists()


def test_minimum_above_maximum_is_refused(tmp_path: Path) -> None:
    man = _manifest()
    man["inputs"]["clinical_variables"][0]["minimum"] = 200
    with pytest.raises(BundleError, match="minimum 200 above maximum 110"):
        W.write_bundle(tmp_path / "b", man, _files())


def test_categorical_variable_needs_allowed_values(tmp_path: Path) -> None:
    man = _manifest()
    del man["inputs"]["clinical_variables"][1]["allowed"]
    with pytest.raises(BundleError, match=r"required field 'inputs\.clinical_variables\[1\]\.allowed'"):
        W.write_bundle(tmp_path / "b", man, _files())


def test_unknown_top_level_key_is_refused(bundle_dir: Path) -> None:
    _edit_manifest(bundle_dir, lambda m: m.__setitem__("threshold", 0.3))
    with pytest.raises(
        BundleError, match=r"field 'threshold' is not allowed \(put additions under 'extra'\)"
    ):
        B.load_bundle(bundle_dir)


def test_extra_object_is_allowed(tmp_path: Path) -> None:
    man = _manifest()
    man["extra"] = {"notes": "anything"}
    vb = B.load_bundle(W.write_bundle(tmp_path / "b", man, _files()))
    assert vb.manifest["extra"] == {"notes": "anything"}


# --- atomic writing --------------------------------------------------------------------------------


def test_schema_invalid_manifest_leaves_no_folder(tmp_path: Path) -> None:
    man = _manifest()
    del man["task"]["positive_class"]
    with pytest.raises(BundleError, match=r"required field 'task\.positive_class' is missing"):
        W.write_bundle(tmp_path / "bundle", man, _files())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("model.pkl", pickle.dumps(1), r"'model\.pkl' is a Python pickle"),
        (
            "objects.npz",
            _npz({"o": np.array([None, 1], dtype=object)}),
            r"'objects\.npz' holds an object array",
        ),
        ("../escape.txt", b"x", r"points outside the bundle folder"),
        ("manifest.json", b"{}", r"must not include 'manifest\.json'"),
    ],
)
def test_write_refuses_unsafe_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    files = {**_files(), name: content}
    with pytest.raises(BundleError, match=expected):
        W.write_bundle(tmp_path / "bundle", _manifest(), files)
    assert list(tmp_path.iterdir()) == []


def test_write_requires_model_card(tmp_path: Path) -> None:
    files = _files()
    del files["model_card.md"]
    with pytest.raises(BundleError, match=r"must include model_card\.md"):
        W.write_bundle(tmp_path / "bundle", _manifest(), files)
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_existing_bundle(bundle_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in bundle_dir.iterdir() if p.is_file()}
    man = _manifest()
    man["cutoff"] = 1.5
    with pytest.raises(BundleError, match=r"field 'cutoff'"):
        W.write_bundle(bundle_dir, man, _files())
    after = {p.name: p.read_bytes() for p in bundle_dir.iterdir() if p.is_file()}
    assert after == before
    assert B.load_bundle(bundle_dir).cutoff == 0.42  # the stored JSON number, read back: exact
    assert _leftovers(bundle_dir.parent) == []


def test_successful_rewrite_replaces_the_bundle(bundle_dir: Path, tmp_path: Path) -> None:
    man = _manifest()
    man["version"] = "0.0.2"
    files = _files()
    del files["notes.txt"]
    src = tmp_path / "card.md"
    src.write_text("# New card\n")
    files["model_card.md"] = src  # a Path is copied
    W.write_bundle(bundle_dir, man, files)
    vb = B.load_bundle(bundle_dir)
    assert vb.version == "0.0.2"
    assert "notes.txt" not in vb.files and not (bundle_dir / "notes.txt").exists()
    assert vb.read_text("model_card.md") == "# New card\n"
    assert _leftovers(tmp_path) == []


def test_a_folder_that_is_not_a_bundle_is_never_overwritten(tmp_path: Path) -> None:
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "thesis.docx").write_bytes(b"years of work")
    with pytest.raises(BundleError, match="not a model bundle; choose a new or empty folder"):
        W.write_bundle(precious, _manifest(), _files())
    assert (precious / "thesis.docx").read_bytes() == b"years of work"


def test_numpy_values_in_manifest_are_stored_as_json(tmp_path: Path) -> None:
    man = _manifest()
    man["cutoff"] = np.float32(0.25)  # exact in float32, so == 0.25 below holds exactly
    man["training"]["counts"] = {"train": np.int64(12)}
    vb = B.load_bundle(W.write_bundle(tmp_path / "b", man, _files()))
    assert vb.cutoff == 0.25
    assert vb.manifest["training"]["counts"] == {"train": 12}


def test_nan_metric_is_refused(tmp_path: Path) -> None:
    man = _manifest()
    man["metrics"] = {"auc": float("nan")}
    with pytest.raises(BundleError, match="cannot be stored as JSON"):
        W.write_bundle(tmp_path / "b", man, _files())


def test_missing_folder_message(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        B.load_bundle(tmp_path / "nowhere")


def test_bundle_built_elsewhere_is_written_and_warns_on_another_reader(tmp_path: Path) -> None:
    import sklearn

    running = S.software_versions()
    man = _manifest()
    man["software"] = {**running, "scikit-learn": _other_major(sklearn.__version__)}
    out = W.write_bundle(tmp_path / "b", man, _files())
    recorded = json.loads((out / "manifest.json").read_text())["software"]
    assert recorded["scikit-learn"] == man["software"]["scikit-learn"]  # kept, not overwritten
    vb = B.load_bundle(out)
    assert len(vb.warnings) == 1 and "scikit-learn" in vb.warnings[0]


def test_manifest_path_is_accepted_for_its_folder(bundle_dir: Path) -> None:
    assert B.load_bundle(bundle_dir / "manifest.json").path == bundle_dir.resolve()
