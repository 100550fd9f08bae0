"""`dlrpredictor predict` with a multi-input bundle: a multi-input manifest, one row per case.

The manifest names each case's inputs (``image:NAME``, ``mask:NAME``; ``inputs.multi_input``).
Every case is predicted from the inputs it has by the model the bundle trained for them; the
results CSV has the one-input columns that apply (``case_id, status, error, probability,
predicted_label, cutoff, model_used, bundle_id``), ``inputs_used``, one ``score_INPUT:signature``
column per input and signature, ``warnings``, ``label``, ``input_digest`` and ``bundle_digest``.
A failed case is an error row and never stops the others; the file is written atomically at the
end. Cases run one after the other in this process (no worker pool). As a one-input run, every
finished row is journalled (``journal``) and a rerun reuses a previous row only when it succeeded
with the same bundle and the same ``input_digest`` (every input's image and mask bytes, segment
and spacing, and the bundle's content digest); the others are predicted again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import DLRError
from ..deep.heatmap import DEFAULT_HEATMAP
from ..inference.multi_input_predictor import MultiInputPredictor, load_multi_input_predictor
from .batch import scene_heatmap_kind
from .journal import Journal, done_rows, journal_path, reuse_verdict
from .results_file import ResultsLock, check_results_path, write_failed
from .rows import _fmt, error_row, write_csv_atomic

#: Writes one case's scene: (path, {input: (image, mask)}, predictor, prediction).
SceneWriter = Callable[[Path, Any, MultiInputPredictor, Any], Any]
BASE = ["case_id", "status", "error", "probability", "predicted_label", "cutoff", "model_used", "inputs_used"]


@dataclass
class MultiInputSummary:
    """What a multi-input cohort run did."""

    out: Path
    n_cases: int
    n_error: int
    n_reused: int = 0

    def line(self) -> str:
        """The summary line the CLI prints."""
        ok = self.n_cases - self.n_error
        reused = f"; {self.n_reused} reused" if self.n_reused else ""
        return f"{ok} of {self.n_cases} cases predicted, {self.n_error} failed{reused}: {self.out}"


def result_columns(pred: MultiInputPredictor) -> list[str]:
    """The results CSV's columns for this bundle."""
    scores = [f"score_{c}" for c in pred.score_columns()]
    return [*BASE, "bundle_id", *scores, "warnings", "label", "input_digest", "bundle_digest"]


