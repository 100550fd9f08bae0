"""Bundle trust and bounds.

Trust (docs/TRUST.md): the content digest, the pinned shipped bundle, Ed25519 signatures. Bounds
(``bundle.limits``): no bundle file may hang or exhaust the machine; each crafted file below is
refused at verification with one line, quickly and in little memory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_listed_file
from DLRPredictorLib import cli
from DLRPredictorLib.base.errors import BundleError, ConfigError
from DLRPredictorLib.bundle import sign as S
from DLRPredictorLib.bundle import trust as T
from DLRPredictorLib.bundle import verify as B
from DLRPredictorLib.bundle import write as W
from DLRPredictorLib.inference import predictor

SHIPPED = "BreastUS-Malignancy"


def _manifest() -> dict[str, Any]:
    return {
        "id": "trust-test",
        "version": "0.0.1",
        "title": "Trust test bundle",
        "task": {"name": "malignancy", "description": "benign vs malignant",
                 "positive_class": "malignant", "negative_class": "benign"},
        "inputs": {"image": {"modality": "US", "dimensions": 2, "notes": "B-mode"}, "clinical_variables": []},
        "files": {},
        "training": {"datasets": ["synthetic"], "split": "none", "counts": {"train": 0}},
        "cutoff": 0.42,
        "models": {"default": "dlr", "image_only": "dlr"},
        "metrics": {"auc": 0.5},
        "licence": "CC BY 4.0",
        "citation": ["A test."],
        "intended_use": "Software tests only.",
    }  # fmt: skip


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    from safetensors.numpy import save

    files = {
        "model_card.md": b"# Trust test\n",
        "pipeline.json": json.dumps({"steps": ["scale"]}).encode(),
        "pipeline.npz": _npz({"mean": np.arange(4.0)}),
        "radiomics.yaml": b"setting:\n  binWidth: 25\n",
        "cnn.safetensors": save({"a": np.ones((2, 3), np.float32), "b": np.zeros(4, np.float64)}),
    }
    return W.write_bundle(tmp_path / "bundle", _manifest(), files)


def _keys(folder: Path, name: str = "me") -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files: (private, public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    folder.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private = folder / f"{name}.key"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = folder / f"{name}.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _change_cutoff(root: Path) -> None:
    """One changed byte of manifest.json: the cutoff's last digit."""
    path = root / "manifest.json"
    text = path.read_bytes()
    at = text.index(b'"cutoff": ') + len(b'"cutoff": ')
    end = at
    while text[end : end + 1] in b"0123456789.":
        end += 1
    last = text[end - 1 : end]
    path.write_bytes(text[: end - 1] + (b"1" if last != b"1" else b"2") + text[end:])


# --- content digest --------------------------------------------------------------------------------


def test_digest_covers_the_manifest_and_every_file(bundle_dir: Path) -> None:
    first = B.load_bundle(bundle_dir)
    assert len(first.digest) == 64 and first.digest == B.load_bundle(bundle_dir).digest
    # Key order and whitespace of manifest.json do not count; values do.
    path = bundle_dir / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=None, sort_keys=True), encoding="utf-8")
    assert B.load_bundle(bundle_dir).digest == first.digest
    _change_cutoff(bundle_dir)
    changed = B.load_bundle(bundle_dir)  # accepted (nothing pins it) but no longer the same bundle
    # Exact inequality: one digit of the cutoff's text was changed, so the parsed float differs.
    assert changed.cutoff != first.cutoff and changed.digest != first.digest
    write_listed_file(bundle_dir, "model_card.md", b"# Trust test, edited\n")
    assert B.load_bundle(bundle_dir).digest not in (first.digest, changed.digest)


def test_expected_digest_refuses_another_bundle(bundle_dir: Path) -> None:
    digest = B.load_bundle(bundle_dir).digest
    assert B.load_bundle(bundle_dir, expected_digest=digest).trust == T.PINNED
    write_listed_file(bundle_dir, "pipeline.json", json.dumps({"steps": ["other"]}).encode())
    with pytest.raises(BundleError, match="not the expected one: its content digest is"):
        B.load_bundle(bundle_dir, expected_digest=digest)


# --- the shipped bundle's pin ---------------------------------------------------------------------


def test_shipped_bundle_has_its_pinned_digest_and_no_trust_warning() -> None:
    verified = B.load_bundle(predictor.default_bundle_path())
    assert verified.digest == T.SHIPPED_BUNDLE_DIGESTS[SHIPPED]
    assert verified.trust == T.PINNED and verified.trust_warnings == ()
    # data/pinned_predictions.json keys on the manifest's sha256: the same bytes the pin covers.
    pins = json.loads((Path(__file__).parent / "data" / "pinned_predictions.json").read_text())
    manifest = (predictor.default_bundle_path() / "manifest.json").read_bytes()
    assert pins["bundle_manifest_sha256"] == hashlib.sha256(manifest).hexdigest()


