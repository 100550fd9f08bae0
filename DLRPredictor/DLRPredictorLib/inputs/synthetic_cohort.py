"""A labelled synthetic B-mode cohort for tests and demonstrations (no external data).

Every patient has one lesion, malignant or benign, seen in one to three images (views) that share
its ``patient_id``, so that patient-level splitting matters: views of one lesion look alike.
The lesion's look follows the BI-RADS lexicon loosely (see :class:`phantom.LesionStyle`):
malignant lesions tend to be irregular and spiculated, taller than wide, with blurred margins,
posterior shadowing and heterogeneous echotexture; benign ones smooth ovals, wider than tall,
circumscribed, with posterior enhancement and homogeneous echotexture. Every feature is drawn
from overlapping ranges, and about one patient in seven is *atypical* (its lesion looks like the
other class), so the classes are separable but not trivially. Size, position, darkness and
dynamic range vary independently of the class.

Clinical columns carry signal too: ``age`` depends on the class (older more often malignant) and
``birads`` on the lesion's look (as a reader's category would); about one patient in sixteen has an
empty cell for each.

With ``signal=False`` the images, ages and BI-RADS are drawn exactly the same way, but the
written label is a separate fair draw per patient: labels are random with respect to everything
else, so a model that scores above chance on held-out patients has leaked.

Files: images as NRRD (with spacing) or PNG (spacing in the manifest's ``spacing_mm``), masks as
PNG (0/255) or NRRD labelmaps (0/1), mixed so that every reader path is exercised. Everything is
deterministic for a seed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..base.errors import InputError
from .phantom import LesionStyle, make_phantom

MANIFEST_COLUMNS = ["case_id", "image", "mask", "label", "patient_id", "spacing_mm", "age", "birads"]
IMAGE_SHAPE = (176, 224)  # rows, cols: small enough for fast radiomics and CNN crops
ATYPICAL_FRACTION = 0.15
MISSING_FRACTION = 0.06
_VIEWS = (1, 1, 1, 1, 2, 3)  # views per patient, drawn uniformly
_SPACINGS = (0.08, 0.1, 0.12)  # pixel sizes of three "scanners", in mm
_BORDER_PX = 4
_BIRADS_MALIGNANT_LOOK = (("3", "4a", "4b", "4c", "5"), (0.05, 0.15, 0.25, 0.25, 0.30))
_BIRADS_BENIGN_LOOK = (("2", "3", "4a", "4b", "4c", "5"), (0.25, 0.35, 0.22, 0.10, 0.05, 0.03))


@dataclass(frozen=True)
class _Patient:
    patient_id: str
    truth: int  # 1 = malignant: drives age (and the look, unless atypical)
    label: int  # the written label: truth with signal, an independent draw without
    style: LesionStyle
    age: str
    birads: str
    spacing_mm: float
    dynamic_range_db: float


def _style(rng: np.random.Generator, malignant_look: bool) -> LesionStyle:
    """A lesion look: class-dependent features from overlapping ranges, the rest class-free."""
    look: dict[str, Any]
    if malignant_look:
        look = {
            "irregularity": rng.uniform(0.7, 1.6),
            "spicules": int(rng.integers(2, 8)),
            "aspect": rng.uniform(0.75, 1.2),
            "margin_sigma": rng.uniform(1.5, 3.0),
            "posterior": rng.uniform(-0.7, 0.05),
            "heterogeneity": rng.uniform(0.25, 0.7),
        }
    else:
        look = {
            "irregularity": rng.uniform(0.0, 0.8),
            "spicules": int(rng.integers(0, 3)),
            "aspect": rng.uniform(0.45, 0.85),
            "margin_sigma": rng.uniform(0.8, 1.8),
            "posterior": rng.uniform(-0.15, 0.6),
            "heterogeneity": rng.uniform(0.0, 0.35),
        }
    return LesionStyle(
        scale=rng.uniform(0.5, 0.95),
        centre=(rng.uniform(0.32, 0.45), rng.uniform(0.32, 0.68)),
        darkness=rng.uniform(0.6, 0.9),
        **look,
    )


def _maybe_missing(rng: np.random.Generator, value: str) -> str:
    return "" if rng.uniform() < MISSING_FRACTION else value


def _patients(rng: np.random.Generator, n_cases: int, signal: bool) -> list[tuple[_Patient, int]]:
    """Patients with their number of views, adding up to n_cases images."""
    views: list[int] = []
    while sum(views) < n_cases:
        views.append(int(rng.choice(_VIEWS)))
    views[-1] -= sum(views) - n_cases
    n = len(views)
    # Balanced classes over patients, in random order.
    truths = rng.permutation(np.arange(n) % 2)
    # Drawn in every case (not only without signal), so that images do not depend on `signal`.
    coin = rng.permutation((np.arange(n) + int(rng.integers(0, 2))) % 2)
    out = []
    for p in range(n):
        truth = int(truths[p])
        atypical = rng.uniform() < ATYPICAL_FRACTION
        malignant_look = bool(truth) != atypical
        style = _style(rng, malignant_look)
        age = float(np.clip(rng.normal(58.0, 11.0) if truth else rng.normal(45.0, 12.0), 20, 90))
        names, probs = _BIRADS_MALIGNANT_LOOK if malignant_look else _BIRADS_BENIGN_LOOK
        birads = str(rng.choice(names, p=probs))
        patient = _Patient(
            patient_id=f"pat{p + 1:03d}",
            truth=truth,
            label=truth if signal else int(coin[p]),
            style=style,
            age=_maybe_missing(rng, f"{round(age)}"),
            birads=_maybe_missing(rng, birads),
            spacing_mm=float(rng.choice(_SPACINGS)),
            dynamic_range_db=rng.uniform(42.0, 56.0),
        )
        out.append((patient, views[p]))
    return out


def _view(rng: np.random.Generator, patient: _Patient) -> tuple[np.ndarray, np.ndarray]:
    """One image of the patient's lesion: another outline realisation, size and place nearby."""
    base = patient.style
    centre = base.centre or (0.4, 0.5)
    style = replace(
        base,
        scale=base.scale * rng.uniform(0.9, 1.1),
        centre=(centre[0] + rng.uniform(-0.03, 0.03), centre[1] + rng.uniform(-0.06, 0.06)),
    )
    seed = int(rng.integers(0, 2**31 - 1))
    for attempt in range(20):
        # A lesion reaching the border would be clipped: shrink it a little and draw again.
        volume, mask = make_phantom(
            seed + attempt,
            IMAGE_SHAPE,
            patient.spacing_mm,
            style=style,
            dynamic_range_db=patient.dynamic_range_db,
        )
        lesion = mask[0].astype(bool)
        rows, cols = np.flatnonzero(lesion.any(axis=1)), np.flatnonzero(lesion.any(axis=0))
        if (
            rows[0] >= _BORDER_PX
            and cols[0] >= _BORDER_PX
            and rows[-1] < IMAGE_SHAPE[0] - _BORDER_PX
            and cols[-1] < IMAGE_SHAPE[1] - _BORDER_PX
        ):
            return volume.array[0].astype(np.uint8), mask[0]
        style = replace(style, scale=style.scale * 0.9)
    raise AssertionError("no lesion fitted inside the image")  # pragma: no cover (scale shrinks to fit)


