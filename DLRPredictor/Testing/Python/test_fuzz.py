"""Fuzz tests (hypothesis) of `dlrpredictor predict` / `evaluate` over cohort CSVs and bundle files.

What every run must do, whatever the manifest or bundle (the CLI contract, README):

- exit 0, 1 or 2, nothing else; no Python traceback on stderr, whose lines each name one problem
  (``warning: ...`` or ``dlrpredictor predict: error: ...``, exactly one error line on exit 2);
- never lose a row: when the manifest can be read, the results CSV has exactly one row per
  manifest data row, in manifest order, with status ok or error (exit 0 only when all are ok);
  when the manifest is refused as a whole, exit 2 and no results file (or the previous one
  untouched, byte for byte);
- a manifest made only of well-formed rows is never refused as a whole (a missing or unreadable
  file, a bad clinical value are that row's error), and a row with a real image and mask and
  valid values is predicted;
- a bundle whose files were damaged (truncated, bytes flipped, files deleted or added, sha256
  entries changed, manifest.json values given other JSON types, deep nesting, forged npz /
  safetensors headers with their sha256 updated) is refused with exit 2 and one line, or, when
  the damage left what is verified intact or valid, loads and predicts the case normally;
- within a time bound: :data:`CASE_SECONDS` per case in process (SIGALRM), the same plus
  :data:`STARTUP_SECONDS` for a subprocess run.

Manifests are built from real pieces written once per module (images and masks of the synthetic
cohort, no shared data) mixed with broken cells: missing files, directories, junk and empty
files, empty cells, bad spacing_mm, odd case ids (unicode, control characters, leading ``= + - @``,
very long, duplicates), garbage clinical values and labels, extra and missing columns, short and
long rows, BOM, CRLF, ``;`` or tab delimiters, quoted newlines, empty file, header only, binary
junk, truncated files.

Determinism: the examples are derandomised (``derandomize=True``): a CI run replays the same
corpus every time, because a fuzz test that fails on a new random example that nobody saw here is
worse in CI than a fixed corpus. For fresh examples run with ``DLR_FUZZ_RANDOM=1``, and for more
of them set ``DLR_FUZZ_EXAMPLES=200``; record anything found with ``@example(...)``.

Most runs are in process (``cli.main``, stderr captured at the file-descriptor level); a few are
real subprocesses, the only place that sees a traceback printed by the interpreter itself.
Runtime: about a minute on two cores beside the tiny bundle's training (a fixture built once per test run).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT
from DLRPredictorLib import cli
from DLRPredictorLib.base.errors import ManifestError
from DLRPredictorLib.inputs import cohort_csv
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

#: Seconds a case may take in process (the tiny bundle predicts one in well under a second).
CASE_SECONDS = 20
#: Seconds a subprocess may take to start (imports, fork server, bundle verification) beyond that.
STARTUP_SECONDS = 60
RANDOM = os.environ.get("DLR_FUZZ_RANDOM", "") not in ("", "0")
EXAMPLES = int(os.environ.get("DLR_FUZZ_EXAMPLES", "0") or 0)
LABELS = {"malignant": 1, "benign": 0}  # the tiny bundle's classes
TRACE = os.environ.get("DLR_FUZZ_TRACE", "")  # a file to append each example's outcome to


def outcome(text: str) -> None:
    """Record what an example did (hypothesis statistics; also appended to $DLR_FUZZ_TRACE)."""
    event(text)
    if TRACE:
        with open(TRACE, "a", encoding="utf-8") as f:
            f.write(text.replace("\n", " ")[:300] + "\n")


def fuzz_settings(examples: int) -> settings:
    """Few derandomised examples in CI; ``DLR_FUZZ_RANDOM`` / ``DLR_FUZZ_EXAMPLES`` to explore."""
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# --------------------------------------------------------------------------- the real pieces


@dataclass(frozen=True)
class Pieces:
    """Real files written once per module, and what breaks them."""

    root: Path  # manifests are written here; the case files lie in root/"files"
    images: list[Path]
    masks: list[Path]
    spacings: list[str]
    directory: Path
    junk: Path  # random bytes named .png
    empty: Path  # an empty .nrrd
    previous: bytes  # a results CSV of an earlier run over the first two cases
    previous_ids: tuple[str, ...] = field(default=("prev0", "prev1"))


@pytest.fixture(scope="module")
def pieces(tmp_path_factory, synthetic_cohort: Path, tiny_bundle: Path) -> Pieces:
    root = tmp_path_factory.mktemp("fuzz")
    files = root / "files"
    files.mkdir()
    rows = cohort_csv.read_cohort_csv(synthetic_cohort, clinical_names=None, label_values=LABELS)[:3]
    images, masks, spacings = [], [], []
    for i, r in enumerate(rows):
        assert r.resolved_image is not None and r.resolved_mask is not None
        image = files / f"image{i}{''.join(r.resolved_image.suffixes)}"
        mask = files / f"mask{i}{''.join(r.resolved_mask.suffixes)}"
        shutil.copyfile(r.resolved_image, image)
        shutil.copyfile(r.resolved_mask, mask)
        images.append(image)
        masks.append(mask)
        spacings.append("" if r.spacing_mm is None else repr(r.spacing_mm))
    (files / "a_folder.png").mkdir()
    junk = files / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)
    empty = files / "empty.nrrd"
    empty.write_bytes(b"")
    manifest = root / "previous_manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "image", "mask", "spacing_mm"])
        for i in range(2):
            w.writerow([f"prev{i}", images[i], masks[i], spacings[i]])
    out = root / "previous_results.csv"
    assert cli.main(predict_argv(manifest, out, tiny_bundle)) == 0
    return Pieces(root, images, masks, spacings, files / "a_folder.png", junk, empty, out.read_bytes())


# --------------------------------------------------------------------------- running and checking


def predict_argv(manifest: Path, out: Path, bundle: Path) -> list[str]:
    """`dlrpredictor predict` in one worker process (``--jobs 1``: cheap, still crash-isolated)."""
    return [
        "predict",
        str(manifest),
        "--out",
        str(out),
        "--bundle",
        str(bundle),
        "--jobs",
        "1",
        "--no-progress",
    ]


class CaseTimeout(Exception):
    """A run went past its time bound (raised by SIGALRM in the main thread)."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in this (main) thread after ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"the run took more than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(capfd: Any, argv: list[str], n_cases: int) -> tuple[int, str]:
    """``cli.main(argv)`` in process within its time bound: (exit status, stderr)."""
    capfd.readouterr()
    try:
        with time_bound(CASE_SECONDS * max(1, n_cases) + 10):
            code: Any = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capfd.readouterr().err
    return code, err


