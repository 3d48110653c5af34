"""What a run shows and records: a text progress bar and the metrics files of the run folder."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time

#: Columns of metrics.csv, in order.
COLUMNS = ("epoch", "step", "split", "loss", "psnr", "ssim", "psnr_input",
           # no-reference measures on real validation images (training/watch.py)
           "real_ratio_mean", "real_ratio_enl_share", "real_ratio_autocorrelation_gap",
           "learning_rate", "seconds")


class ProgressBar:
    """One line per epoch, redrawn in place on a terminal, printed every ``every`` steps else."""

    def __init__(self, total: int, label: str, every: int, stream=sys.stderr, width: int = 24) -> None:
        self.total, self.label, self.every, self.stream, self.width = total, label, every, stream, width
        self.start = time.perf_counter()
        self.live = stream.isatty()

    def update(self, done: int, **values: float) -> None:
        if not self.live and done % self.every and done != self.total:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else math.inf
        filled = int(self.width * done / self.total)
        shown = " ".join(f"{key} {value:.4g}" for key, value in values.items())
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
            f"{shown} {rate:.2f} it/s ETA {_clock(eta)}"
        )
        end = "" if self.live and done < self.total else "\n"
        self.stream.write(("\r" if self.live else "") + line + end)
        self.stream.flush()


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


class MetricsLog:
    """``metrics.csv`` (one row per record) and ``metrics.json`` (all rows plus a summary).

    On resume the rows past the checkpoint's step (from an interrupted run) are dropped.
    """

    def __init__(self, folder: str, resume_step: int | None = None) -> None:
        self.csv_path = os.path.join(folder, "metrics.csv")
        self.json_path = os.path.join(folder, "metrics.json")
        self.rows: list[dict] = []
        if resume_step is not None and os.path.exists(self.json_path):
            with open(self.json_path, encoding="utf-8") as handle:
                self.rows = [row for row in json.load(handle)["rows"] if row["step"] <= resume_step]
        self.summary: dict = {}
        self._rewrite()

    def append(self, row: dict) -> None:
        self.rows.append({key: row[key] for key in COLUMNS if key in row})
        with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, COLUMNS).writerow(self.rows[-1])
        self._write_json()

    def set_summary(self, **summary) -> None:
        self.summary.update(summary)
        self._write_json()

    def _rewrite(self) -> None:
        with open(self.csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        self._write_json()

    def _write_json(self) -> None:
        temporary = self.json_path + ".partial"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"summary": self.summary, "rows": self.rows}, handle, indent=1)
        os.replace(temporary, self.json_path)
