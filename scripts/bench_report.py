"""`make bench` (last step): assemble docs/benchmarks.md from the results the benchmarks wrote.

Reads what the benchmark scripts leave in ``--bench`` (default build/bench):

* ``filters.json``                      scripts/bench_filters.py
* ``networks/networks.json``            scripts/bench_networks.py
* ``decorrelation/decorrelation.md``    scripts/bench_decorrelation.py (its own Markdown tables)
* ``change/change.json``                scripts/bench_change.py
* ``batch/batch.md``                    scripts/bench_batch.py (its own Markdown table)
* ``multilook/multilook.md``            scripts/bench_multilook.py (its own Markdown tables)
* ``multitemporal/multitemporal.md``    scripts/bench_multitemporal.py (its own Markdown tables)
* ``dualpol/dualpol.md``                scripts/bench_dualpol.py (its own Markdown table)

and writes one Markdown page whose header says when, at which commit and on what machine it
was generated. A family whose results are absent gets a line saying so. Standard library only:
no torch, no GDAL, no QGIS.

    python3 scripts/bench_report.py [--bench build/bench] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: How bench_networks.py labels the default network run otherwise than by default.
VARIANT_MARK = " with "
REFERENCE = "MuLoG+BM3D"


# ------------------------------------------------------------------------------------------
# header


def commit() -> str:
    try:
        done = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return done.stdout.strip() + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """'<CPU model>, <n> cores' (the CPU model from /proc/cpuinfo where there is one)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def modified(path: str) -> str:
    return datetime.datetime.fromtimestamp(os.path.getmtime(path)).strftime("%Y-%m-%d %H:%M")


