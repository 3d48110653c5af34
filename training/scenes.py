"""Synthetic speckle-free scenes, so that training works without any real reference.

A scene is a piecewise-smooth reflectivity map (linear intensity, > 0, layout (rows, cols)):
Voronoi fields with log-normal levels, a smooth large-scale modulation, mild texture, dark and
bright linear features (rivers, roads) and a few bright point targets -- the structures a
despeckler must keep.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _smooth_noise(rng: np.random.Generator, side: int, cells: int) -> np.ndarray:
    """Zero-mean noise of unit-ish spread varying over ``side / cells`` pixels (bicubic)."""
    grid = torch.from_numpy(rng.standard_normal((1, 1, cells + 1, cells + 1)))
    return F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=True)[0, 0].numpy()


def piecewise_smooth_scene(side: int, rng: np.random.Generator) -> np.ndarray:
    """One ``side`` x ``side`` float32 reflectivity (linear intensity, median about 1)."""
    rows, cols = np.mgrid[:side, :side].astype(np.float32)
    fields = int(rng.integers(4, 24))
    centres = rng.uniform(0, side, (fields, 2))
    stretch = rng.uniform(0.5, 2.0, fields)  # elongated fields, like parcels
    distance = ((rows[None] - centres[:, 0, None, None]) * stretch[:, None, None]) ** 2 + (
        cols[None] - centres[:, 1, None, None]
    ) ** 2
    log_scene = rng.normal(0.0, 1.0, fields)[distance.argmin(axis=0)]
    log_scene += 0.4 * _smooth_noise(rng, side, 3)
    log_scene += rng.uniform(0.0, 0.25) * _smooth_noise(rng, side, max(side // 8, 4))
    for _ in range(int(rng.integers(0, 4))):  # linear features, 1-4 px wide
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(-side / 3, side / 3)
        across = (rows - side / 2) * np.cos(angle) - (cols - side / 2) * np.sin(angle) - offset
        log_scene = np.where(np.abs(across) < rng.uniform(0.5, 2.0), rng.choice([-2.5, 1.5]), log_scene)
    targets = int(rng.integers(0, 1 + side * side // 8000))
    log_scene[rng.integers(0, side, targets), rng.integers(0, side, targets)] += rng.uniform(3.0, 6.0, targets)
    return np.exp(log_scene).astype(np.float32)