def run_process(argv: list[str], n_cases: int) -> tuple[int, str]:
    """``python -m DLRPredictorLib argv`` in a subprocess within its time bound: (exit status, stderr)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "DLRPredictor") + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "DLRPredictorLib", *argv],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        timeout=STARTUP_SECONDS + CASE_SECONDS * max(1, n_cases),
        check=False,
    )
    return done.returncode, done.stderr


def check_stderr(code: int, err: str, command: str = "predict") -> None:
    """Exit 0/1/2; no traceback; one line per problem; exactly one error line on exit 2."""
    assert code in (0, 1, 2), f"exit status {code!r}; stderr:\n{err}"
    assert "Traceback (most recent call last)" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"dlrpredictor {command}: error: ")]
    # argparse's usage error (e.g. an option value) is "dlrpredictor: error: ...".
    errors += [line for line in lines if line.startswith("dlrpredictor: error: ")]
    for line in lines:
        assert line.startswith(("warning: ", "dlrpredictor")), f"stray stderr line {line!r} in:\n{err}"
    if code == 2:
        assert len(errors) == 1, err
    else:
        assert not errors, err


def read_results(out: Path) -> list[dict[str, str]]:
    with open(out, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_results(
    code: int, out: Path, before: bytes | None, expected_ids: list[str] | None, must_ok: list[bool] | None
) -> None:
    """The results file against the exit status and the manifest's rows."""
    if code == 2:
        if before is None:
            assert not out.exists(), "a refused run left a results file"
        else:
            assert out.read_bytes() == before, "a refused run changed the previous results file"
        return
    rows = read_results(out)
    if expected_ids is not None:
        assert [r["case_id"] for r in rows] == expected_ids
    assert all(r["status"] in ("ok", "error") for r in rows), rows
    assert all(r["error"] for r in rows if r["status"] == "error")
    assert not [r["error"] for r in rows if "internal error" in r["error"]], "a bug reached a row"
    for r in rows:
        if r["status"] == "ok":
            p = float(r["probability"])
            assert math.isfinite(p) and 0.0 <= p <= 1.0, r
    assert (code == 0) == all(r["status"] == "ok" for r in rows), (code, [r["error"] for r in rows])
    if must_ok is not None:
        for r, ok in zip(rows, must_ok, strict=True):
            assert not ok or r["status"] == "ok", f"a valid row failed: {r['case_id']!r}: {r['error']}"