def load(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def absent(path: str, script: str) -> list[str]:
    return [f"No results ({os.path.relpath(path, ROOT)} is absent): run `make bench` "
            f"(or `{script}`).", ""]


def source_line(path: str, script: str) -> str:
    return f"From `{os.path.relpath(path, ROOT)}` ({modified(path)}), written by `{script}`."


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` holds one letter per column: l (default) or r."""
    align = align.ljust(len(header), "l")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def number(value, digits: int, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


# ------------------------------------------------------------------------------------------
# families


def filters_section(bench: str) -> list[str]:
    path = os.path.join(bench, "filters.json")
    lines = ["## Classical filters", ""]
    result = load(path)
    if result is None:
        return lines + absent(path, "scripts/bench_filters.py")
    lines += [source_line(path, "scripts/bench_filters.py"), "",
              f"Throughput, {result['side']} x {result['side']} single-look float32 GeoTIFF, file to file, "
              f"window {result['window']}, {result.get('cpu_count')} CPU cores, best of the runs; each "
              "beside its nearest Orfeo ToolBox peer on the same file and radius:", ""]
    rows = [[m["method"], number(m["ours_mpx_s"], 1), m["otb_peer"].replace("otbcli_", ""),
             number(m["otb_mpx_s"], 1), number(m["ratio"], 1, "x")] for m in result["methods"]]
    lines += table(["method", "ours (Mpx/s)", "OTB peer", "OTB (Mpx/s)", "ours / OTB"], rows, "lrlrr")
    if "peak_rss_mb" in result:
        side = result["big_side"]
        lines += [f"Peak resident memory of a 7 x 7 Lee run on a {side:,} x {side:,} float32 GeoTIFF "
                  f"(child process): **{result['peak_rss_mb']:.0f} MB**, {result['big_seconds']:.0f} s "
                  f"({side * side / 1e6 / result['big_seconds']:.1f} Mpx/s including start-up).", ""]
    return lines


def mean_and_error(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def networks_section(bench: str) -> list[str]:
    path = os.path.join(bench, "networks", "networks.json")
    lines = ["## Despeckling networks", ""]
    result = load(path)
    if result is None:
        return lines + absent(path, "scripts/bench_networks.py")
    lines += [source_line(path, "scripts/bench_networks.py"), ""]
    mean = result.get("full_reference_mean")
    per_seed = result.get("full_reference", {})
    default = result.get("default_network")
    if mean:
        images = [key for key in next(iter(mean.values())) if key != "mean"]
        lines += [f"Full reference: held-out rows 300-499 of the Telecom Paris references, 1-look speckle, "
                  f"mean over speckle seeds {', '.join(per_seed)}: PSNR (dB) / SSIM on amplitude (peak = 99th "
                  "percentile of the reference); classical filters 7 x 7, networks as the plugin runs them "
                  "by default (a single pass, point targets smoothed) unless the row says otherwise.", ""]
        rows = [[label] + [f"{scores[key][0]:.2f} / {scores[key][1]:.3f}" for key in (*images, "mean")]
                for label, scores in sorted(mean.items(), key=lambda item: item[1]["mean"][0])]
        lines += table(["method", *images, "mean"], rows, "l" + "r" * (len(images) + 1))
        for label in (default, *(label for label in mean if label.startswith(f"{default}{VARIANT_MARK}"))):
            if not default or label not in mean or REFERENCE not in mean:
                continue
            margins = [t[label]["mean"][0] - t[REFERENCE]["mean"][0] for t in per_seed.values()]
            average, error = mean_and_error(margins)
            lines += [f"{label} - {REFERENCE}, mean PSNR: **{average:+.3f} dB** (standard error {error:.3f} dB); "
                      "per seed " + ", ".join(f"{seed} {m:+.2f}" for seed, m in zip(per_seed, margins)) + ".", ""]
        lines += ["The table of each speckle draw is in `networks.json` (`full_reference`).", ""]
    else:
        lines += ["Full reference: skipped (the Telecom Paris references were absent).", ""]
    ratios = result.get("real_ratio")
    if ratios:
        lines += ["Real single-look images: ratio I / I_hat (mean 1 and ENL 1 for a perfect estimate; "
                  f"{REFERENCE} in brackets when it ran):", ""]
        rows = []
        for network, images in ratios.items():
            for name, stats in images.items():
                reference = stats.get("mulog_bm3d")
                cells = []
                for key, digits in (("mean", 3), ("enl", 2), ("lag1_rows", 3), ("lag1_cols", 3)):
                    cell = f"{stats[key]:.{digits}f}"
                    cells.append(f"{cell} ({reference[key]:.{digits}f})" if reference else cell)
                rows.append([network, name, " x ".join(map(str, stats["shape"])), *cells])
        lines += table(["network", "image", "size", "ratio mean", "ratio ENL", "lag-1 rows", "lag-1 cols"],
                       rows, "lllrrrr")
    if "seconds_per_mpx" in result:
        lines += [f"Speed of {default or 'the default network'}, 2048 x 2048, file to file, "
                  f"{result.get('cpu_count')} CPU cores: **{result['seconds_per_mpx']:.2f} s per megapixel** as run "
                  f"by default (a single pass), {result['seconds_per_mpx_self_ensemble']:.2f} s with SELF_ENSEMBLE on; "
                  f"{result['macs_per_pixel'] / 1e3:.1f} kMAC per pixel per pass, {result['parameters']:,} parameters.",
                  ""]
    return lines


def fragment_section(bench: str, relative: str, title: str, script: str, note: str) -> list[str]:
    """A section holding the Markdown a benchmark script wrote itself (``relative`` in ``bench``),
    its headings moved one level down, under this section's ``title``."""
    path = os.path.join(bench, relative)
    lines = [f"## {title}", ""]
    if not os.path.exists(path):
        return lines + absent(path, script)
    with open(path, encoding="utf-8") as stream:
        body = stream.read().strip().splitlines()
    body = [("#" + line) if re.match(r"#+ ", line) else line for line in body]
    return lines + [f"{source_line(path, script)} {note}", ""] + body + [""]


def decorrelation_section(bench: str) -> list[str]:
    return fragment_section(bench, os.path.join("decorrelation", "decorrelation.md"), "SLC decorrelation",
                            "scripts/bench_decorrelation.py",
                            "Everything, with the estimated responses, in `decorrelation.json` beside it.")


def multilook_section(bench: str) -> list[str]:
    return fragment_section(bench, os.path.join("multilook", "multilook.md"),
                            "Multi-look speckle, real multi-look images, point targets", "scripts/bench_multilook.py",
                            "Every seed's table and image's figures in `multilook.json` beside it; pictures there too.")


def batch_section(bench: str) -> list[str]:
    return fragment_section(bench, os.path.join("batch", "batch.md"), "Batch runner scaling (Dask, local cluster)",
                            "scripts/bench_batch.py", "The timings in `batch.json` beside it.")


def multitemporal_section(bench: str) -> list[str]:
    return fragment_section(bench, os.path.join("multitemporal", "multitemporal.md"), "Multitemporal despeckling",
                            "scripts/bench_multitemporal.py",
                            "Every reference's and seed's scores in `multitemporal.json` beside it.")


def dualpol_section(bench: str) -> list[str]:
    return fragment_section(bench, os.path.join("dualpol", "dualpol.md"), "Dual-pol C2 despeckling (single date)",
                            "scripts/bench_dualpol.py", "Every reference's and seed's scores in `dualpol.json` beside it.")


def busy_section(bench: str) -> list[str]:
    return fragment_section(bench, os.path.join("busy", "busy.md"), "Whole runs on a busy machine",
                            "scripts/bench_busy.py", "The timings and load averages in `busy.json` beside it.")


def change_rows(rows: dict) -> list[list[str]]:
    return [[label, r["setting"], f"{r['oa']:.4f}", f"{r['kappa']:.3f}", f"{r['f1']:.3f}",
             f"{r['false_alarms']} ({100 * r['false_alarm_rate']:.2f} %)",
             f"{r['missed_alarms']} ({100 * r['missed_rate']:.1f} %)"] for label, r in rows.items()]


CHANGE_HEADER = ["method", "setting", "OA", "kappa", "F1", "false alarms", "missed alarms"]


def change_section(bench: str) -> list[str]:
    path = os.path.join(bench, "change", "change.json")
    lines = ["## Change detection", ""]
    result = load(path)
    if result is None:
        return lines + absent(path, "scripts/bench_change.py")
    lines += [source_line(path, "scripts/bench_change.py"), ""]
    for name, rows in (result.get("real") or {}).items():
        lines += [f"### {name}", "", "8-bit processed amplitudes; the defaults rows set nothing but the units; "
                  "the grid rows (PREFILTER off) are chosen on the ground truth (optimistic).", ""]
        lines += table(CHANGE_HEADER, change_rows(rows), "llrrrrr")
    mtdn = result.get("mtdn") or {}
    if mtdn:
        lines += ["### MTDN patches, pooled (Sentinel-1 dual-pol pairs)", ""]
        lines += table(CHANGE_HEADER, change_rows(mtdn["all_patches"]), "llrrrrr")
        patches = mtdn["held_out_patches"]
        lines += [f"### MTDN held-out patches {patches[0]}-{patches[-1]}", "",
                  "Never seen by the learned detector in training or model selection; the omnibus grid is "
                  "scored on these same patches.", ""]
        lines += table(CHANGE_HEADER, change_rows(mtdn["held_out"]), "llrrrrr")
        lines += [f"Learned detector minus the best omnibus row on the held-out patches: "
                  f"**{mtdn['learned_minus_best_omnibus_kappa']:+.3f}** kappa.", ""]
    targets = result.get("targets")
    if targets:
        lines += ["### Issue 17 targets", ""]
        lines += table(["target", "required", "measured", "met"],
                       [[r["target"], ("<= " if r["target"].startswith("omnibus") else ">= ") + f"{r['least']:.3f}",
                         f"{r['kappa']:.3f}", "yes" if r["met"] else "**no**"] for r in targets], "lrrl")
    calibration = result.get("calibration")
    if calibration:
        levels = [key for key in calibration[0] if key not in ("layout", "dates", "looks")]
        lines += ["### Omnibus test calibration", "",
                  "False-alarm rate / SIGNIFICANCE on unchanged synthetic pixels (1.0 = exact):", ""]
        lines += table(["layout", "dates k", "looks", *[f"a = {level}" for level in levels]],
                       [[r["layout"], str(r["dates"]), str(r["looks"]), *[f"{r[level]:.3f}" for level in levels]]
                        for r in calibration], "lrr" + "r" * len(levels))
    power = result.get("power")
    if power:
        contrasts = sorted({r["contrast_db"] for r in power})
        variants: dict = {}
        for r in power:
            variants.setdefault((r["method"], r["layout"], r["window"]), {})[r["contrast_db"]] = r
        lines += ["### Detection rate against change contrast", "",
                  "Two 4-look synthetic dates, 16 % of the pixels brighter by the contrast; omnibus at "
                  "SIGNIFICANCE 0.01, log-ratio thresholds automatic; false-alarm rate in brackets.", ""]
        lines += table(["method", "layout", "window", *[f"{c:g} dB" for c in contrasts]],
                       [[m, layout, str(w), *[f"{cells[c]['detection_rate']:.3f} ({cells[c]['false_alarm_rate']:.3f})"
                                              if c in cells else "" for c in contrasts]]
                        for (m, layout, w), cells in variants.items()], "llr" + "r" * len(contrasts))
    speed = result.get("speed")
    if speed:
        load_average = result.get("load_average")
        note = f", load average {load_average[0]:.1f} at start" if load_average else ""
        lines += ["### Speed", "", f"Two dual-pol dates (`--side`, 4096 x 4096 by default), file to file, CPU "
                  f"({result.get('cpu_count')} cores{note}), best of the runs; Mpx/s of one date's grid:", ""]
        lines += table(["method", "window", "torch threads", "Mpx/s", "s/Mpx", "seconds"],
                       [[r["method"], str(r["window"]), str(r["threads"]), f"{r['mpx_per_s']:.2f}",
                         f"{1 / r['mpx_per_s']:.2f}", f"{r['seconds']:.1f}"]
                        for r in speed], "lrrrrr")
    return lines


# ------------------------------------------------------------------------------------------


#: Every section of the page, in order: name (for ``--only``) -> the function that writes it.
SECTIONS = {
    "filters": filters_section, "networks": networks_section, "multilook": multilook_section,
    "decorrelation": decorrelation_section, "change": change_section, "multitemporal": multitemporal_section,
    "dualpol": dualpol_section,
    "batch": batch_section, "busy": busy_section,
}


def report(bench: str, today: str | None = None) -> str:
    today = today or datetime.date.today().isoformat()
    lines = ["# Benchmarks", "",
             f"> Generated by `make bench` on {today}, commit {commit()}, {machine()}; "
             "do not edit by hand (`scripts/bench_report.py` rewrites this page from the results in "
             f"`{os.path.relpath(bench, ROOT)}`).", "",
             "How each benchmark works, and what its figures mean, is on the family pages: "
             "[despeckling](despeckle.md), [decorrelation](decorrelation.md), "
             "[change detection](change_detection.md), [multitemporal despeckling](multitemporal.md).", ""]
    for section in SECTIONS.values():
        lines += section(bench)
    return "\n".join(lines).rstrip() + "\n"


def split_sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """A page as its lines before the first "## " heading and its sections by heading."""
    head, sections, current = [], {}, None
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("## "):
            current = line
            sections[current] = []
        (sections[current] if current else head).append(line)
    return head, sections


def update(page: str, bench: str, names: list[str], today: str | None = None) -> str:
    """``page`` with the sections ``names`` (keys of :data:`SECTIONS`) rewritten from ``bench``
    (appended when missing), the others left as they were, and a header line saying which
    were rewritten when: for a benchmark rerun alone."""
    today = today or datetime.date.today().isoformat()
    head, sections = split_sections(page)
    for name in names:
        fresh = SECTIONS[name](bench)
        sections[fresh[0]] = fresh
    note = (f"> Sections rewritten alone on {today}, commit {commit()}: "
            + ", ".join(SECTIONS[name](bench)[0][3:] for name in names) + ".")
    head = [line for line in head if not line.startswith("> Sections rewritten alone")]
    head = [line for index, line in enumerate(head) if line or index == 0 or head[index - 1]]  # its blank too
    after = 1  # the note goes after the page's opening block quote
    for index, line in enumerate(head):
        if line.startswith(">"):
            after = index + 1
        elif after > 1:
            break
    lines = head[:after] + ["", note] + head[after:]
    for section in sections.values():
        lines += section if not lines or lines[-1] == "" else ["", *section]  # the page's last section lost its blank
    return "\n".join(lines).rstrip() + "\n"


def write_atomically(text: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".benchmarks.", suffix=".md", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", default=os.path.join(ROOT, "build", "bench"))
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=None,
                        help="rewrite these sections of the existing page alone (after rerunning their "
                             "benchmarks by hand), keeping the others")
    args = parser.parse_args()
    bench = os.path.abspath(args.bench)
    if args.only and os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as stream:
            text = update(stream.read(), bench, args.only)
    else:
        text = report(bench)
    write_atomically(text, args.output)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