@pytest.fixture
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped bundle, installed as the shipped (default) bundle."""
    models = tmp_path / "Models"
    copy = models / SHIPPED
    copy.mkdir(parents=True)
    for f in predictor.default_bundle_path().iterdir():
        if f.name == "manifest.json":
            shutil.copyfile(f, copy / f.name)
        elif f.stat().st_dev == tmp_path.stat().st_dev:
            os.link(f, copy / f.name)  # 45 MB of weights, never written to: linked, not copied
        else:
            shutil.copyfile(f, copy / f.name)
    monkeypatch.setattr(T, "SHIPPED_MODELS_DIR", models)
    monkeypatch.setattr(predictor, "MODELS_DIR", models)
    return copy


def test_shipped_copy_loads_as_default_bundle(shipped_copy: Path) -> None:
    assert predictor.load_predictor().bundle_digest == T.SHIPPED_BUNDLE_DIGESTS[SHIPPED]


def test_changed_cutoff_in_shipped_bundle_is_refused(shipped_copy: Path) -> None:
    _change_cutoff(shipped_copy)
    with pytest.raises(BundleError, match="not the expected one: its content digest is") as info:
        predictor.load_predictor()
    assert T.SHIPPED_BUNDLE_DIGESTS[SHIPPED] in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BundleError, match="pinned"):  # by its path too
        predictor.load_predictor(shipped_copy)


def test_edited_shipped_file_with_recomputed_hashes_is_refused(shipped_copy: Path) -> None:
    card = (shipped_copy / "model_card.md").read_bytes()
    (shipped_copy / "model_card.md").unlink()  # a hard link: never write through it
    write_listed_file(shipped_copy, "model_card.md", card.replace(b"Not for", b"Now for", 1) + b"\n")
    with pytest.raises(BundleError, match="pinned"):
        predictor.load_predictor()


# --- signatures ------------------------------------------------------------------------------------


def test_unsigned_bundle_loads_with_the_unsigned_warning(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(T.TRUSTED_KEYS_ENV, raising=False)
    verified = B.load_bundle(bundle_dir)
    assert verified.trust == T.UNSIGNED
    assert verified.trust_warnings == (T.UNSIGNED_WARNING,)
    assert verified.warnings == ()  # software findings stay apart


def test_signed_by_a_trusted_key(bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, _ = _keys(tmp_path / "trusted")
    signed = S.sign_bundle(bundle_dir, private)
    assert (bundle_dir / "signature.json").is_file()
    doc = json.loads((bundle_dir / "signature.json").read_text())
    assert doc["bundle_digest"] == signed.digest and doc["algorithm"] == "Ed25519"
    monkeypatch.setenv(T.TRUSTED_KEYS_ENV, str(tmp_path / "trusted"))
    verified = B.load_bundle(bundle_dir)
    assert verified.trust == f"signed by trusted key {doc['key_fingerprint'][:16]}"
    assert verified.trust_warnings == ()
    # The same from an explicit folder, without the environment variable.
    monkeypatch.delenv(T.TRUSTED_KEYS_ENV)
    assert B.load_bundle(bundle_dir, trusted_keys=tmp_path / "trusted").trust_warnings == ()


def test_signed_by_an_unknown_key_warns(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, _ = _keys(tmp_path / "someone")
    _keys(tmp_path / "trusted", "mine")
    S.sign_bundle(bundle_dir, private)
    monkeypatch.setenv(T.TRUSTED_KEYS_ENV, str(tmp_path / "trusted"))
    verified = B.load_bundle(bundle_dir)
    assert verified.trust.startswith("signed by unknown key ")
    (warning,) = verified.trust_warnings
    assert warning.startswith("signed by an unknown key (fingerprint ")


def test_missing_or_bad_trusted_keys_folder_is_refused_with_one_line(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, _ = _keys(tmp_path / "k")
    S.sign_bundle(bundle_dir, private)
    missing = tmp_path / "nonexistent"
    expected = f"the trusted keys folder '{missing}' does not exist; check $DLR_TRUSTED_KEYS"
    # setenv first, so that the variable the CLI sets is undone after the test.
    monkeypatch.setenv(T.TRUSTED_KEYS_ENV, str(missing))
    with pytest.raises(BundleError) as info:
        B.load_bundle(bundle_dir)
    assert str(info.value) == expected
    monkeypatch.setenv(T.TRUSTED_KEYS_ENV, "")
    code = cli.main(
        ["evaluate", str(tmp_path / "none.csv"), "--bundle", str(bundle_dir), "--trusted-keys", str(missing),
         "--report", str(tmp_path / "r")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(expected)
    # A .pem in the folder that is a public key, but not Ed25519 (an EC P-256 key).
    keys = tmp_path / "keys"
    _keys(keys, "mine")
    ec_pem = keys / "ec.pem"
    ec_pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(BundleError) as info:
        B.load_bundle(bundle_dir, trusted_keys=keys)
    assert str(info.value) == f"trusted key '{ec_pem}' is not an Ed25519 public key"
    # A .pem that is no public key at all (here the private key) is refused with the reader's reason.
    ec_pem.unlink()
    shutil.copy(private, keys / "private.pem")
    with pytest.raises(BundleError) as info:
        B.load_bundle(bundle_dir, trusted_keys=keys)
    assert str(info.value).startswith(f"trusted key '{keys / 'private.pem'}' is not a public key in PEM (")
    assert "\n" not in str(info.value)


def test_bundle_changed_after_signing_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    private, _ = _keys(tmp_path / "k")
    S.sign_bundle(bundle_dir, private)
    _change_cutoff(bundle_dir)
    with pytest.raises(BundleError, match="changed after it was signed"):
        B.load_bundle(bundle_dir)


def test_forged_signature_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    private, _ = _keys(tmp_path / "k")
    S.sign_bundle(bundle_dir, private)
    path = bundle_dir / "signature.json"
    doc = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(doc["signature"]))
    raw[0] ^= 1
    doc["signature"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="invalid signature"):
        B.load_bundle(bundle_dir)
    # Another key claiming the trusted key's fingerprint is refused too.
    doc = json.loads(path.read_text())
    doc["key_fingerprint"] = "0" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="fingerprint that is not its key's"):
        B.load_bundle(bundle_dir)
    path.write_text("[]")
    with pytest.raises(BundleError, match=r"signature\.json is malformed"):
        B.load_bundle(bundle_dir)


def test_bad_signing_key_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    _, public = _keys(tmp_path / "k")
    with pytest.raises(ConfigError, match="signing key cannot be read"):
        S.sign_bundle(bundle_dir, public)
    with pytest.raises(ConfigError, match="cannot be read"):
        S.check_signing_key(tmp_path / "missing.pem")
    assert not (bundle_dir / "signature.json").exists()


def test_cli_sign_then_predict_path_refuses_a_changed_bundle(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, _ = _keys(tmp_path / "k")
    assert cli.main(["sign", str(bundle_dir), "--key", str(private)]) == 0
    out = capsys.readouterr().out
    assert "signed by unknown key" in out and B.load_bundle(bundle_dir).digest in out
    write_listed_file(bundle_dir, "model_card.md", b"# edited\n")
    code = cli.main(
        ["evaluate", str(tmp_path / "none.csv"), "--bundle", str(bundle_dir), "--report", str(tmp_path / "r")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed after it was signed" in err[0]


def test_prediction_carries_the_trust_warning_and_the_digest(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from DLRPredictorLib.cohort import rows
    from DLRPredictorLib.inputs import phantom

    monkeypatch.delenv(T.TRUSTED_KEYS_ENV, raising=False)
    pred = predictor.load_predictor(tiny_bundle)
    volume, mask = phantom.make_phantom(seed=11, shape=(96, 128), spacing_mm=0.1)
    res = pred.predict(volume, mask, heatmap=False, case="c")
    assert T.UNSIGNED_WARNING in res.warnings
    assert res.provenance["bundle_digest"] == pred.bundle_digest == B.load_bundle(tiny_bundle).digest
    assert rows.result_columns(pred)[-1] == "bundle_digest"
    assert rows.result_row(pred, "c", res)["bundle_digest"] == pred.bundle_digest


# --- bounds: files crafted to hang or exhaust the reader -------------------------------------------


def _refused(root: Path, expected: str) -> str:
    """Verify, expecting a one-line BundleError within 5 s and 64 MB of Python/numpy allocations."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(BundleError) as info:
            B.load_bundle(root)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert elapsed < 5.0, elapsed
    assert peak < 64 << 20, peak
    return message


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_yaml_alias_bomb_is_refused(bundle_dir: Path) -> None:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 values
    write_listed_file(bundle_dir, "radiomics.yaml", ("\n".join(lines) + "\n").encode())
    _refused(bundle_dir, "bundle file 'radiomics.yaml' is refused: its aliases expand to more than 100000")