def library_ids(path: Path) -> list[str] | None:
    """The case ids as the manifest reader reads them, or None when it refuses the file."""
    try:
        rows = cohort_csv.read_cohort_csv(path, clinical_names=None, label_values=LABELS)
    except ManifestError:
        return None
    return [r.case_id for r in rows]


# --------------------------------------------------------------------------- manifest strategies


@dataclass(frozen=True)
class Cell:
    """A cell's text; ``refused``: this value alone makes the reader refuse the whole manifest."""

    text: str
    refused: bool = False
    valid: bool = True  # the row can still be predicted (for image/mask: the real pair)


garbage = st.text(st.characters(codec="utf-8"), max_size=12)
FORMULA = ("=", "+", "-", "@")


@st.composite
def case_ids(draw: st.DrawFn, i: int) -> Cell:
    kind = draw(
        st.sampled_from(
            ["plain"] * 8 + ["unicode", "unicode", "long", "spaced", "formula", "control", "empty"]
        )
    )
    if kind == "plain":
        return Cell(f"c{i}")
    if kind == "unicode":
        tail = draw(st.text(st.characters(categories=("L", "N", "Mn", "So")), max_size=8))
        return Cell(f"ü{i}_{tail}")
    if kind == "long":
        return Cell(f"c{i}_" + "x" * draw(st.integers(200, 2000)))
    if kind == "spaced":
        return Cell(f"  c{i} ")
    if kind == "formula":
        return Cell(draw(st.sampled_from(FORMULA)) + f"c{i}", refused=True)
    if kind == "control":
        ch = draw(st.sampled_from(["\x01", "\x1b", "\x7f", "\x85", "\u2028", "\t", "\n", "\r\n"]))
        return Cell(f"c{i}{ch}x", refused=True)
    return Cell(draw(st.sampled_from(["", "   "])), refused=True)


@st.composite
def paths(draw: st.DrawFn, pieces: Pieces, which: str, i: int) -> Cell:
    real = (pieces.images if which == "image" else pieces.masks)[i]
    kind = draw(
        st.sampled_from(
            ["real"] * 10
            + ["relative", "backslash", "missing", "folder", "junk", "empty_file", "other_kind"]
            + ["empty_cell", "garbage"]
        )
    )
    if kind == "real":
        return Cell(str(real))
    if kind == "relative":
        return Cell(os.path.relpath(real, pieces.root))
    if kind == "backslash":
        return Cell(os.path.relpath(real, pieces.root).replace("/", "\\"))
    if kind == "missing":
        return Cell(str(pieces.root / "files" / f"nowhere{i}.png"), valid=False)
    if kind == "folder":
        return Cell(str(pieces.directory), valid=False)
    if kind == "junk":
        return Cell(str(pieces.junk), valid=False)
    if kind == "empty_file":
        return Cell(str(pieces.empty), valid=False)
    if kind == "other_kind":  # a mask as the image or an image as the mask
        return Cell(str((pieces.masks if which == "image" else pieces.images)[i]), valid=False)
    if kind == "empty_cell":
        return Cell(draw(st.sampled_from(["", " "])), refused=True)
    text = draw(garbage)
    return Cell(text, refused="\x00" in text or not text.strip(), valid=False)


SPACING_OK = ["", "0.1", " 0.12 ", "1e-3", "100", "1e30", "5e-324"]
SPACING_BAD = ["0", "-1", "nan", "NaN", "inf", "-inf", "abc", "0,1", "1e400", "true", "unknown"]
LABEL_OK = ["", "malignant", "benign", "0", "1", " Malignant ", "BENIGN", "1.0"]
LABEL_BAD = ["2", "maybe", "-1", "yes", "unknown", "0.5"]
AGE = ["", "55", "55.5", "-5", "1000", "unknown", "nan", "1e400", "abc", "Unknown", "0x10"]
BIRADS = ["", "4a", "4A", " 3 ", "7", "unknown", "4d", "0"]