def case_digest(pred: MultiInputPredictor, row: Any) -> str:
    """The fingerprint of a case's results row: each given input's ``fingerprint.input_digest``
    (image and mask bytes, segment, spacing, the bundle's content digest), by input name."""
    import hashlib
    import json

    from .fingerprint import input_digest

    parts = {
        name: input_digest(
            {
                "image": r.resolved_image,
                "mask": r.resolved_mask,
                "segment": r.segment,
                "spacing_mm": r.spacing_mm,
            },
            pred.bundle_digest,
            stability=False,
        )
        for name, r in row.inputs.items()
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def predict_multi_input_case(
    pred: MultiInputPredictor,
    row: Any,
    *,
    scenes_dir: Path | None = None,
    heatmap_kind: str = DEFAULT_HEATMAP,
    write_scene: SceneWriter | None = None,
) -> dict[str, Any]:
    """One manifest row's results row (raises DLRError for the caller's error row).

    ``write_scene(path, inputs, pred, result)`` writes the case's .mrb when ``scenes_dir`` is given
    (default ``scene.multi_input_scene.write_multi_input_case_scene``, a scene of its own; the
    Slicer batch script passes one that uses the application's scene).
    """
    from ..base.case_ids import case_file_stem
    from ..inputs import images, lesion

    arrays = {}
    for name, r in row.inputs.items():
        try:
            volume = images.read_image(r.resolved_image, spacing_mm=r.spacing_mm)
            arrays[name] = (volume, lesion.read_mask(r.resolved_mask, volume, segment=r.segment or None))
        except DLRError as exc:
            raise type(exc)(f"input '{name}': {exc}") from exc
    res = pred.predict(arrays, heatmap=scenes_dir is not None, heatmap_kind=heatmap_kind, case=row.case_id)
    if scenes_dir is not None:
        from ..scene.multi_input_scene import write_multi_input_case_scene

        writer = write_scene or write_multi_input_case_scene
        writer(Path(scenes_dir) / f"{case_file_stem(row.case_id)}.mrb", arrays, pred, res)
    out = {
        "case_id": row.case_id,
        "status": "ok",
        "error": "",
        "probability": _fmt(res.probability),
        "predicted_label": res.label,
        "cutoff": _fmt(res.cutoff),
        "model_used": res.model_used,
        "inputs_used": " ".join(res.inputs_used),
        "bundle_id": pred.bundle_id,
        "warnings": " | ".join(res.warnings),
        "label": row.label_raw or "",
        "bundle_digest": pred.bundle_digest,
    }
    out.update({f"score_{k}": _fmt(v) for k, v in res.signature_scores.items()})
    return out


def predict_multi_input_cohort(
    manifest: Path,
    out: Path,
    *,
    bundle_path: Path,
    scenes_dir: Path | None = None,
    heatmap_kind: str | None = None,
    log: Callable[[str], None] | None = None,
    write_scene: SceneWriter | None = None,
) -> MultiInputSummary:
    """Predict every case of a multi-input manifest into a results CSV (module notes).

    Raises:
        InputError, ManifestError, BundleError: before any case, for an unusable output path,
            manifest or bundle (and --heatmap without --scenes).
    """
    from ..base.outputs import refuse_overwriting_inputs
    from ..inputs.multi_input import read_multi_input_csv

    kind = scene_heatmap_kind(heatmap_kind, scenes_dir)  # refused without --scenes, as one-input runs
    out = Path(out)
    check_results_path(out)
    pred = load_multi_input_predictor(bundle_path)
    labels = {pred.positive_class.lower(): 1, pred.negative_class.lower(): 0}
    rows = read_multi_input_csv(
        manifest,
        pred.input_names,
        required_inputs=pred.bundle.required_inputs,
        label_values=labels,
        warn=log,
    )
    files = [p for r in rows for x in r.inputs.values() for p in (x.resolved_image, x.resolved_mask)]
    refuse_overwriting_inputs({"--out": out}, [manifest, *files], [])
    columns = result_columns(pred)
    lock = ResultsLock(out).acquire()
    try:
        previous = done_rows(out)
        journal = Journal(journal_path(out), columns)
        results, n_error, n_reused = [], 0, 0
        try:
            for row in rows:
                digest = case_digest(pred, row)
                before = previous.get(row.case_id)
                if before is not None and not reuse_verdict(before, pred.bundle_id, digest):
                    results.append({**before, "label": row.label_raw or ""})  # a corrected label alone
                    n_reused += 1
                    continue
                result = _safe_case(
                    pred, row, scenes_dir=scenes_dir, heatmap_kind=kind, write_scene=write_scene
                )
                result["input_digest"] = digest
                n_error += result["status"] == "error"
                journal.write(result)
                results.append(result)
        finally:
            journal.close()
        try:
            write_csv_atomic(out, results, columns)
        except OSError as exc:
            raise write_failed(out, exc) from exc
        journal_path(out).unlink(missing_ok=True)
    finally:
        lock.release()
    return MultiInputSummary(out, len(rows), n_error, n_reused)


def _safe_case(
    pred: MultiInputPredictor,
    row: Any,
    *,
    scenes_dir: Path | None,
    heatmap_kind: str,
    write_scene: SceneWriter | None,
) -> dict[str, Any]:
    """The case's results row, or its error row (never raises for a case)."""
    job = {"case_id": row.case_id, "label": row.label_raw or ""}
    try:
        return predict_multi_input_case(
            pred, row, scenes_dir=scenes_dir, heatmap_kind=heatmap_kind, write_scene=write_scene
        )
    except DLRError as exc:
        return error_row(job, str(exc), pred.bundle_id)
    except Exception as exc:  # a bug must not stop the cohort; its row says what happened
        return error_row(
            job, f"internal error ({type(exc).__name__}: {exc}); please report it", pred.bundle_id
        )


def evaluate_multi_input_cohort(manifest: Path, report_dir: Path, *, bundle_path: Path) -> Path:
    """``dlrpredictor evaluate`` with a multi-input bundle: predict a labelled multi-input manifest
    into ``REPORT_predictions.csv`` and write the report of its ``probability`` (each row at the
    cutoff of the model that answered it, the results CSV's ``cutoff`` column).

    Returns:
        The report folder.

    Raises:
        InputError, ManifestError, BundleError: as :func:`predict_multi_input_cohort`; the report
            folder or predictions file would overwrite an input.
    """
    from ..base.outputs import refuse_overwriting_inputs
    from ..evaluation import report_csv

    report_dir = Path(report_dir)
    predictions = report_dir.with_name(report_dir.name + "_predictions.csv")
    refuse_overwriting_inputs({"--report": report_dir, "--out": predictions}, [manifest], [])
    pred = load_multi_input_predictor(bundle_path)
    predict_multi_input_cohort(manifest, predictions, bundle_path=bundle_path)
    return report_csv.report_from_predictions_csv(
        predictions,
        "label",
        ["probability"],
        report_dir,
        positive_label=pred.positive_class,
        negative_label=pred.negative_class,
        title=f"Evaluation of {pred.bundle_id} on {Path(manifest).name}",
    )
