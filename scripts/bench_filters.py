"""`make bench` (classical filters): throughput against Orfeo ToolBox, and peak memory.

For each classical method: megapixels per second despeckling a 4096 x 4096 single-look float32
GeoTIFF, file to file, with a 7 x 7 window (radius 3), beside `otbcli_Despeckle` (or
`otbcli_Smoothing -type mean` for the boxcar) on the same file and radius. Refined Lee and Lee
sigma have no Orfeo ToolBox peer; they are compared with OTB's Lee, the nearest filter. Each
timing is the best of ``--repeats`` runs. Then the peak resident memory of a 7 x 7 Lee run on a
20,000 x 20,000 float32 GeoTIFF, measured in a child process.

Results go to stdout as a Markdown table and to ``<out>/filters.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
from osgeo import gdal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sar_despeckle_plugin.core.despeckle.filters import CLASSICAL_METHODS
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings

RADIUS = 3
OTB_PEERS = {
    "boxcar": ["otbcli_Smoothing", "-type", "mean", "-type.mean.radius", str(RADIUS)],
    "lee": ["otbcli_Despeckle", "-filter", "lee", "-filter.lee.rad", str(RADIUS), "-filter.lee.nblooks", "1"],
    "frost": ["otbcli_Despeckle", "-filter", "frost", "-filter.frost.rad", str(RADIUS)],
    "gamma_map": ["otbcli_Despeckle", "-filter", "gammamap", "-filter.gammamap.rad", str(RADIUS),
                  "-filter.gammamap.nblooks", "1"],
    "kuan": ["otbcli_Despeckle", "-filter", "kuan", "-filter.kuan.rad", str(RADIUS), "-filter.kuan.nblooks", "1"],
}
OTB_PEERS["refined_lee"] = OTB_PEERS["lee"]
OTB_PEERS["lee_sigma"] = OTB_PEERS["lee"]


def write_speckle_image(path: str, side: int, seed: int = 0, rows_per_block: int = 1024) -> None:
    """A side x side single-look intensity GeoTIFF (tiled, uncompressed), written in strips."""
    if os.path.exists(path):
        return
    rng = np.random.default_rng(seed)
    options = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "BIGTIFF=IF_SAFER"]
    dataset = gdal.GetDriverByName("GTiff").Create(path + ".tmp.tif", side, side, 1, gdal.GDT_Float32, options)
    band = dataset.GetRasterBand(1)
    cols = np.arange(side)
    for row in range(0, side, rows_per_block):
        height = min(rows_per_block, side - row)
        scene = np.where((cols // 256 + (row // 256)) % 2 == 0, 1.0, 5.0)[None, :].repeat(height, 0)
        band.WriteArray((scene * rng.standard_exponential((height, side))).astype(np.float32), 0, row)
    dataset = None
    os.replace(path + ".tmp.tif", path)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def time_ours(method: str, source: str, out: str, repeats: int) -> float:
    settings = DespeckleSettings(method=method, looks=1.0, units="intensity", window=2 * RADIUS + 1, device="cpu")
    return best_time(lambda: despeckle_raster(source, out, settings), repeats)


def time_otb(method: str, source: str, out: str, repeats: int) -> float | None:
    command = OTB_PEERS[method]
    if shutil.which(command[0]) is None:
        return None
    full = [command[0], "-in", source, "-out", out, "float", *command[1:]]
    return best_time(lambda: subprocess.run(full, check=True, capture_output=True), repeats)


def peak_memory_mb(source: str, out: str) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of a 7 x 7 Lee run in a fresh child process."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster\n"
        "from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings\n"
        "despeckle_raster(%r, %r, DespeckleSettings(method='lee', window=7, units='intensity', device='cpu'))\n"
    ) % (ROOT, source, out)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="build/bench")
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--big-side", type=int, default=20_000, help="0 skips the memory run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    source = os.path.join(args.out, f"speckle_{args.side}.tif")
    write_speckle_image(source, args.side)
    megapixels = args.side * args.side / 1e6
    rows = []
    print(f"Classical filters, {args.side} x {args.side} float32, window {2 * RADIUS + 1}, "
          f"file to file, {os.cpu_count()} CPU cores, best of {args.repeats}\n")
    print("| method | ours (Mpx/s) | OTB peer | OTB (Mpx/s) | ours / OTB |")
    print("|---|---:|---|---:|---:|")
    otb_cache: dict[str, float | None] = {}
    time_ours("boxcar", source, os.path.join(args.out, "warm-up.tif"), 1)  # imports, page cache
    for method in CLASSICAL_METHODS:
        ours = megapixels / time_ours(method, source, os.path.join(args.out, f"ours_{method}.tif"), args.repeats)
        peer = " ".join(OTB_PEERS[method][:3]) if OTB_PEERS[method][0].endswith("Despeckle") else "Smoothing mean"
        key = " ".join(OTB_PEERS[method])
        if key not in otb_cache:
            seconds = time_otb(method, source, os.path.join(args.out, f"otb_{method}.tif"), args.repeats)
            otb_cache[key] = None if seconds is None else megapixels / seconds
        otb = otb_cache[key]
        ratio = None if otb is None else ours / otb
        rows.append({"method": method, "ours_mpx_s": ours, "otb_peer": peer, "otb_mpx_s": otb, "ratio": ratio})
        print(f"| {method} | {ours:.1f} | {peer.replace('otbcli_', '')} | "
              f"{'n/a' if otb is None else f'{otb:.1f}'} | {'n/a' if ratio is None else f'{ratio:.1f}x'} |",
              flush=True)

    result = {"side": args.side, "window": 2 * RADIUS + 1, "cpu_count": os.cpu_count(), "methods": rows}
    if args.big_side:
        big = os.path.join(args.out, f"speckle_{args.big_side}.tif")
        print(f"\nWriting a {args.big_side} x {args.big_side} float32 GeoTIFF for the memory run...", flush=True)
        write_speckle_image(big, args.big_side)
        peak, seconds = peak_memory_mb(big, os.path.join(args.out, "ours_big_lee.tif"))
        print(f"Peak resident memory, 7 x 7 Lee on {args.big_side} x {args.big_side}: {peak:.0f} MB "
              f"({seconds:.0f} s, {args.big_side ** 2 / 1e6 / seconds:.1f} Mpx/s incl. start-up)")
        result.update(big_side=args.big_side, peak_rss_mb=peak, big_seconds=seconds)
        os.remove(os.path.join(args.out, "ours_big_lee.tif"))
    with open(os.path.join(args.out, "filters.json"), "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