def value_cell(draw: st.DrawFn, ok: list[str], bad: list[str], refused: bool) -> Cell:
    if draw(st.integers(0, 9)) == 0:
        return Cell(draw(st.sampled_from(bad)), refused=refused, valid=refused)
    return Cell(draw(st.sampled_from(ok)))


@st.composite
def clinical_cell(draw: st.DrawFn, values: list[str], valid: set[str]) -> Cell:
    if draw(st.integers(0, 4)) == 0:
        text = draw(garbage)
        return Cell(text, refused="\x00" in text, valid=text.strip() == "")
    text = draw(st.sampled_from(values))
    return Cell(text, valid=text in valid)


OPTIONAL = ["spacing_mm", "label", "patient_id", "age", "birads", "segment"]
EXTRA_NAMES = ["notes", "Ünïcode col", "", " age_years ", "x" * 300, "label2", "sex"]


@dataclass
class ManifestSpec:
    """A generated manifest: its bytes and what the reader must make of it."""

    data: bytes
    expected_ids: list[str] | None  # None: not known from the generation (junk, truncation)
    must_read: bool  # every part well-formed: the manifest must not be refused as a whole
    must_ok: list[bool] | None  # per row: real pair and valid values, so it must be predicted
    n_rows: int
    description: str = ""


def _cells_for_row(draw: st.DrawFn, pieces: Pieces, header: list[str], i: int) -> dict[str, Cell]:
    pick = i % len(pieces.images)
    cells: dict[str, Cell] = {}
    for name in header:
        key = name.strip()
        if key == "case_id":
            cells[name] = draw(case_ids(i))
        elif key in ("image", "mask"):
            cells[name] = draw(paths(pieces, key, pick))
        elif key == "spacing_mm":
            cell = value_cell(draw, SPACING_OK, SPACING_BAD, refused=True)
            cells[name] = cell if cell.text or pieces.spacings[pick] == "" else Cell(pieces.spacings[pick])
        elif key == "label":
            cells[name] = value_cell(draw, LABEL_OK, LABEL_BAD, refused=True)
        elif key == "age":
            cells[name] = draw(clinical_cell(AGE, {"", "55", "55.5"}))
        elif key == "birads":
            cells[name] = draw(clinical_cell(BIRADS, {"", "4a", "4A", " 3 "}))
        elif key == "segment":
            cells[name] = Cell(draw(st.sampled_from(["", "", "lesion", "Segment_1"])))
            cells[name] = Cell(cells[name].text, valid=cells[name].text == "")
        else:
            text = draw(garbage)
            cells[name] = Cell(text, refused="\x00" in text)
    return cells


