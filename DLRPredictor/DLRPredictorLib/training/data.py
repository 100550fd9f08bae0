"""Training inputs: cases read from a manifest, their contour variants, radiomics and crops.

Contour variants (``exact``, ``ellipse``, ``erode2``, ``dilate2``, ``jitter``, ...) are extra
training rows of the same case: the model learns from outlines as rough as a quick reader's. All
variants of a case share its patient group, so no split ever separates them.
Radiomics are cached per (case, variant, parameter hash) in the work folder: an interrupted
training resumes without recomputing them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..base.case import LesionSlice
from ..base.compat import zip_strict
from ..base.errors import DLRError, InputError
from ..base.executor import MapFunction
from ..inputs import contours
from ..inputs import lesion as lesion_mod
from ..inputs.crops import CropSpec, lesion_crop

Log = Callable[[str], None]


@dataclass
class TrainingCase:
    """One labelled case with its lesion outlines."""

    case_id: str
    patient_id: str
    label: int
    clinical: dict[str, str]
    variants: dict[str, LesionSlice] = field(repr=False)
    dataset: str = ""  # the manifest's optional `dataset` column: held-out metrics per dataset
    extra: dict[str, str] = field(default_factory=dict)  # other manifest columns (split.fold_column)


def make_variant(lesion: LesionSlice, name: str, seed: int) -> LesionSlice:
    """A contour variant of a lesion (same image, another outline).

    Raises:
        LesionError: when the variant would be empty or too small.
    """
    if name == "exact":
        return lesion
    if name == "ellipse":
        mask = contours.ellipse_mask(lesion.mask)
    elif name.startswith("erode"):
        mask = contours.erode_mask(lesion.mask, int(name[5:]))
    elif name.startswith("dilate"):
        mask = contours.dilate_mask(lesion.mask, int(name[6:]))
    elif name == "jitter":
        rng = np.random.default_rng(seed)
        amplitude = max(2.0, 0.06 * float(np.sqrt(lesion.mask.sum())))
        mask = contours.jitter_contour(lesion.mask, rng, amplitude_px=amplitude)
    else:
        raise InputError(f"unknown contour variant '{name}'")
    mask = mask.astype(np.uint8)
    return LesionSlice(lesion.image, mask, lesion.spacing, lesion.slice_index, lesion_mod.bounding_box(mask))


def _case_seed(case_id: str, seed: int) -> int:
    return int(hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()[:8], 16)


def load_case(row: Any, label: int, variants: list[str], pixel_units: bool, seed: int) -> TrainingCase:
    """Read one manifest row into a TrainingCase (all variants).

    Raises:
        DLRError: unreadable image or unusable lesion (the caller excludes the case).
    """
    from ..inputs import images

    volume = images.read_image(row.resolved_image, spacing_mm=row.spacing_mm)
    mask = lesion_mod.read_mask(row.resolved_mask, volume, segment=row.segment or None)
    exact = lesion_mod.representative_slice(volume, mask, case=row.case_id)
    if pixel_units:
        exact.spacing = (1.0, 1.0)
    out = {}
    for name in variants:
        try:
            out[name] = make_variant(exact, name, _case_seed(row.case_id, seed))
        except DLRError:
            out[name] = exact  # a lesion too thin to erode keeps its exact outline
    dataset = str((row.extra or {}).get("dataset", "")).strip()
    extra = dict(row.extra or {})
    patient = row.patient_id or row.case_id
    return TrainingCase(row.case_id, patient, label, dict(row.clinical), out, dataset, extra)


def _extract_one(args: tuple[LesionSlice, dict[str, Any]]) -> dict[str, float] | str:
    from ..features import radiomics as rf

    lesion, params = args
    try:
        return rf.extract_features(lesion, params)
    except DLRError as exc:
        return f"error: {exc}"


def radiomics_table(
    cases: list[TrainingCase],
    variants: list[str],
    params: dict[str, Any],
    cache_dir: Path | None,
    *,
    jobs: int = 1,
    log: Log | None = None,
    map_fn: MapFunction | None = None,
) -> tuple[list[str], dict[tuple[str, str], np.ndarray]]:
    """Radiomics of every (case, variant), cached on disk.

    ``map_fn`` (a cluster's map, ``base.executor``) runs the extractions instead of ``jobs`` local
    processes; the cache is written here, in the order of the cases, either way.

    Returns:
        (feature names, {(case_id, variant): vector}); pairs whose extraction failed are absent.
    """
    from ..features import radiomics as rf

    phash = rf.parameters_hash(params)[:16]
    cache: dict[str, dict[str, float]] = {}
    cache_file = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = cache_dir / f"radiomics_{phash}.jsonl"
        if cache_file.exists():
            for line in cache_file.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from an interrupted run
                cache[item["key"]] = item["features"]

    def key(c: TrainingCase, v: str) -> str:
        lz = c.variants[v]
        digest = hashlib.sha256(lz.mask.tobytes() + lz.image.tobytes()).hexdigest()[:16]
        return f"{c.case_id}|{v}|{digest}"

    todo = [(c, v) for c in cases for v in variants if key(c, v) not in cache]
    if log:
        log(f"radiomics: {len(cases) * len(variants) - len(todo)} cached, {len(todo)} to extract")
    if todo:
        fh = open(cache_file, "a", encoding="utf-8") if cache_file else None
        try:
            args = [(c.variants[v], params) for c, v in todo]
            if map_fn is not None:
                _store(todo, map_fn(_extract_one, args), key, cache, fh, log=log)
            elif jobs > 1:
                with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                    results = pool.map(_extract_one, args, chunksize=8)
                    _store(todo, results, key, cache, fh, log=log)
            else:
                _store(todo, map(_extract_one, args), key, cache, fh, log=log)
        finally:
            if fh:
                fh.close()
    names: list[str] | None = None
    table: dict[tuple[str, str], np.ndarray] = {}
    for c in cases:
        for v in variants:
            feats = cache.get(key(c, v))
            if feats is None:
                continue
            if names is None:
                names = list(feats)
            table[(c.case_id, v)] = np.array([feats[n] for n in names], dtype=float)
    if names is None:
        raise InputError("radiomics failed for every case: check the images and masks")
    return names, table


def _store(todo: list, results: Any, key: Callable, cache: dict, fh: Any, *, log: Log | None) -> None:
    for i, ((c, v), res) in enumerate(zip_strict(todo, results)):
        if isinstance(res, str):
            if log:
                log(f"radiomics {c.case_id} ({v}): {res}")
            continue
        k = key(c, v)
        cache[k] = res
        if fh:
            fh.write(json.dumps({"key": k, "features": res}) + "\n")
            fh.flush()
        if log and (i + 1) % 200 == 0:
            log(f"radiomics: {i + 1} of {len(todo)}")


def crops_array(
    cases: list[TrainingCase], variants: list[str], spec: CropSpec, map_fn: MapFunction | None = None
) -> np.ndarray:
    """(N, V, size, size) z-scored lesion crops of every case and variant (per case on ``map_fn``)."""
    out = np.zeros((len(cases), len(variants), spec.size, spec.size), dtype=np.float32)
    if map_fn is not None:
        for i, crops in enumerate(
            map_fn(functools.partial(_case_crops, variants=variants, spec=spec), cases)
        ):
            out[i] = crops
        return out
    for i, c in enumerate(cases):
        out[i] = _case_crops(c, variants, spec)
    return out


def _case_crops(case: TrainingCase, variants: list[str], spec: CropSpec) -> np.ndarray:
    """(V, size, size) crops of one case."""
    return np.stack([lesion_crop(case.variants[v], spec)[0] for v in variants]).astype(np.float32)
