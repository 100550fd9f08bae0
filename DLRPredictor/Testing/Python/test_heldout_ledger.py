"""The held-out ledger: every scoring of a test set is recorded, repeats are visible, and a bundle
carries (and verification checks) the ledger's history of its test set."""

from __future__ import annotations

import copy
import json
import re
import threading

import numpy as np
import pytest
from DLRPredictorLib.base.errors import BundleError, InputError
from DLRPredictorLib.bundle.manifest import validate_manifest
from DLRPredictorLib.training import ledger as L

A, B, T = "a" * 64, "b" * 64, "c" * 64


def _entry(config: str = A, test: str = T, auc: float = 0.8) -> dict:
    return {
        "config_digest": config,
        "test_set_digest": test,
        "bundle_id": "x",
        "n_test": 10,
        "aucs": {"exact": {"dlr": auc}},
    }


def test_every_evaluation_is_kept_and_a_repeat_is_visible(tmp_path):
    path = tmp_path / "sub" / "ledger.jsonl"
    first = L.append_entry(path, _entry())
    L.append_entry(path, _entry(B))
    third = L.append_entry(path, _entry(auc=0.85))  # the same configuration scores the set again
    L.append_entry(path, _entry(test="d" * 64))  # another test set
    assert first["repeat"] == 1 and third["repeat"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["date"])
    h = L.history(path, T)
    assert (h["evaluations"], h["configurations"], h["repeated"]) == (3, 2, [A])
    # Exact: the AUCs written to the ledger, read back from its JSON.
    assert [e["aucs"]["exact"]["dlr"] for e in h["entries"]] == [0.8, 0.8, 0.85]
    assert len(path.read_text().splitlines()) == 4  # one line per evaluation, none rewritten


def test_concurrent_appends_keep_every_line_whole(tmp_path):
    path = tmp_path / "ledger.jsonl"
    threads = [threading.Thread(target=L.append_entry, args=(path, _entry(f"{i:064x}"))) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = L.read_ledger(path)
    assert sorted(e["config_digest"] for e in entries) == sorted(f"{i:064x}" for i in range(16))


def test_a_damaged_ledger_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    L.append_entry(path, _entry())
    with path.open("a") as f:
        f.write("{not json\n")
    with pytest.raises(InputError, match=r"line 2 is not a ledger entry"):
        L.append_entry(path, _entry())
    assert len(path.read_text().splitlines()) == 2  # nothing appended


def test_digests_depend_on_the_cases_and_the_configuration_not_their_order():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    one = L.test_set_digest([("c1", img), ("c2", img + 1)])
    assert one == L.test_set_digest([("c2", img + 1), ("c1", img)])
    assert one != L.test_set_digest([("c1", img), ("c2", img + 2)])  # other pixels
    assert one != L.test_set_digest([("c1", img)])
    base = L.config_digest({"seed": 1}, {"setting": {}}, ["t1", "t2"])
    assert base == L.config_digest({"seed": 1}, {"setting": {}}, ["t2", "t1"])
    assert base != L.config_digest({"seed": 2}, {"setting": {}}, ["t1", "t2"])
    assert base != L.config_digest({"seed": 1}, {"setting": {}}, ["t1"])


@pytest.fixture(scope="module")
def trained(tiny_bundle) -> dict:
    return json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))


def test_a_trained_bundle_records_its_heldout_evaluation(tiny_bundle, trained):
    ledger = trained["heldout_ledger"]
    assert (ledger["evaluations"], ledger["configurations"], ledger["repeated"]) == (1, 1, [])
    (entry,) = ledger["entries"]
    assert entry["n_test"] == trained["training"]["counts"]["test_cases"]
    assert entry["aucs"]["exact"]["dlr"] == pytest.approx(
        trained["metrics"]["heldout"]["exact"]["all"]["dlr"]["auc"], abs=1e-6
    )
    work_ledger = L.read_ledger(tiny_bundle.parent / "work" / L.LEDGER_NAME)
    assert work_ledger[-1]["config_digest"] == entry["config_digest"]
    card = (tiny_bundle / "model_card.md").read_text(encoding="utf-8")
    assert "## Held-out ledger" in card and "**1 configuration(s)** in 1 evaluation(s)" in card


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda g: g.update(evaluations=2), "counts do not match"),
        (lambda g: g["entries"][0].update(test_set_digest="d" * 64), "another test set"),
        (lambda g: g.update(repeated=["d" * 64]), "'repeated' does not match"),
        (lambda g: g["entries"][0].update(date="yesterday"), "invalid"),
        (lambda g: g["entries"][0]["aucs"]["exact"].update(dlr=1.5), "invalid"),
    ],
)
def test_an_inconsistent_ledger_in_a_manifest_is_refused(trained, edit, words):
    manifest = copy.deepcopy(trained)
    edit(manifest["heldout_ledger"])
    with pytest.raises(BundleError, match="heldout_ledger") as info:
        validate_manifest(manifest)
    assert words in str(info.value)


def test_a_manifest_without_a_ledger_is_valid(trained):
    manifest = copy.deepcopy(trained)
    del manifest["heldout_ledger"]
    validate_manifest(manifest)  # the shipped bundle has none (test_shipped_bundle loads it)