@st.composite
def manifests(draw: st.DrawFn, pieces: Pieces) -> ManifestSpec:
    """A cohort CSV built from real pieces and broken cells (see the module notes)."""
    whole = draw(st.sampled_from(["table"] * 12 + ["empty", "blank", "header_only", "binary", "truncated"]))
    if whole == "empty":
        return ManifestSpec(b"", None, False, None, 0, whole)
    if whole == "blank":
        return ManifestSpec(
            draw(st.sampled_from([b"\n\n", b" , ,\r\n", b"\xef\xbb\xbf"])), None, False, None, 0, whole
        )
    if whole == "binary":
        return ManifestSpec(draw(st.binary(max_size=200)), None, False, None, 0, whole)

    required = ["case_id", "image", "mask"]
    dropped = [c for c in required if draw(st.integers(0, 24)) == 0]
    header = [c for c in required if c not in dropped]
    header += [c for c in OPTIONAL if draw(st.booleans())]
    extras = draw(st.lists(st.sampled_from(EXTRA_NAMES), max_size=2))
    header += extras
    header = draw(st.permutations(header))
    header = [f" {h} " if h and draw(st.integers(0, 7)) == 0 else h for h in header]
    names = [h.strip() for h in header if h.strip()]
    refused = bool(dropped) or len(names) != len(set(names))

    n_rows = 0 if whole == "header_only" else draw(st.integers(1, 4))
    rows: list[list[str]] = []
    ids: list[str] = []
    must_ok: list[bool] = []
    first_id = ""
    for i in range(n_rows):
        cells = _cells_for_row(draw, pieces, header, i)
        if i and "case_id" in names and draw(st.integers(0, 7)) == 0:  # a duplicate id
            column = next(h for h in header if h.strip() == "case_id")
            cells[column] = Cell(first_id)
        if i == 0 and "case_id" in names:
            first_id = cells[next(h for h in header if h.strip() == "case_id")].text
        texts = [cells[h].text for h in header]
        shape = draw(st.sampled_from(["full"] * 16 + ["short", "long"]))
        if shape == "long":
            texts += draw(st.lists(garbage, min_size=1, max_size=2))
            refused = True
        elif shape == "short" and len(texts) > 1:
            texts = texts[: draw(st.integers(1, len(texts) - 1))]
        read = {h.strip(): (texts[k] if k < len(texts) else "") for k, h in enumerate(header) if h.strip()}
        kept = {
            h.strip(): (cells[h] if k < len(texts) else Cell("")) for k, h in enumerate(header) if h.strip()
        }
        for col in ("case_id", "image", "mask"):
            if col in read and not read[col].strip():
                refused = True
        refused = refused or any(c.refused for c in kept.values())
        if not any(t.strip() for t in texts):
            refused = True  # a blank record is skipped: the ids would not line up (and no case_id)
        rows.append(texts)
        ids.append(read.get("case_id", "").strip())
        must_ok.append(
            all(c.valid for c in kept.values()) and bool(read.get("image")) and bool(read.get("mask"))
        )
    if "case_id" in names and len(set(ids)) != len(ids):
        refused = True

    delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
    if any(delimiter in h or '"' in h for h in header):
        refused = True  # the delimiter is detected from the header line
    buffer = io.StringIO(newline="")
    writer = csv.writer(
        buffer,
        delimiter=delimiter,
        lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
    )
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if draw(st.integers(0, 5)) == 0:
        text = text.replace("\n", "\n\n", 1)  # a blank line after the header
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")
    if "\x00" in text or n_rows == 0:
        refused = True
    if whole == "truncated":
        cut = draw(st.integers(0, len(data)))
        return ManifestSpec(data[:cut], None, False, None, n_rows, whole)
    return ManifestSpec(data, ids, not refused, must_ok, n_rows, f"{whole}: {text!r}")


# --------------------------------------------------------------------------- manifest fuzzing


def _predict_checked(
    capfd: Any, pieces: Pieces, bundle: Path, spec: ManifestSpec, *, previous: bool, tag: str
) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=pieces.root))
    manifest = work.parent / f"{work.name}.csv"  # beside the files, so relative paths resolve
    manifest.write_bytes(spec.data)
    out = work / "results.csv"
    before = None
    if previous:
        out.write_bytes(pieces.previous)
        before = pieces.previous
    code, err = run_cli(capfd, predict_argv(manifest, out, bundle), spec.n_rows)
    outcome(f"{spec.description.partition(':')[0]}, must read {spec.must_read}: exit {code}")
    if TRACE and code == 2:
        with open(TRACE + ".errors", "a", encoding="utf-8") as f:
            f.write(err.strip().splitlines()[-1][:200] + "\n")
    check_stderr(code, err)
    expected = spec.expected_ids
    if expected is None and code != 2:
        expected = library_ids(manifest)
        assert expected is not None, "a manifest the reader refuses was predicted"
    if spec.must_read:
        assert code != 2, f"a well-formed manifest was refused: {err}\n{spec.description}"
    if TRACE and code == 1:
        with open(TRACE + ".errors", "a", encoding="utf-8") as f:
            f.writelines(f"row: {r['error'][:150]}\n" for r in read_results(out) if r["error"])
    check_results(code, out, before, expected, spec.must_ok if spec.must_read else None)


@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "resumed"])
def test_fuzzed_manifests_keep_every_row_and_fail_cleanly(capfd, pieces, tiny_bundle, previous):
    @fuzz_settings(25)
    @given(spec=manifests(pieces))
    def check(spec: ManifestSpec) -> None:
        _predict_checked(capfd, pieces, tiny_bundle, spec, previous=previous, tag="m")

    check()


