"""A CSV logger that survives a resume into the same run folder (docs/contract.md, "Run folder").

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts, so resuming a
killed run from ``RUN_DIR/checkpoints/last.ckpt`` would erase every metric logged before the
interruption. This one keeps the file and appends, after :func:`repair_metrics_csv` has

- dropped the rows logged after the checkpoint the run resumes from (steps >= the
  checkpoint's logging step): the resumed run logs those steps again, and a CSV with the
  same step twice draws zig-zag curves;
- dropped a cut-off last line (a run killed while writing leaves one), which would
  otherwise end the resumed run at its first new column ("dict contains fields not in
  fieldnames: None").

Rewrites of the file (a new column means a new header) go through a temporary file and a
rename, so a kill never leaves half a file.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_info

__all__ = ["CSVRepair", "ResumableCSVLogger", "repair_metrics_csv"]


@dataclass
class CSVRepair:
    """What :func:`repair_metrics_csv` changed."""

    header: list[str]
    cut_line: bool = False  # a last line without its newline was dropped
    malformed: int = 0  # rows with another number of fields than the header
    after_checkpoint: int = 0  # rows with step >= drop_from_step

    @property
    def changed(self) -> bool:
        return self.cut_line or bool(self.malformed or self.after_checkpoint)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _step(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def repair_metrics_csv(path: Path, drop_from_step: int | None = None) -> CSVRepair:
    """Make ``path`` (a CSVLogger ``metrics.csv``) safe to append to; returns what changed.

    Drops a cut-off last line, rows whose field count differs from the header's, and (when
    ``drop_from_step`` is given) rows with ``step >= drop_from_step``. The file is rewritten
    atomically, and only when something changed.
    """
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    repair = CSVRepair(header=[])
    if text and not text.endswith("\n"):
        repair.cut_line = True
        text = text[: text.rfind("\n") + 1]  # nothing when not even the header was complete
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        if repair.cut_line:
            _write_atomic(path, "")
        return repair
    header, body = rows[0], rows[1:]
    repair.header = header
    step_col = header.index("step") if "step" in header else None
    kept = []
    for row in body:
        if len(row) != len(header):
            repair.malformed += 1
            continue
        if drop_from_step is not None and step_col is not None:
            step = _step(row[step_col])
            if step is not None and step >= drop_from_step:
                repair.after_checkpoint += 1
                continue
        kept.append(row)
    if repair.changed:
        out = io.StringIO(newline="")
        writer = csv.writer(out)  # the excel dialect (\r\n), as Lightning writes
        writer.writerow(header)
        writer.writerows(kept)
        _write_atomic(path, out.getvalue())
    return repair


class _AppendingExperimentWriter(ExperimentWriter):
    def __init__(self, log_dir: str, drop_from_step: int | None = None) -> None:
        self._drop_from_step = drop_from_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        repair = repair_metrics_csv(path, self._drop_from_step)
        self.metrics_keys = list(repair.header)
        notes = []
        if repair.after_checkpoint:
            notes.append(
                f"dropped {repair.after_checkpoint} rows logged after the checkpoint "
                f"(step >= {self._drop_from_step}; the resumed run logs them again)"
            )
        if repair.cut_line:
            notes.append("dropped a cut-off last line")
        if repair.malformed:
            notes.append(f"dropped {repair.malformed} malformed rows")
        if notes:
            rank_zero_info(f"ssl-norms: {path}: " + "; ".join(notes))

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        path = Path(self.metrics_file_path)
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        _write_atomic(path, out.getvalue())


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to an existing ``metrics.csv`` instead of deleting it.

    Args:
        drop_from_step: on a resume, the logging step of the checkpoint resumed from: rows
            at or after it are removed from the existing file before appending (the
            resumed run logs those steps again). ``None``: keep every row.
        *args, **kwargs: those of Lightning's ``CSVLogger``.
    """

    def __init__(self, *args, drop_from_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._drop_from_step = drop_from_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(
                log_dir=self.log_dir, drop_from_step=self._drop_from_step
            )
        return self._experiment
