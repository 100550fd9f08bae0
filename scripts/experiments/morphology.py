#!/usr/bin/env python3
"""Do BI-RADS-style morphology and context features add to the Original radiomics?

Twelve hand-crafted descriptors of what a reader looks at, per case and contour variant:
solidity, convexity (hull perimeter / perimeter), taller-than-wide (box height / width), vertical
orientation of the major axis, radial coefficient of variation, lobulations (peaks of the smoothed
radial profile), boundary roughness, contrast of the 8 px ring outside the lesion, echogenic halo
(0-3 px ring minus 3-8 px ring), posterior shadowing / enhancement (below the lesion against
beside it), margin sharpness (mean gradient on the outline) and internal heterogeneity. Computed
once into ``out/exp/morph.npz`` (about 5 minutes on 2 cores), then the held-out BUS-BRA AUC of an
L1 logistic model (the five contour variants of the training split, as rad_variants.py) with
Original features, morphology features and both; with ``--cnn`` also their weighted average with
the CNN score (weight examined on the test fold: optimistic, as fuse.py).

Usage: python scripts/experiments/morphology.py [--cnn out/exp/cnn_m15s96.npz]
Input: out/exp/orig.npz (prepare_features.py).

Backs: docs/EXPERIMENTS.md section 5: no morphology descriptors (not adopted).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from common import (
    ALL_VARIANTS,
    EXP_DIR,
    check_same_cases,
    l1_logistic,
    load_cases,
    logit,
    print_flush,
    split_masks,
)

NAMES = [
    "solidity",
    "convexity",
    "taller_than_wide",
    "vertical_orientation",
    "radial_cv",
    "lobulations",
    "ring_contrast",
    "halo",
    "posterior",
    "margin_sharpness",
    "inside_cv",
    "roughness",
]
C_VALUES = (0.05, 0.3, 1.0)
WEIGHTS = (0.6, 0.7)


def parse_args() -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", type=Path, default=EXP_DIR / "orig.npz", help="prepare_features.py cache")
    ap.add_argument("--cnn", type=Path, default=None, help="a cnn_margin.py output to fuse with")
    return ap.parse_args()


def _perimeter(contour: np.ndarray) -> float:
    step = np.diff(contour, axis=0)
    return float(np.hypot(step[:, 0], step[:, 1]).sum())


def describe(image: np.ndarray, mask: np.ndarray) -> list[float]:
    """The twelve descriptors of one lesion (see the module docstring)."""
    from scipy import ndimage as ndi
    from scipy.signal import find_peaks
    from skimage.measure import find_contours, regionprops
    from skimage.morphology import convex_hull_image

    m = mask.astype(bool)
    img = image.astype(np.float64)
    props = regionprops(m.astype(np.uint8))[0]
    hull = convex_hull_image(m)
    r0, c0, r1, c1 = props.bbox
    h, w = r1 - r0, c1 - c0
    outline = max(find_contours(m.astype(float), 0.5), key=len)
    hull_outline = max(find_contours(hull.astype(float), 0.5), key=len)
    cy, cx = props.centroid
    radius = np.hypot(outline[:, 0] - cy, outline[:, 1] - cx)
    n = len(radius)
    smooth = ndi.gaussian_filter1d(radius, sigma=max(1.0, n / 60), mode="wrap")
    peaks, _ = find_peaks(np.concatenate([smooth, smooth]), prominence=0.03 * radius.mean())
    coarse = ndi.gaussian_filter1d(radius, sigma=max(2.0, n / 30), mode="wrap")
    scale = img.std() + 1e-6
    inside = img[m]
    near = ndi.binary_dilation(m, iterations=3) & ~m
    far = ndi.binary_dilation(m, iterations=8) & ~ndi.binary_dilation(m, iterations=3)
    rows = slice(r1, min(r1 + max(h // 2, 3), img.shape[0]))
    below = img[rows, c0:c1]
    beside = np.concatenate(
        [img[rows, max(0, c0 - w // 2) : c0].ravel(), img[rows, c1 : min(img.shape[1], c1 + w // 2)].ravel()]
    )
    posterior = (below.mean() - beside.mean()) / scale if below.size and beside.size else 0.0
    gy, gx = np.gradient(ndi.gaussian_filter(img, 1.5))
    edge = m & ~ndi.binary_erosion(m)
    return [
        float(m.sum()) / float(hull.sum()),
        _perimeter(hull_outline) / _perimeter(outline),
        h / max(w, 1),
        abs(np.cos(props.orientation)),
        radius.std() / radius.mean(),
        float(sum(1 for p in peaks if n <= p < 2 * n)),
        (img[near | far].mean() - inside.mean()) / scale,
        (img[near].mean() - img[far].mean()) / scale,
        posterior,
        np.hypot(gy, gx)[edge].mean() / scale,
        inside.std() / (inside.mean() + 1e-6),
        float(np.abs(radius - coarse).mean() / radius.mean()),
    ]


def _describe_chunk(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[list[float]]:
    out = []
    for image, mask in pairs:
        try:
            out.append(describe(image, mask))
        except (ValueError, IndexError, ZeroDivisionError):  # degenerate outline
            out.append([np.nan] * len(NAMES))
    return out


def compute(path: Path) -> None:
    """Describe every case and contour variant into ``path``."""
    cases, _ = load_cases(ALL_VARIANTS)
    arrays = {}
    with ProcessPoolExecutor(2) as pool:
        for variant in ALL_VARIANTS:
            pairs = [(c.variants[variant].image, c.variants[variant].mask) for c in cases]
            chunks = [pairs[i : i + 50] for i in range(0, len(pairs), 50)]
            described = pool.map(_describe_chunk, chunks)
            arrays["M_" + variant] = np.array([row for chunk in described for row in chunk])
            print_flush(f"described the {variant} outlines")
    np.savez(path, names=np.array(NAMES), ids=np.array([c.case_id for c in cases]), **arrays)


def main() -> None:
    """Compute (once) and evaluate the morphology features."""
    from sklearn.metrics import roc_auc_score

    args = parse_args()
    morph_path = EXP_DIR / "morph.npz"
    if not morph_path.is_file():
        compute(morph_path)
    data, morph = np.load(args.npz), np.load(morph_path)
    check_same_cases(data["ids"], morph["ids"], f"{args.npz.name} vs {morph_path.name}")
    cnn = np.load(args.cnn) if args.cnn else None
    if cnn is not None:
        check_same_cases(data["ids"], cnn["ids"], f"{args.npz.name} vs {args.cnn.name}")
    y = data["labels"]
    train, test = split_masks(data["split"], data["dataset"])

    for variant in ("exact", "ellipse"):
        cells = []
        for j, name in enumerate(NAMES):
            auc = roc_auc_score(y[test], np.nan_to_num(morph["M_" + variant][test][:, j]))
            cells.append(f"{name} {max(auc, 1 - auc):.3f}")
        print_flush(f"single descriptors, {variant} (AUC or 1 - AUC): " + ", ".join(cells))

    def matrix(variant: str, rows: np.ndarray, groups: tuple[str, ...]) -> np.ndarray:
        parts = {"original": data["R_" + variant][rows], "morphology": morph["M_" + variant][rows]}
        return np.nan_to_num(np.hstack([parts[g] for g in groups]))

    for groups in (("original",), ("original", "morphology"), ("morphology",)):
        for c in C_VALUES:
            model = l1_logistic(c)
            model.fit(
                np.vstack([matrix(v, train, groups) for v in ALL_VARIANTS]),
                np.concatenate([y[train]] * len(ALL_VARIANTS)),
            )
            scale = np.std(model.decision_function(matrix("exact", train, groups)))
            cells = []
            for variant in ("exact", "ellipse"):
                score = model.decision_function(matrix(variant, test, groups))
                cells.append(f"{variant} {roc_auc_score(y[test], score):.3f}")
                if cnn is not None:
                    cnn_z = logit(cnn[f"P_{variant}"][test]) / np.std(logit(cnn["P_exact"][train]))
                    for w in WEIGHTS:
                        fused = w * score / scale + (1 - w) * cnn_z
                        cells.append(f"fused w={w} {roc_auc_score(y[test], fused):.3f}")
            print_flush(f"{' + '.join(groups):22s} C={c:<5} " + "  ".join(cells))


if __name__ == "__main__":
    main()