def test_fuzzed_manifests_in_a_real_process_print_no_traceback(pieces, tiny_bundle):
    """Process level (interpreter tracebacks, worker output), on the tiny and the shipped bundle."""

    @fuzz_settings(3)
    @given(spec=manifests(pieces), shipped=st.booleans())
    def check(spec: ManifestSpec, shipped: bool) -> None:
        work = Path(tempfile.mkdtemp(prefix="p-", dir=pieces.root))
        manifest = work.parent / f"{work.name}.csv"
        manifest.write_bytes(spec.data)
        out = work / "results.csv"
        argv = ["predict", str(manifest), "--out", str(out), "--jobs", "1", "--no-progress"]
        argv += [] if shipped else ["--bundle", str(tiny_bundle)]
        code, err = run_process(argv, spec.n_rows)
        outcome(f"process, shipped bundle {shipped}: exit {code}")
        check_stderr(code, err)
        if spec.must_read:
            assert code != 2, err
        check_results(code, out, None, spec.expected_ids if code != 2 else None, None)

    check()


def test_shipped_bundle_in_a_real_process_keeps_a_broken_row(pieces):
    """The shipped bundle, a real process: a good row predicted, a broken one its own error row.

    Found here: a folder given as the image made ITK print a 3-line warning on stderr.
    """
    manifest = pieces.root / "shipped.csv"
    manifest.write_bytes(
        (
            "\ufeffcase_id;image;mask;spacing_mm;birads\r\n"
            f"good;{pieces.images[0]};{pieces.masks[0]};{pieces.spacings[0]};4a\r\n"
            f'"ü bad";{pieces.directory};{pieces.masks[0]};;unknown\r\n'
        ).encode()
    )
    out = pieces.root / "shipped_results.csv"
    code, err = run_process(["predict", str(manifest), "--out", str(out), "--jobs", "1", "--no-progress"], 2)
    check_stderr(code, err)
    assert code == 1
    check_results(code, out, None, ["good", "ü bad"], [True, False])


def test_evaluate_on_fuzzed_labelled_manifests_exits_cleanly(capfd, pieces, tiny_bundle):
    @fuzz_settings(4)
    @given(spec=manifests(pieces))
    def check(spec: ManifestSpec) -> None:
        work = Path(tempfile.mkdtemp(prefix="e-", dir=pieces.root))
        manifest = work.parent / f"{work.name}.csv"
        manifest.write_bytes(spec.data)
        argv = ["evaluate", str(manifest), "--report", str(work / "report"), "--bundle", str(tiny_bundle)]
        argv += ["--jobs", "1"]
        code, err = run_cli(capfd, argv, spec.n_rows)
        # evaluate draws a progress bar (tqdm) on stderr: drop its carriage-return frames.
        err = "\n".join(line for line in err.splitlines() if "case/s]" not in line and "it/s]" not in line)
        outcome(f"evaluate: exit {code}")
        check_stderr(code, err, "evaluate")
        assert code in (0, 2)

    check()


# --------------------------------------------------------------------------- bundle fuzzing


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@dataclass(frozen=True)
class Mutation:
    """A change to a copy of the bundle; ``harmless``: what is verified is left intact."""

    kind: str
    target: str
    detail: Any = None
    harmless: bool = False


@st.composite
def mutations(draw: st.DrawFn, names: list[str], manifest: dict[str, Any]) -> Mutation:
    kind = draw(
        st.sampled_from(
            [
                "truncate",
                "flip",
                "delete",
                "add",
                "sha256",
                "bytes",
                "manifest_value",
                "manifest_deep",
                "manifest_reformat",
                "forge_truncate",
                "forge_flip_header",
                "forge_json",
                "manifest_junk",
            ]
        )
    )
    target = draw(st.sampled_from(names))
    if kind == "truncate":
        return Mutation(kind, target, draw(st.integers(0, 64)))
    if kind in ("flip", "forge_flip_header"):
        return Mutation(kind, target, (draw(st.integers(0, 200)), draw(st.integers(1, 255))))
    if kind == "add":
        name = draw(
            st.sampled_from(["extra.json", "notes.txt", "model.pkl", "signature.json", "sub.npz", ".hidden"])
        )
        return Mutation(kind, name, draw(st.binary(max_size=64)))
    if kind == "manifest_value":  # a top-level key, or one inside a free-form or nested object
        nested = [
            ("extra", "radiomics_parameters"),
            ("task", "positive_class"),
            ("inputs", "clinical_variables"),
        ]
        key = draw(st.sampled_from(sorted(manifest) + nested))
        return Mutation(kind, "manifest.json", (key, draw(JSON_VALUES)))
    if kind == "manifest_deep":
        key = draw(st.sampled_from(sorted(manifest)))
        return Mutation(kind, "manifest.json", (key, draw(st.integers(50, 5000))))
    if kind == "manifest_reformat":
        return Mutation(kind, "manifest.json", draw(st.sampled_from([None, 0, 4])), harmless=True)
    if kind == "manifest_junk":
        return Mutation(kind, "manifest.json", draw(st.binary(max_size=100)))
    if kind == "forge_truncate":
        return Mutation(kind, target, draw(st.integers(0, 64)))
    if kind == "forge_json":
        json_names = [n for n in names if n.endswith(".json")] or names
        return Mutation(kind, draw(st.sampled_from(json_names)), draw(JSON_VALUES))
    return Mutation(kind, target)


