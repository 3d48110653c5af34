"""Synthetic speckle-free scenes, so that training works without any real reference.

A scene is a reflectivity map (linear intensity, > 0, layout (rows, cols)). ``countryside``
(:func:`piecewise_smooth_scene`): Voronoi fields with log-normal levels, a smooth large-scale
modulation, mild texture, dark and bright linear features (rivers, roads) and a few bright
point targets -- the structures a despeckler must keep. ``urban`` (:func:`urban_scene`) lays
city blocks over it. :data:`SCENES` maps the names training configs use to the generators.
:func:`point_scatterers` draws strong single-pixel scatterers for any reflectivity patch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


#: Strength of synthetic point scatterers: ln units above the reflectivity they land on
#: (20 x to 400 x; a one-look speckle peak exceeds 20 x once in half a billion pixels).
POINT_SCATTERER_LN = (3.0, 6.0)


def point_scatterers(reflectivity: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The intensity of strong single-pixel scatterers (corners, poles, ships) laid on
    ``reflectivity`` (linear intensity, any layout; the result has its layout and dtype): zero
    except at a Poisson number of pixels, ``fraction`` of them on average, where it is the
    reflectivity there times exp(U(POINT_SCATTERER_LN)).

    Callers add it *after* drawing the speckle: a scatterer that dominates its resolution cell
    returns nearly the same intensity at every look (Rice statistics with a high
    target-to-clutter ratio), unlike distributed clutter. Single-look images of built-up areas
    are full of them (Sentinel-1 over Shanghai: 0.6 % of the pixels are over 20 x the local mean,
    taken as their 9 x 9 median / ln 2); references of fields and forests have almost none.
    """
    scatterers = np.zeros_like(reflectivity)
    count = int(rng.poisson(fraction * scatterers.size))
    where = np.unravel_index(rng.integers(0, scatterers.size, count), scatterers.shape)
    scatterers[where] = reflectivity[where] * np.exp(rng.uniform(*POINT_SCATTERER_LN, count))
    return scatterers


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
    log_scene[rng.integers(0, side, targets), rng.integers(0, side, targets)] += rng.uniform(*POINT_SCATTERER_LN, targets)
    return np.exp(log_scene).astype(np.float32)


def urban_scene(side: int, rng: np.random.Generator) -> np.ndarray:
    """One ``side`` x ``side`` float32 built-up reflectivity (linear intensity, > 0).

    A piecewise-smooth scene (:func:`piecewise_smooth_scene`) over which a district of city
    blocks is laid: a rotated street grid (pitch 6-24 px, dark streets 1-3 px wide), each block
    a building about 1 ln unit (0.6 spread) brighter than the ground with lognormal texture that
    varies over a few pixels, a bright double-bounce line along its near wall (+1 to +2.5 ln
    units), and strong point scatterers (0.3 % of the built-up pixels, +3 to +6 ln units) -- the
    heavy-tailed bright structures of cities that references of fields and forests lack. With
    one-look speckle the 99th percentile of a scene is about 30-45 x its median (Sentinel-1 over
    Shanghai: 20-27 x). No structure is white at the pixel scale or as faint as a speckle peak:
    training on such structure teaches a network to follow the speckle (measured: the ratio
    image's mean falls on real urban images).
    """
    log_scene = np.log(piecewise_smooth_scene(side, rng))
    rows, cols = np.mgrid[:side, :side].astype(np.float32)
    angle = rng.uniform(0, np.pi / 2)
    along = rows * np.cos(angle) + cols * np.sin(angle)
    across = -rows * np.sin(angle) + cols * np.cos(angle)
    pitch = rng.uniform(6, 24, 2)
    street = rng.uniform(1, 3)
    block_u, block_v = np.floor(along / pitch[0]).astype(int), np.floor(across / pitch[1]).astype(int)
    offset_u, offset_v = along - block_u * pitch[0], across - block_v * pitch[1]
    levels = rng.normal(1.0, 0.6, (block_u.max() - block_u.min() + 1, block_v.max() - block_v.min() + 1))
    building = levels[block_u - block_u.min(), block_v - block_v.min()]
    district = _smooth_noise(rng, side, 3) > rng.uniform(-0.8, 0.4)
    roof = district & (offset_u > street) & (offset_v > street)
    wall = roof & (offset_u <= street + 1)
    ground = float(np.median(log_scene))
    texture = rng.uniform(0.2, 0.6) * _smooth_noise(rng, side, max(side // 3, 4))
    log_scene = np.where(district, ground - 1.0, log_scene)
    log_scene = np.where(roof, ground + building + texture, log_scene)
    log_scene = np.where(wall, log_scene + rng.uniform(1.0, 2.5), log_scene)
    scatterers = district & (rng.random((side, side)) < 0.003)
    log_scene[scatterers] += rng.uniform(*POINT_SCATTERER_LN, int(scatterers.sum()))
    return np.exp(log_scene).astype(np.float32)


#: Generators of synthetic scenes, by the ``scene`` name a training source gives.
SCENES = {"countryside": piecewise_smooth_scene, "urban": urban_scene}
