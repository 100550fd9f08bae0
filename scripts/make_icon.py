#!/usr/bin/env python3
"""Draw the module icon: an ultrasound fan with a dark lesion under a Grad-CAM-like heat overlay.

Deterministic (fixed seed), drawn at 4x and downsampled for smooth edges. Usage::

    python scripts/make_icon.py [OUTPUT.png]   # default: DLRPredictor/Resources/Icons/DLRPredictor.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 128
SCALE = 4
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "DLRPredictor" / "Resources" / "Icons" / "DLRPredictor.png"
)


def _heat_colors(t: np.ndarray) -> np.ndarray:
    """A small 'hot' colormap: transparent-ish red through orange to yellow, t in [0, 1]."""
    r = np.clip(1.5 * t + 0.4, 0.0, 1.0)
    g = np.clip(1.8 * t - 0.6, 0.0, 1.0)
    b = np.clip(3.0 * t - 2.4, 0.0, 1.0)
    return np.stack([r, g, b], axis=-1)


def draw(size: int = SIZE, scale: int = SCALE, seed: int = 7) -> Image.Image:
    """Render the icon.

    Args:
        size: output width and height in pixels.
        scale: supersampling factor.
        seed: seed of the speckle pattern.

    Returns:
        An RGBA image of size x size.
    """
    n = size * scale
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / n  # 0..1, y downwards

    # Rounded dark background.
    radius, margin = 0.16, 0.02
    cx = np.clip(x, margin + radius, 1 - margin - radius)
    cy = np.clip(y, margin + radius, 1 - margin - radius)
    inside_square = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
    rgb = np.zeros((n, n, 3))
    rgb[...] = (0.07, 0.11, 0.20)

    # Ultrasound fan: apex at the top centre, 70 degrees wide, between two radii.
    ax, ay = 0.5, 0.04
    dist = np.hypot(x - ax, y - ay)
    angle = np.degrees(np.arctan2(x - ax, y - ay))
    fan = (np.abs(angle) <= 35) & (dist >= 0.12) & (dist <= 0.90)
    speckle = rng.rayleigh(0.35, size=(n // scale, n // scale))
    speckle = np.kron(speckle, np.ones((scale, scale)))
    depth_gain = np.clip(1.1 - 0.7 * dist, 0.3, 1.0)
    gray = np.clip(0.25 + 0.45 * speckle * depth_gain, 0.0, 1.0)

    # Hypoechoic (dark) lesion with a slightly irregular margin.
    lx, ly, rx, ry = 0.50, 0.56, 0.17, 0.11
    theta = np.arctan2(y - ly, x - lx)
    wobble = 1.0 + 0.08 * np.sin(5 * theta) + 0.05 * np.cos(3 * theta)
    lesion_r = np.hypot((x - lx) / rx, (y - ly) / ry) / wobble
    lesion = lesion_r <= 1.0
    gray = np.where(lesion, 0.06 + 0.10 * gray, gray)
    gray = np.where((lesion_r > 1.0) & (lesion_r < 1.12), np.minimum(gray + 0.25, 1.0), gray)
    rgb = np.where(fan[..., None], gray[..., None] * np.array([0.92, 0.95, 1.0]), rgb)

    # Heat overlay centred on the lesion (what Grad-CAM would show).
    heat = np.exp(-(((x - 0.53) / 0.16) ** 2 + ((y - 0.54) / 0.12) ** 2))
    alpha = np.where(fan, 0.75 * heat, 0.0)[..., None]
    rgb = (1 - alpha) * rgb + alpha * _heat_colors(heat)

    rgba = np.concatenate([rgb, inside_square[..., None].astype(np.float64)], axis=-1)
    big = Image.fromarray(np.round(255 * np.clip(rgba, 0, 1)).astype(np.uint8), mode="RGBA")
    return big.resize((size, size), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    """Write the icon; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    output = Path(args[0]) if args else DEFAULT_OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    draw().save(output, format="PNG", optimize=True)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