def test_deep_yaml_is_refused(bundle_dir: Path) -> None:
    write_listed_file(bundle_dir, "radiomics.yaml", b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n")
    _refused(bundle_dir, "bundle file 'radiomics.yaml' is refused: it is nested more than 64 levels deep")


def test_yaml_anchors_within_bounds_are_accepted(bundle_dir: Path) -> None:
    write_listed_file(bundle_dir, "radiomics.yaml", b"base: &b {binWidth: 25}\nsetting: *b\n")
    assert B.load_bundle(bundle_dir).read_yaml("radiomics.yaml")["setting"] == {"binWidth": 25}


def test_npz_zip_bomb_is_refused(bundle_dir: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("mean.npy", "w", force_zip64=True) as f:
        n = 300 << 20  # 300 MB of zeros: about 300 kB compressed
        f.write(_npy_header((n // 8,)))
        zeros = bytes(1 << 20)
        for _ in range(n >> 20):
            f.write(zeros)
    write_listed_file(bundle_dir, "pipeline.npz", buf.getvalue())
    message = _refused(
        bundle_dir, "bundle file 'pipeline.npz' is not a valid array file (its arrays would take"
    )
    assert "a zip bomb" in message


@pytest.mark.parametrize("where", ["npy", "npz"])
def test_npy_header_declaring_a_huge_shape_is_refused(bundle_dir: Path, where: str) -> None:
    npy = _npy_header((10**12,)) + bytes(8)  # 8 TB declared, 8 bytes held
    if where == "npy":
        write_listed_file(bundle_dir, "extra.npy", npy)
        name = "extra.npy"
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("mean.npy", npy)
        write_listed_file(bundle_dir, "pipeline.npz", buf.getvalue())
        name = "pipeline.npz"
    message = _refused(bundle_dir, f"bundle file '{name}' is not a valid array file (array ")
    assert "declares shape (1000000000000,) of float64 (8000000000000 bytes) but holds 8 bytes" in message


@pytest.mark.parametrize("depth", [100, 200_000])
@pytest.mark.parametrize("name", ["manifest.json", "pipeline.json"])
def test_deeply_nested_json_is_refused(bundle_dir: Path, name: str, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    if name == "manifest.json":
        path = bundle_dir / name
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace('"cutoff":', f'"extra": {{"x": {nested}}}, "cutoff":', 1), encoding="utf-8"
        )
    else:
        write_listed_file(bundle_dir, name, f'{{"steps": {nested}}}'.encode())
    _refused(bundle_dir, f"bundle file '{name}' is refused: it is nested more than 64 levels deep")


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    ("header", "data", "expected"),
    [
        ({"w": {"dtype": "F32", "shape": [100_000, 100_000], "data_offsets": [0, 24]}}, bytes(24),
         "tensor 'w' declares shape [100000, 100000] of F32 (40000000000 bytes) but its data_offsets "
         "span 24"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24),
         "tensors 'a' and 'b' overlap in the data"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}, bytes(24),
         "tensor 'w' has data_offsets [16, 32] outside the 24 bytes of data"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(24),
         "bytes 16-24 of the data belong to no tensor"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16),
         "tensor 'w' has a malformed shape [-4]"),
        ({"w": {"dtype": "O", "shape": [4], "data_offsets": [0, 16]}}, bytes(16),
         "tensor 'w' has an unknown dtype 'O'"),
    ],
)  # fmt: skip
def test_malformed_safetensors_is_refused(
    bundle_dir: Path, header: dict[str, Any], data: bytes, expected: str
) -> None:
    write_listed_file(bundle_dir, "cnn.safetensors", _safetensors(header, data))
    message = _refused(bundle_dir, "bundle file 'cnn.safetensors' is not a valid array file (")
    assert expected in message


def test_safetensors_header_longer_than_the_file_is_refused(bundle_dir: Path) -> None:
    write_listed_file(bundle_dir, "cnn.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    _refused(bundle_dir, "its header is malformed (it declares 1099511627776 bytes")


def test_bundle_listing_more_than_the_limit_is_refused_before_reading(bundle_dir: Path) -> None:
    path = bundle_dir / "manifest.json"
    man = json.loads(path.read_text(encoding="utf-8"))
    man["files"]["cnn.safetensors"]["bytes"] = 3 << 30
    path.write_text(json.dumps(man), encoding="utf-8")
    _refused(bundle_dir, "bytes of files, more than the 2147483648 a bundle may hold")


def test_a_bomb_exits_the_cli_with_2_and_one_line(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_listed_file(bundle_dir, "pipeline.json", ("[" * 200_000 + "]" * 200_000).encode())
    start = time.perf_counter()
    code = cli.main(
        ["evaluate", str(tmp_path / "none.csv"), "--bundle", str(bundle_dir), "--report", str(tmp_path / "r")]
    )
    assert code == 2 and time.perf_counter() - start < 5.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'pipeline.json' is refused: it is nested more than 64 levels deep" in err[0]
