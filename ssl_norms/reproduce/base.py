"""What every runner of ``ssl-norms reproduce`` shares: the invocation's context, the section
it contributes to ``results/REPORT.md``, and the readers of a run's outputs.

A runner (:class:`Runner`) says which runs it needs (:meth:`Runner.requests`) and turns
whatever of them exists into a :class:`Section` (:meth:`Runner.collect`): tables beside
the paper's values, figures, and a short reading computed from the numbers. Collecting
never trains: it reads ``RUN/csv/metrics.csv``, ``RUN/failure.json`` and the embeddings
cache, so the report can be regenerated at any time.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ssl_norms import metric_names as M
from ssl_norms.reproduce.profiles import Profile
from ssl_norms.reproduce.runs import Failure, RunRequest, RunSpec, read_failure, read_progress

__all__ = [
    "Context",
    "Section",
    "Runner",
    "CellResult",
    "read_rows",
    "knn_at",
    "per_epoch",
    "cell_result",
    "fmt",
    "markdown_table",
    "write_csv",
]


@dataclass
class Context:
    """One invocation of ``ssl-norms reproduce``."""

    profile: Profile
    runs_dir: Path  # RUNS/<profile>
    out_dir: Path  # results (results/smoke for the smoke profile)
    configs_dir: Path
    data_dir: str | None = None
    human_labels: str | None = None
    datasets: tuple[str, ...] | None = None  # --datasets: replaces the profile's scope

    def in_scope(self, runner: str, dataset: str) -> bool:
        """Whether the result covers this data set now (``--datasets``, else the profile's)."""
        if self.datasets is not None:
            return dataset in self.datasets
        return self.profile.covers(runner, dataset)

    def shown(self, runner: str, dataset: str, spec: RunSpec) -> bool:
        """Whether the report shows a cell: in scope, or its run exists (an earlier
        invocation with other ``--datasets`` ran it)."""
        return self.in_scope(runner, dataset) or self.run_dir(spec).is_dir()

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.slug

    @property
    def data_folder(self) -> str:
        """The data folder in use (``--data-dir``, else the profile's configs')."""
        return self.data_dir or self.profile.default_data_dir

    @property
    def human_label_folder(self) -> str:
        return self.human_labels or self.data_folder


@dataclass
class Section:
    """A runner's part of the report.

    ``complete`` is True when every cell or panel in the profile's scope holds a result (a
    value, or a divergence, which is a result the paper reports too); ``missing`` lists
    what is not, ``notes`` the data messages.
    """

    name: str
    title: str
    protocol: str
    body: list[str] = field(default_factory=list)
    readings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    in_scope: int = 0

    @property
    def complete(self) -> bool:
        return not self.missing

    def markdown(self, link_prefix: str = "") -> str:
        lines = [f"## {self.title}", "", f"*Protocol.* {self.protocol}", ""]
        for line in self.body:
            lines.append(line.replace("](./", f"]({link_prefix}"))
        if self.readings:
            lines += ["", "*Reading.*", ""] + [f"- {r}" for r in self.readings]
        if self.notes:
            lines += [""] + [f"> {n}" for n in self.notes]
        if self.in_scope == 0:
            lines += [
                "",
                "This profile does not run this result (see `--datasets`); a cell filled "
                "above comes from a run that another result of the profile made.",
            ]
        elif self.missing:
            shown = ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else "")
            lines += ["", f"**Incomplete**: {len(self.missing)} missing ({shown})."]
        return "\n".join(lines).rstrip() + "\n"


class Runner:
    """A result of the paper: the runs it needs and how its section is made."""

    name: str = ""
    title: str = ""
    protocol: str = ""

    def requests(self, ctx: Context) -> list[RunRequest]:
        raise NotImplementedError

    def collect(self, ctx: Context) -> Section:
        raise NotImplementedError

    def section(self, ctx: Context) -> Section:
        return Section(self.name, self.title, self.protocol)

    def out(self, ctx: Context) -> Path:
        path = ctx.out_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


# ------------------------------------------------------------------------------ run outputs


def read_rows(run_dir: Path) -> list[dict[str, float]]:
    """The rows of ``RUN/csv/metrics.csv`` as ``{column: float}`` (empty cells and malformed
    rows left out, as ``ssl-norms plot`` does)."""
    path = run_dir / "csv" / "metrics.csv"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if None in row or any(v is None for v in row.values()):
            continue
        parsed: dict[str, float] = {}
        try:
            for key, value in row.items():
                if value != "":
                    parsed[key] = float(value)
        except ValueError:
            continue
        rows.append(parsed)
    return rows


def knn_at(rows: list[dict[str, float]], epoch: int) -> float | None:
    """``knn/top1`` (a fraction) of the evaluation at the end of ``epoch`` (1-based)."""
    found = None
    for row in rows:
        if M.KNN_TOP1 in row and int(row.get("epoch", -1)) == epoch - 1:
            found = row[M.KNN_TOP1]
    return found


def per_epoch(rows: list[dict[str, float]], column: str) -> dict[int, float]:
    """Mean of ``column`` over each epoch's rows, keyed by the 1-based epoch."""
    sums: dict[int, list[float]] = {}
    for row in rows:
        if column in row and "epoch" in row and math.isfinite(row[column]):
            sums.setdefault(int(row["epoch"]) + 1, []).append(row[column])
    return {e: sum(v) / len(v) for e, v in sorted(sums.items())}


def last_evaluation(rows: list[dict[str, float]], prefix: str) -> dict[str, float]:
    """The columns starting with ``prefix`` of the last row that has any (one evaluation)."""
    for row in reversed(rows):
        found = {k: v for k, v in row.items() if k.startswith(prefix)}
        if found:
            return found
    return {}


@dataclass(frozen=True)
class CellResult:
    """A table cell: a value, or why there is none (``status``)."""

    value: float | None
    status: str  # "ok", "diverged", "data", "failed", "running", "not run", "out of scope"
    text: str
    failure: Failure | None = None
    counted: bool = True  # False: shown (its run exists) but outside the results asked for


def cell_result(run_dir: Path, value: float | None, epoch: int, until: int) -> CellResult:
    """What a cell that reads ``value`` (at ``epoch``) of this run shows.

    A diverged or failed run reads as such even if it logged values before it stopped: a
    value counts only when it was measured at the cell's epoch.
    """
    if value is not None:
        return CellResult(value, "ok", fmt(value))
    failure = read_failure(run_dir)
    done = read_progress(run_dir)
    if failure is not None and done < epoch:
        return CellResult(None, failure.kind, failure.short(), failure)
    if done >= epoch:
        return CellResult(None, "failed", f"no value at epoch {epoch}")
    if (run_dir / "checkpoints" / "last.ckpt").is_file() or done:
        return CellResult(None, "running", f"interrupted (epoch {done} of {until})")
    return CellResult(None, "not run", "not run")


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def versus(ours: CellResult, paper: float | None) -> str:
    """ "ours / paper (difference)" for a table cell."""
    if paper is None:
        return ours.text
    if ours.value is None:
        return f"{ours.text} / {paper:.1f}"
    return f"{ours.value:.1f} / {paper:.1f} ({ours.value - paper:+.1f})"


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table; a ``|`` inside a cell (``||z||``) is escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


def write_csv(path: Path, records: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for record in records:
        fields += [k for k in record if k not in fields]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def data_note(failures: dict[str, Failure]) -> list[str]:
    """One note per missing data set, with the data module's own message."""
    return [
        f"Data not available for {dataset}: {failure.first_line()}"
        for dataset, failure in sorted(failures.items())
    ]
