"""``python -m training prepare``: cut users' images into a patch file for training.

Inputs are GeoTIFFs (any GDAL raster, read strip by strip through core.raster.RasterReader, so
scenes of any size fit in memory) or numpy arrays (``.npy``). Kinds and layouts:

* ``clean``: speckle-free reference, one band / a (rows, cols) array.
* ``single_look``: real speckled intensity (spatially white speckle), one band / (rows, cols).
* ``slc``: single-look complex: a (rows, cols) complex array, a (rows, cols, 2) real/imaginary
  array, or a raster's real and imaginary bands (``--bands``, default 1,2); stored as the
  single-look intensity |z|^2.
* ``stack``: co-registered dates of one area. Each input is one stack of its own: a
  (dates, rows, cols) array or a multi-band raster (its bands are the dates). Inputs are never
  merged silently (five two-date stacks of five areas stay five stacks, and a patch never
  mixes areas); ``one_stack`` (``--one-stack``) makes all the inputs, in date order, the dates
  of ONE stack, and then requires them to be co-registered (same size, and for rasters the same
  CRS and geotransform). All the stacks of one output need the same number of dates.

Patches with any invalid pixel (nodata, NaN in rasters, exact zeros unless ``keep_zeros``) are
skipped. ``subsample`` keeps every n-th row and column first (what whitening alone cannot do
for oversampled SLC speckle). Output: a ``.npz`` with ``patches`` (N, dates, P, P) float32
linear intensity and ``info`` (JSON: kind, sources, units, patch, stride, subsample, counts,
and for speckled kinds ``speckle``: the measured looks and lag-1/lag-2 autocorrelation along
rows and columns, which training reads to warn about correlated speckle).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from sar_despeckle_plugin.core import speckle
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.raster import RasterReader

from .data import PATCHES_FORMAT, as_intensity_stack

PREPARE_KINDS = ("clean", "single_look", "slc", "stack")


@dataclass
class PrepareOptions:
    """Attributes:
        kind: one of PREPARE_KINDS.
        units: units of real-valued inputs (SLC inputs are complex amplitudes).
        patch: patch side (pixels, after subsampling); stride: step between patches (0: the
            patch side, no overlap).
        subsample: keep every n-th row and column.
        bands: 1-based raster bands (default: 1 for clean / single_look, 1,2 for slc, all for stack).
        keep_zeros: exact zeros are data, not nodata (not for ``clean``: a reference must be
            positive).
        one_stack: ``stack`` only: the inputs are the dates of one co-registered stack.
    """

    kind: str
    units: str = "intensity"
    patch: int = 64
    stride: int = 0
    subsample: int = 1
    bands: tuple = ()
    keep_zeros: bool = False
    one_stack: bool = False


class _ArrayImage:
    """A checked numpy image read by windows: (dates, rows, cols) intensity, all valid."""

    def __init__(self, stack: np.ndarray) -> None:
        self.stack = stack
        self.dates, self.height, self.width = stack.shape

    def read(self, row: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        values = self.stack[:, row: row + height]
        return values, np.ones(values.shape[1:], bool)


class _RasterImage:
    """Rasters read by strips of rows: (dates, rows, cols) intensity and a (rows, cols) validity."""

    def __init__(self, paths: list, options: PrepareOptions) -> None:
        default = {"slc": (1, 2), "stack": ()}.get(options.kind, (1,))
        self.readers = [RasterReader(p, list(options.bands or default) or None) for p in paths]
        self.kind, self.units, self.paths = options.kind, options.units, paths
        first = self.readers[0]
        for reader, path in zip(self.readers, paths):
            if reader.info.is_complex:
                raise SarDespeckleError(
                    f"'{path}' has complex bands: write its real and imaginary parts as two bands "
                    "(e.g. gdal_translate or the Raster Calculator) or save it as a .npy array."
                )
            if (reader.height, reader.width) != (first.height, first.width):
                raise SarDespeckleError(
                    f"'{path}' is {reader.width} x {reader.height}, '{paths[0]}' {first.width} x "
                    f"{first.height}: the dates of a stack must be co-registered (same size)."
                )
            georeference = (reader.info.crs_wkt, tuple(reader.info.geotransform))
            if georeference != (first.info.crs_wkt, tuple(first.info.geotransform)):
                raise SarDespeckleError(
                    f"'{path}' and '{paths[0]}' have different CRS or geotransforms: the dates of one "
                    "stack must be co-registered (resample them onto one grid first)."
                )
        if self.kind == "slc" and len(first.bands) != 2:
            raise SarDespeckleError(f"An SLC raster needs two bands (real, imaginary); --bands gave {first.bands}.")
        self.height, self.width = first.height, first.width
        self.dates = 1 if self.kind == "slc" else sum(len(r.bands) for r in self.readers)
        if self.kind == "stack" and self.dates < 2:
            raise SarDespeckleError(
                f"'{paths[0]}' has one band, so it is not a stack on its own: each input of --kind stack "
                "is the stack of one area (a multi-band raster or a (dates, rows, cols) array); to make "
                "one stack of several co-registered single-date files, add --one-stack."
            )
        if self.kind in ("clean", "single_look") and self.dates != 1:
            raise SarDespeckleError(f"A {self.kind} image has one band; choose it with --bands.")

    def read(self, row: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [reader.read(row, 0, min(height, self.height - row), self.width) for reader in self.readers]
        values = np.concatenate([v for v, _ in parts])
        valid = np.concatenate([ok for _, ok in parts]).all(axis=0)
        if self.kind == "slc":
            return (values[:1] ** 2 + values[1:] ** 2), valid
        speckle.check_values(values[:, valid], self.units, 1)
        return speckle.to_intensity(values.astype(np.float64), self.units).astype(np.float32), valid


def _array_image(array: np.ndarray, options: PrepareOptions, name: str) -> _ArrayImage:
    if options.kind == "slc":
        if array.ndim == 3 and array.shape[-1] == 2 and not np.iscomplexobj(array):
            array = array[..., 0].astype(np.complex128) + 1j * array[..., 1]
        if not (np.iscomplexobj(array) and array.ndim == 2):
            raise SarDespeckleError(
                f"{name} has shape {array.shape} ({array.dtype}); an SLC must be a (rows, cols) "
                "complex array or a (rows, cols, 2) real/imaginary array."
            )
        if not np.isfinite(array).all():
            raise SarDespeckleError(f"{name} holds NaN or infinite values.")
        return _ArrayImage((np.abs(array) ** 2).astype(np.float32)[None])
    return _ArrayImage(as_intensity_stack(array, options.kind, options.units, name))


def _load_array(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SarDespeckleError(f"Cannot read '{path}' as a numpy array: {error}.") from None


def open_images(inputs: list, options: PrepareOptions) -> list:
    """The images ``inputs`` (paths or numpy arrays) make for ``options.kind``.

    Each input is one image (for ``stack``, one area's stack), except with
    ``options.one_stack``, where all the inputs are the dates of one stack.
    """
    arrays = [(item, "the array") if isinstance(item, np.ndarray) else None for item in inputs]
    for i, item in enumerate(inputs):
        if arrays[i] is None and str(item).endswith(".npy"):
            arrays[i] = (_load_array(item), f"'{item}'")
    if all(a is not None for a in arrays):
        if options.one_stack:
            for array, name in arrays:
                if array.ndim not in (2, 3):
                    raise SarDespeckleError(
                        f"{name} has shape {array.shape}; the dates of a stack are (rows, cols) or "
                        "(dates, rows, cols) arrays."
                    )
            sizes = {a.shape[-2:] for a, _ in arrays}
            if len(sizes) > 1:
                raise SarDespeckleError(
                    f"The dates of one stack must be co-registered (same size); got {sorted(sizes)}."
                )
            dates = np.concatenate([a[None] if a.ndim == 2 else a for a, _ in arrays])
            return [_array_image(dates, options, "the stacked arrays")]
        images = []
        for array, name in arrays:
            if options.kind == "stack" and array.ndim == 2:
                raise SarDespeckleError(
                    f"{name} is one date (rows, cols), so it is not a stack on its own: each input of "
                    "--kind stack is the stack of one area, (dates, rows, cols); to make one stack of "
                    "several co-registered single-date arrays, add --one-stack."
                )
            images.append(_array_image(array, options, name))
        return images
    if any(a is not None for a in arrays):
        raise SarDespeckleError("Give either numpy arrays or rasters, not both.")
    if options.one_stack:
        return [_RasterImage(list(inputs), options)]
    return [_RasterImage([path], options) for path in inputs]


def extract_patches(image, options: PrepareOptions) -> tuple[list, int]:
    """Fully valid (dates, P, P) patches of one image, and the number skipped."""
    sub, patch = options.subsample, options.patch
    stride = options.stride or patch
    span = patch * sub
    if image.height < span or image.width < span:
        raise SarDespeckleError(
            f"An input is {image.width} x {image.height} pixels, smaller than one patch "
            f"({patch} px x subsample {sub} = {span} px): lower --patch or --subsample."
        )
    patches, skipped = [], 0
    for row in range(0, image.height - span + 1, stride * sub):
        values, valid = image.read(row, span)
        if not options.keep_zeros:
            valid = valid & (values > 0).all(axis=0)
        values, valid = values[:, ::sub, ::sub], valid[::sub, ::sub]
        for col in range(0, values.shape[-1] - patch + 1, stride):
            if valid[:, col: col + patch].all():
                patches.append(np.ascontiguousarray(values[:, :, col: col + patch], dtype=np.float32))
            else:
                skipped += 1
    return patches, skipped


def measure_patches(patches: np.ndarray, limit: int = 512) -> dict | None:
    """Looks and lag-1/lag-2 autocorrelation (rows, cols) of the speckle of (N, dates, P, P)
    patches (first date), measured by ``core.quality.measure_speckle`` on a mosaic of up to
    ``limit`` of them spread over the file; None when too few homogeneous windows."""
    from .speckle_fit import measure

    chosen = patches[np.linspace(0, len(patches) - 1, min(limit, len(patches))).astype(int), 0]
    statistics = measure(np.concatenate(list(chosen), axis=0))
    if statistics is None:
        return None
    return {"looks": round(statistics.looks, 3), "rows": [round(v, 3) for v in statistics.rows],
            "cols": [round(v, 3) for v in statistics.cols], "windows": statistics.windows}


def prepare(inputs: list, options: PrepareOptions, output: str | None = None) -> tuple[np.ndarray, dict]:
    """Cut ``inputs`` into patches; write them to ``output`` (.npz) when given.

    Returns ``(patches, info)``: (N, dates, P, P) float32 linear intensity and the info record.
    """
    if options.kind not in PREPARE_KINDS:
        raise SarDespeckleError(f"--kind must be one of {PREPARE_KINDS}; got '{options.kind}'.")
    if options.patch < 8 or options.stride < 0 or options.subsample < 1:
        raise SarDespeckleError("--patch must be >= 8, --stride >= 0 and --subsample >= 1.")
    if options.units not in speckle.UNITS:
        raise SarDespeckleError(f"--units must be one of {speckle.UNITS}; got '{options.units}'.")
    if not inputs:
        raise SarDespeckleError("Give at least one input image.")
    if options.one_stack and options.kind != "stack":
        raise SarDespeckleError(f"--one-stack applies to --kind stack only (not {options.kind}).")
    if options.keep_zeros and options.kind == "clean":
        raise SarDespeckleError(
            "--keep-zeros does not apply to --kind clean: a clean reference must be positive (its log is "
            "the training target); zeros there are nodata."
        )
    images = open_images(inputs, options)
    dates = sorted({image.dates for image in images})
    if len(dates) > 1:
        raise SarDespeckleError(
            f"The stacks given have {', '.join(map(str, dates))} dates: one patch file holds stacks of one "
            "length; prepare each length into its own .npz and list them all as sources of the config."
        )
    patches, skipped, per_image = [], 0, []
    for image in images:
        found, missed = extract_patches(image, options)
        patches += found
        skipped += missed
        per_image.append(len(found))
    if not patches:
        raise SarDespeckleError(
            f"No fully valid patch of {options.patch} x {options.patch} found ({skipped} skipped for "
            "nodata, NaN or zeros): check the nodata value or lower --patch."
        )
    stored_kind = "single_look" if options.kind == "slc" else options.kind
    info = {
        "format": PATCHES_FORMAT,
        "kind": stored_kind,
        "sources": [os.path.basename(str(i)) if not isinstance(i, np.ndarray) else "array" for i in inputs],
        "prepared_as": options.kind,
        "units": "intensity (converted from " + ("complex amplitude" if options.kind == "slc" else options.units) + ")",
        "patch": options.patch,
        "stride": options.stride or options.patch,
        "subsample": options.subsample,
        "patches": len(patches),
        "skipped": skipped,
        # patches of image i (stack i: one area) are the per_image[i] after those of images < i
        "images": len(images),
        "patches_per_image": per_image,
    }
    array = np.stack(patches)
    if options.kind != "clean":
        statistics = measure_patches(array)
        if statistics is not None:
            info["speckle"] = statistics
    if output:
        if not output.endswith(".npz"):
            raise SarDespeckleError(f"--output must end with .npz; got '{output}'.")
        folder = os.path.dirname(os.path.abspath(output))
        os.makedirs(folder, exist_ok=True)
        np.savez(output, patches=array, info=np.array(json.dumps(info)))
    return array, info
