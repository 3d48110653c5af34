"""Benchmark of sar_despeckle:decorrelate (blind SLC speckle decorrelation).

1. Synthetic SLC speckle with known separable responses (Hamming / Kaiser weighting,
   oversampling 1.2-1.6, Doppler shifts, one TOPS-like centroid drift): residual |lag-1| and
   |lag-2| per axis after decorrelation with resampling (target < 0.05), and the errors of the
   estimated centroid, bandwidth and response.
2. Point targets: bit-identical output values at their pixels (file to file, no resampling).
3. The real crops of ../shared/data/slc (TerraSAR-X, Envisat, UAVSAR Winnipeg, the sea area of a
   Sentinel-1 TOPS chip): |lag-1| / |lag-2| per axis before, after whitening alone and after
   whitening with resampling (target < 0.1), a PNG of their spectra each, and the residual for
   several point-target factors (the basis of the per-sensor defaults).
4. Envisat: the estimated Doppler centroid and bandwidths against the product's metadata.
5. Speed: megapixels per second on the CPU, file to file, on a 4096 x 4096 CFloat32 GeoTIFF
   (best of ``--repeats``).

Prints Markdown tables and writes ``decorrelation.json`` and the PNGs to ``--out``
(default build/bench/decorrelation).

    .venv/bin/python scripts/bench_decorrelation.py [--out DIR] [--repeats N] [--size 4096]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from osgeo import gdal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sar_despeckle_plugin.core.decorrelation.pipeline import (
    decorrelate_array,
    decorrelate_raster,
    write_report,
)
from sar_despeckle_plugin.core.decorrelation.plots import spectra_png
from sar_despeckle_plugin.core.decorrelation.settings import DecorrelationOutputs, DecorrelationSettings
from tests import slc_data
from tests.slc_data import Axis, synthetic_slc

CPU = {"device": "cpu"}
AXES = ("azimuth", "range")

SYNTHETIC = [
    ("Hamming 1.4 / Kaiser(4) 1.25, Doppler 0.23", Axis("hamming", 1 / 1.4, 0.23), Axis("kaiser", 1 / 1.25, -0.05, 4.0), 0.0),
    ("Kaiser(3) 1.6 / Hamming 1.2, Doppler -0.31", Axis("kaiser", 1 / 1.6, -0.31, 3.0), Axis("hamming", 1 / 1.2, 0.02), 0.0),
    ("Hamming 1.2 / Hamming 1.6, Doppler 0.45", Axis("hamming", 1 / 1.2, 0.45), Axis("hamming", 1 / 1.6, 0.1), 0.0),
    ("Kaiser(5) 1.5 / Kaiser(2.5) 1.3, no Doppler", Axis("kaiser", 1 / 1.5, 0.0, 5.0), Axis("kaiser", 1 / 1.3, 0.0, 2.5), 0.0),
    ("TOPS-like: Hamming 1.5 + drift 0.006/line", Axis("hamming", 1 / 1.5, 0.1), Axis("hamming", 1 / 1.33, 0.0), 0.006),
]

REAL = [
    ("TerraSAR-X crop (256 x 256)", slc_data.terrasarx),
    ("Envisat ASAR HH (500 x 500)", slc_data.envisat),
    ("UAVSAR Winnipeg (250 x 250)", slc_data.winnipeg),
    ("Sentinel-1 TOPS chip, sea area (56 x 157)", slc_data.tops_sea),
    ("Sentinel-1 TOPS chip with the ship (157 x 157)", slc_data.tops_chip),
]


def corr(channel: dict, key: str, axis: str, lag: str = "lag1") -> float:
    return channel[key][axis][lag]


def synthetic(size: int) -> list[dict]:
    rows = []
    for name, azimuth, range_, drift in SYNTHETIC:
        z = synthetic_slc(size, size, azimuth, range_, seed=11, drift=drift)
        _, report = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
        channel = report["channels"][0]
        row = {"case": name}
        for axis_name, truth in zip(AXES, (azimuth, range_)):
            axis = channel["axes"][axis_name]
            centroid = axis["centroid"]  # at the image centre, where the drift's chirp is centred too
            row[axis_name] = {
                "lag1_before": corr(channel, "correlation_before", axis_name),
                "lag1_after": corr(channel, "correlation_after", axis_name),
                "lag2_after": corr(channel, "correlation_after", axis_name, "lag2"),
                "centroid_error": abs((centroid - truth.centroid + 0.5) % 1.0 - 0.5),
                "bandwidth_error": abs(axis["bandwidth"] - truth.bandwidth),
                "response_rms_error": slc_data.response_error(axis, truth),
            }
            if axis_name == "azimuth" and drift:
                row[axis_name]["drift_relative_error"] = abs(axis["centroid_drift_per_pixel"] - drift) / drift
        rows.append(row)
    return rows


def point_targets(folder: str) -> dict:
    azimuth, range_ = Axis("hamming", 1 / 1.4, 0.2), Axis("kaiser", 1 / 1.25, 0.0, 4.0)
    z = synthetic_slc(512, 512, azimuth, range_, seed=12)
    rng = np.random.default_rng(13)
    positions = {(int(r), int(c)) for r, c in zip(rng.integers(0, 512, 200), rng.integers(0, 512, 200))}
    for r, c in positions:
        z[r, c] = rng.uniform(20, 300) * np.exp(1j * rng.uniform(0, 2 * np.pi))
    source, out = os.path.join(folder, "targets.tif"), os.path.join(folder, "targets_out.tif")
    write_complex(source, z)
    report = decorrelate_raster(source, DecorrelationOutputs(out), DecorrelationSettings(**CPU))
    values = gdal.Open(out).ReadAsArray()
    identical = sum(values[r, c] == z[r, c] for r, c in positions)
    return {"inserted": len(positions), "detected": report["channels"][0]["point_targets"],
            "bit_identical": int(identical)}


def write_complex(path: str, z: np.ndarray) -> None:
    dataset = gdal.GetDriverByName("GTiff").Create(path, z.shape[1], z.shape[0], 1, gdal.GDT_CFloat32,
                                                   ["TILED=YES"])
    dataset.GetRasterBand(1).WriteArray(z)
    dataset = None


def real(out_folder: str) -> list[dict]:
    rows = []
    for name, load in REAL:
        z = load()
        if z is None:
            rows.append({"crop": name, "missing": True})
            continue
        row = {"crop": name}
        for resample in (False, True):
            _, report = decorrelate_array(z, DecorrelationSettings(resample=resample, **CPU))
            channel = report["channels"][0]
            key = "resampled" if resample else "whitened"
            row[key] = {axis: {lag: corr(channel, "correlation_after", axis, lag) for lag in ("lag1", "lag2")}
                        for axis in AXES}
            if resample:
                row["before"] = {axis: {lag: corr(channel, "correlation_before", axis, lag) for lag in ("lag1", "lag2")}
                                 for axis in AXES}
                row["estimate"] = {axis: {k: channel["axes"][axis][k] for k in (
                    "centroid", "centroid_drift_per_pixel", "bandwidth", "cutoffs", "gain")} for axis in AXES}
                row["point_targets"] = channel["point_targets"]
                row["output_size"] = report["output_size"]
                picture = os.path.join(out_folder, slug(name) + "_spectra.png")
                spectra_png(report["_spectra"], picture)
                row["spectra_png"] = picture
        row["by_point_target_factor"] = {}
        for factor in (10.0, 16.0, 30.0, 60.0):
            _, report = decorrelate_array(z, DecorrelationSettings(resample=True, point_target_factor=factor, **CPU))
            channel = report["channels"][0]
            row["by_point_target_factor"][str(factor)] = {
                "point_targets": channel["point_targets"],
                **{axis: corr(channel, "correlation_after", axis) for axis in AXES},
            }
        rows.append(row)
    return rows


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.split("(")[0].strip().lower()).strip("_")


#: Envisat ASAR's antenna is 10 m long in azimuth.
ASAR_ANTENNA_LENGTH_M = 10.0


def azimuth_power_share(z: np.ndarray, centroid: float, band: float) -> float:
    """Share of the power of complex ``z`` (rows = azimuth) that its Hann-windowed azimuth
    periodogram, averaged over range, puts within ``band`` cycles/pixel of ``centroid``."""
    window = np.hanning(z.shape[0])[:, None]
    power = (np.abs(np.fft.fft(z * window, axis=0)) ** 2).mean(1)
    offset = (np.fft.fftfreq(z.shape[0]) - centroid + 0.5) % 1.0 - 0.5
    return float(power[np.abs(offset) <= band / 2].sum() / power.sum())


def envisat() -> dict | None:
    z, metadata = slc_data.envisat(), slc_data.envisat_metadata()
    if z is None:
        return None
    _, report = decorrelate_array(z, DecorrelationSettings(**CPU))
    axes = report["channels"][0]["axes"]
    line_rate, range_rate = metadata["line_rate_hz"], metadata["range_sampling_rate_hz"]
    estimated_band = axes["azimuth"]["bandwidth"]
    metadata_band = metadata["processed_azimuth_bandwidth_hz"] / line_rate
    ground_speed = metadata["along_track_spacing_m"] * line_rate
    return {
        "metadata": metadata,
        "azimuth_power_share": {  # independent of the estimator: a plain numpy periodogram
            "metadata_band": azimuth_power_share(z, metadata["doppler_centroid_hz"] / line_rate, metadata_band),
            "estimated_band": azimuth_power_share(z, axes["azimuth"]["centroid"], estimated_band),
        },
        "lag1_azimuth_measured": float(abs((z[1:] * np.conj(z[:-1])).sum()) / (abs(z) ** 2).sum()),
        "lag1_flat_band_of_metadata_width": float(abs(np.sinc(metadata_band))),
        "lag1_flat_band_of_estimated_width": float(abs(np.sinc(estimated_band))),
        "ground_speed_m_s": ground_speed,
        "antenna_doppler_bandwidth_hz": 0.886 * 2 * ground_speed / ASAR_ANTENNA_LENGTH_M,
        "estimated_doppler_centroid_hz": axes["azimuth"]["centroid"] * line_rate,
        "estimated_azimuth_bandwidth_hz": axes["azimuth"]["bandwidth"] * line_rate,
        "estimated_range_bandwidth_hz": axes["range"]["bandwidth"] * range_rate,
        "estimated_range_centroid": axes["range"]["centroid"],
    }


def speed(folder: str, size: int, repeats: int) -> list[dict]:
    azimuth, range_ = Axis("hamming", 1 / 1.4, 0.2), Axis("kaiser", 1 / 1.25, 0.0, 4.0)
    source = os.path.join(folder, f"slc_{size}.tif")
    # speckle made in 1024-row slabs (the FFT synthesis of one 4096^2 image would need GBs)
    dataset = gdal.GetDriverByName("GTiff").Create(source, size, size, 1, gdal.GDT_CFloat32,
                                                   ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512"])
    slab = min(size, 1024)
    for row in range(0, size, slab):
        dataset.GetRasterBand(1).WriteArray(synthetic_slc(slab, size, azimuth, range_, seed=row), 0, row)
    dataset = None
    results = []
    for resample in (False, True):
        best = float("inf")
        for _ in range(repeats):
            out = os.path.join(folder, "speed_out.tif")
            start = time.perf_counter()
            decorrelate_raster(source, DecorrelationOutputs(out), DecorrelationSettings(resample=resample, **CPU))
            best = min(best, time.perf_counter() - start)
            os.remove(out)
        results.append({"size": size, "resample": resample, "seconds": best,
                        "mpx_per_s": size * size / 1e6 / best})
    return results


def markdown(results: dict) -> str:
    lines = ["## Synthetic SLC (residual after decorrelation with resampling; target |lag-1| < 0.05)", "",
             "| case | az lag1 before | az lag1 after | az lag2 after | rg lag1 before | rg lag1 after | "
             "rg lag2 after | centroid err az / rg | bandwidth err az / rg | response RMS err az / rg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["synthetic"]:
        a, r = row["azimuth"], row["range"]
        lines.append(
            f"| {row['case']} | {a['lag1_before']:.3f} | {a['lag1_after']:.3f} | {a['lag2_after']:.3f} | "
            f"{r['lag1_before']:.3f} | {r['lag1_after']:.3f} | {r['lag2_after']:.3f} | "
            f"{a['centroid_error']:.4f} / {r['centroid_error']:.4f} | {a['bandwidth_error']:.4f} / "
            f"{r['bandwidth_error']:.4f} | {100 * a['response_rms_error']:.1f} % / {100 * r['response_rms_error']:.1f} % |")
    p = results["point_targets"]
    lines += ["", f"Point targets: {p['bit_identical']} of {p['inserted']} inserted targets bit-identical in the "
              f"output ({p['detected']} pixels flagged), no resampling.", "",
              "## Real SLC crops (|lag-1| / |lag-2|; target |lag-1| < 0.1 with resampling)", "",
              "| crop | point targets | azimuth before | azimuth whitened | azimuth resampled | range before | "
              "range whitened | range resampled | az centroid, bandwidth | rg centroid, bandwidth |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["real"]:
        if row.get("missing"):
            lines.append(f"| {row['crop']} | absent | | | | | | | | |")
            continue
        cells = []
        for axis in AXES:
            for key in ("before", "whitened", "resampled"):
                cells.append(f"{row[key][axis]['lag1']:.3f} / {row[key][axis]['lag2']:.3f}")
        est = row["estimate"]
        drift = est["azimuth"]["centroid_drift_per_pixel"]
        lines.append(
            f"| {row['crop']} | {row['point_targets']} | " + " | ".join(cells) + " | "
            f"{est['azimuth']['centroid']:+.3f}{f' (drift {drift:+.4f}/line)' if drift else ''}, "
            f"{est['azimuth']['bandwidth']:.3f} | {est['range']['centroid']:+.3f}, {est['range']['bandwidth']:.3f} |")
    lines += ["", "Residual |lag-1| azimuth / range with resampling by point-target factor cf:", "",
              "| crop | cf 10 | cf 16 | cf 30 | cf 60 |", "|---|---|---|---|---|"]
    for row in results["real"]:
        if row.get("missing"):
            continue
        cells = [f"{v['azimuth']:.3f} / {v['range']:.3f} ({v['point_targets']} PT)"
                 for v in row["by_point_target_factor"].values()]
        lines.append(f"| {row['crop']} | " + " | ".join(cells) + " |")
    e = results.get("envisat")
    if e:
        m = e["metadata"]
        lines += ["", "## Envisat estimate against the product metadata", "",
                  "| quantity | estimated | metadata |", "|---|---|---|",
                  f"| Doppler centroid (Hz) | {e['estimated_doppler_centroid_hz']:.1f} | {m['doppler_centroid_hz']:.1f} "
                  f"(over the crop: {m['doppler_centroid_range_hz'][0]:.1f} to {m['doppler_centroid_range_hz'][1]:.1f}) |",
                  f"| range bandwidth (MHz) | {e['estimated_range_bandwidth_hz'] / 1e6:.2f} | "
                  f"{m['processed_range_bandwidth_hz'] / 1e6:.2f} (sampling {m['range_sampling_rate_hz'] / 1e6:.2f}) |",
                  f"| azimuth bandwidth (Hz) | {e['estimated_azimuth_bandwidth_hz']:.0f} | "
                  f"{m['processed_azimuth_bandwidth_hz']:.0f} (processedAzimuthBandwidth; PRF {m['prf_hz']:.1f}) |",
                  "", "Azimuth bandwidth cross-checks (plain numpy on the crop, independent of the estimator):", "",
                  "| check | with the estimated band | with the metadata band |", "|---|---|---|",
                  f"| azimuth power inside the band, centred on the centroid | "
                  f"{100 * e['azimuth_power_share']['estimated_band']:.1f} % | "
                  f"{100 * e['azimuth_power_share']['metadata_band']:.1f} % |",
                  f"| lag-1 a flat band of that width gives (measured on the crop: {e['lag1_azimuth_measured']:.3f}) | "
                  f"{e['lag1_flat_band_of_estimated_width']:.3f} | {e['lag1_flat_band_of_metadata_width']:.3f} |",
                  "", f"Antenna 3-dB Doppler bandwidth 0.886 x 2 V_g / L, with L = {ASAR_ANTENNA_LENGTH_M:.0f} m and "
                  f"the product's ground speed V_g = along-track spacing x line rate = {e['ground_speed_m_s']:.0f} m/s: "
                  f"**{e['antenna_doppler_bandwidth_hz']:.0f} Hz** = "
                  f"{e['antenna_doppler_bandwidth_hz'] / m['processed_azimuth_bandwidth_hz']:.3f} x the metadata field."]
    lines += ["", f"## Speed (CPU, {results['torch_threads']} torch threads, file to file, best of {results['repeats']})", "",
              "| image | resample | seconds | Mpx/s |", "|---|---|---|---|"]
    for row in results["speed"]:
        lines.append(f"| {row['size']} x {row['size']} CFloat32 | {row['resample']} | {row['seconds']:.1f} | "
                     f"{row['mpx_per_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "decorrelation"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=4096, help="side of the speed test image")
    parser.add_argument("--synthetic-size", type=int, default=1024)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {"torch_threads": torch.get_num_threads(), "repeats": args.repeats}
    with tempfile.TemporaryDirectory(dir=args.out) as folder:
        results["synthetic"] = synthetic(args.synthetic_size)
        results["point_targets"] = point_targets(folder)
        results["real"] = real(args.out)
        results["envisat"] = envisat()
        results["speed"] = speed(folder, args.size, args.repeats)
    write_report(results, os.path.join(args.out, "decorrelation.json"))
    table = markdown(results)
    with open(os.path.join(args.out, "decorrelation.md"), "w", encoding="utf-8") as stream:
        stream.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