def apply_mutation(source: Path, dest: Path, m: Mutation) -> None:
    """Copy ``source`` to ``dest`` (hard links for untouched files) and apply ``m``."""
    dest.mkdir()
    for p in source.iterdir():
        if p.name not in (m.target, "manifest.json"):
            os.link(p, dest / p.name)
        else:
            shutil.copyfile(p, dest / p.name)
    manifest_path = dest / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    path = dest / m.target

    def forge(content: bytes) -> None:
        import hashlib

        path.write_bytes(content)
        if m.target in manifest["files"]:
            manifest["files"][m.target] = {
                **manifest["files"][m.target],
                "sha256": hashlib.sha256(content).hexdigest(),
                "bytes": len(content),
            }
            manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    if m.kind in ("truncate", "forge_truncate"):
        content = path.read_bytes()
        if m.kind == "forge_truncate":
            forge(content[: min(m.detail, len(content) - 1)])
        else:
            path.write_bytes(content[: m.detail])
    elif m.kind in ("flip", "forge_flip_header"):
        flipped = bytearray(path.read_bytes())
        if flipped:
            at = m.detail[0] % len(flipped)
            flipped[at] ^= m.detail[1]
        if m.kind == "forge_flip_header":
            forge(bytes(flipped))
        else:
            path.write_bytes(bytes(flipped))
    elif m.kind == "delete":
        path.unlink()
    elif m.kind == "add":
        (dest / m.target).write_bytes(m.detail)
    elif m.kind in ("sha256", "bytes"):
        entry = manifest["files"].get(m.target)
        if entry is None:  # manifest.json itself: change a listed file's entry instead
            entry = manifest["files"][sorted(manifest["files"])[0]]
        if m.kind == "sha256":
            entry["sha256"] = "0" * 64
        else:
            entry["bytes"] = int(entry["bytes"]) + 1
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    elif m.kind == "manifest_value":
        key, value = m.detail
        if isinstance(key, tuple):
            manifest.setdefault(key[0], {})[key[1]] = value
        else:
            manifest[key] = value
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    elif m.kind == "manifest_deep":
        key, depth = m.detail
        manifest[key] = "@DEEP@"  # json.dumps itself cannot write thousands of levels
        text = json.dumps(manifest).replace('"@DEEP@"', "[" * depth + "0" + "]" * depth)
        manifest_path.write_text(text, encoding="utf-8")
    elif m.kind == "manifest_reformat":
        manifest_path.write_text(json.dumps(manifest, indent=m.detail), encoding="utf-8")
    elif m.kind == "manifest_junk":
        manifest_path.write_bytes(m.detail)
    elif m.kind == "forge_json":
        forge(json.dumps(m.detail).encode("utf-8"))


@pytest.fixture(scope="module")
def bundle_reference(pieces, tiny_bundle) -> tuple[Path, float]:
    """A one-case manifest and its probability with the intact tiny bundle."""
    manifest = pieces.root / "one_case.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "image", "mask", "spacing_mm"])
        w.writerow(["one", pieces.images[0], pieces.masks[0], pieces.spacings[0]])
    out = pieces.root / "one_case_results.csv"
    assert cli.main(predict_argv(manifest, out, tiny_bundle)) == 0
    return manifest, float(read_results(out)[0]["probability"])


