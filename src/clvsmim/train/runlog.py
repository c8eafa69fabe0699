"""What a run writes besides its checkpoint: the smoothed metrics window and the resumable CSV log."""
from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path
from typing import Any

from clvsmim.cache import write_atomic


# --------------------------------------------------------------------------- logging

LOG_NAME = "log.csv"
META_NAME = "meta.json"
BASE_COLUMNS = ("step", "loss", "lr", "images_per_s")

class MetricWindow:
    """Running sums of the scalars since the last log row (checkpointed, so resume is exact),
    plus this session's throughput counters (wall time is not reproducible anyway)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self._images, self._since = 0, time.perf_counter()

    def add(self, scalars: dict[str, float], images: int) -> None:
        for key, value in scalars.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self._images += images

    def pop(self) -> dict[str, float]:
        """Window means plus ``images_per_s``; resets the window."""
        row = {k: v / self.count for k, v in self.sums.items()}
        elapsed = time.perf_counter() - self._since
        row["images_per_s"] = self._images / elapsed if elapsed > 0 else float("nan")
        self.sums, self.count = {}, 0
        self._images, self._since = 0, time.perf_counter()
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.count = dict(state["sums"]), int(state["count"])


class CsvLog:
    """``log.csv``: one row per logged step; on resume rows after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        self.columns: list[str] | None = None
        if keep_until is None:
            path.unlink(missing_ok=True)
        else:
            self._truncate(keep_until)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or []) or None
            rows = [r for r in reader if int(r["step"]) <= step]
        def write(f) -> None:
            if self.columns:
                writer = csv.DictWriter(f, self.columns)
                writer.writeheader()
                writer.writerows(rows)

        write_atomic(self.path, write)

    def append(self, row: dict[str, Any]) -> None:
        new_file = self.columns is None
        if new_file:
            extra = sorted(k for k in row if k not in BASE_COLUMNS)
            self.columns = [*BASE_COLUMNS, *extra]
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore", restval="")
            if new_file:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