def _write(array: np.ndarray, spacing_mm: float, path: Path) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((spacing_mm, spacing_mm))
    sitk.WriteImage(image, str(path), useCompression=True)


def write_cohort(folder: str | Path, n_cases: int = 40, seed: int = 0, signal: bool = True) -> Path:
    """Write a labelled synthetic cohort and its manifest.

    Args:
        folder: output folder (created if needed); images go to ``images/``, masks to ``masks/``.
        n_cases: number of images (a patient contributes one to three).
        seed: random seed; the same seed gives byte-identical files.
        signal: True: labels follow the lesions' look and the clinical values; False: labels are
            random with respect to images, age and BI-RADS (a leakage check).

    Returns:
        Path of ``manifest.csv`` with columns case_id, image, mask, label (malignant / benign),
        patient_id, spacing_mm, age, birads (paths relative to the manifest).

    Raises:
        InputError: n_cases is smaller than 1.
    """
    if n_cases < 1:
        raise InputError(f"a synthetic cohort needs at least 1 case, got n_cases={n_cases}")
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    index = 0
    for patient, n_views in _patients(rng, n_cases, signal):
        for _ in range(n_views):
            case_id = f"syn{index + 1:03d}"
            image, mask = _view(rng, patient)
            # Mixed formats: PNG images rely on the manifest's spacing_mm, NRRD ones carry it.
            image_path = Path("images") / f"{case_id}.{'png' if index % 3 == 0 else 'nrrd'}"
            mask_path = Path("masks") / f"{case_id}.{'nrrd' if index % 4 == 1 else 'png'}"
            _write(image, patient.spacing_mm, root / image_path)
            _write(mask if mask_path.suffix == ".nrrd" else mask * 255, patient.spacing_mm, root / mask_path)
            rows.append(
                {
                    "case_id": case_id,
                    "image": image_path.as_posix(),
                    "mask": mask_path.as_posix(),
                    "label": "malignant" if patient.label else "benign",
                    "patient_id": patient.patient_id,
                    "spacing_mm": f"{patient.spacing_mm:g}",
                    "age": patient.age,
                    "birads": patient.birads,
                }
            )
            index += 1
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