def test_fuzzed_bundles_are_refused_in_one_line_or_predict_normally(
    capfd, pieces, tiny_bundle, bundle_reference
):
    manifest, reference = bundle_reference
    names = sorted(p.name for p in tiny_bundle.iterdir())
    bundle_manifest = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))

    @fuzz_settings(15)
    @given(m=mutations(names, bundle_manifest))
    @example(m=Mutation("manifest_reformat", "manifest.json", 4, harmless=True))
    @example(m=Mutation("forge_truncate", "pipeline.npz", 40))
    @example(m=Mutation("forge_flip_header", "cnn.safetensors", (9, 0x7F)))
    @example(m=Mutation("forge_json", "pipeline.json", {"format": 1}))
    @example(m=Mutation("manifest_deep", "manifest.json", ("extra", 10_000)))
    # Found by this test: pipeline.json valid JSON but no object gave an AttributeError traceback.
    @example(m=Mutation("forge_json", "pipeline.json", None))
    @example(m=Mutation("forge_json", "pipeline.json", [1, {"a": None}]))
    @example(m=Mutation("manifest_value", "manifest.json", (("extra", "radiomics_parameters"), [])))
    def check(m: Mutation) -> None:
        work = Path(tempfile.mkdtemp(prefix="b-", dir=pieces.root))
        bundle = work / "bundle"
        apply_mutation(tiny_bundle, bundle, m)
        out = work / "results.csv"
        code, err = run_cli(capfd, predict_argv(manifest, out, bundle), 1)
        outcome(f"{m.kind}: exit {code}")
        check_stderr(code, err)
        # Damage the checks must see: bytes that differ from manifest.json's record, files it does
        # not list or lists but are gone, a manifest.json that is no JSON.
        detectable = m.kind in ("truncate", "delete", "add", "sha256", "bytes", "manifest_junk") or (
            m.kind == "flip" and m.target != "manifest.json"
        )
        if detectable:
            assert code == 2, f"{m} was not refused"
        if code == 2:
            assert not out.exists()
            shutil.rmtree(work)
            return
        row = read_results(out)[0]
        if code == 1:
            # A consistent forgery (sha256 updated) of a well-formed but altered file, or an
            # altered manifest.json value, can pass every check: its case fails, with its cause.
            assert m.kind.startswith("forge") or m.target == "manifest.json", f"{m}: the case failed: {row}"
            assert row["status"] == "error" and row["error"], row
            assert "internal error" not in row["error"], f"{m}: a bug reached the row: {row['error']}"
        else:
            assert row["status"] == "ok", row
        if m.harmless:  # reformatting manifest.json: the same prediction
            assert float(row["probability"]) == pytest.approx(reference, abs=1e-12), m
        shutil.rmtree(work)

    check()


# --------------------------------------------------------------------------- regressions found here


def test_a_folder_without_dicom_is_one_error_and_no_itk_warning(tmp_path, capfd):
    """Regression: ITK's "No Series were found" warning reached stderr (3 lines) beside the error."""
    from DLRPredictorLib.base.errors import InputError
    from DLRPredictorLib.inputs import images

    capfd.readouterr()
    with pytest.raises(InputError):
        images.read_image(tmp_path)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("pipeline.json", None),  # valid JSON, no object: was an AttributeError traceback
        ("pipeline.json", [1, 2]),
        ("pipeline.json", {"format": 1, "dlr": {"kind": "fusion", "members": "x"}}),
        ("manifest.json", (("extra", "radiomics_parameters"), [])),  # was a TypeError traceback
    ],
)
def test_a_forged_bundle_file_of_another_shape_is_refused_in_one_line(tmp_path, tiny_bundle, name, value):
    """Consistently forged (sha256 updated) JSON of a shape the writer never gives: a BundleError."""
    from DLRPredictorLib.base.errors import BundleError
    from DLRPredictorLib.inference.predictor import load_predictor

    if name == "manifest.json":
        mutation = Mutation("manifest_value", name, value)
    else:
        mutation = Mutation("forge_json", name, value)
    apply_mutation(tiny_bundle, tmp_path / "bundle", mutation)
    with pytest.raises(BundleError) as refused:
        load_predictor(tmp_path / "bundle")
    assert "\n" not in str(refused.value)
