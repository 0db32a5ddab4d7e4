"""Readable logs: one line per epoch and per evaluation without a terminal, the bar in one."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO

from ssl_norms.progress import ProgressLines, TimedProgressBar, use_lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_means_lines_unless_stdout_is_a_terminal() -> None:
    assert use_lines("auto", io.StringIO()) and not use_lines("auto", Terminal())
    assert use_lines("lines", Terminal()) and not use_lines("bar", io.StringIO())
    with pytest.raises(ValueError, match="progress must be auto, bar or lines"):
        use_lines("quiet")  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize(("mode", "lines"), [("lines", True), ("bar", False)])
def test_the_cli_installs_the_lines_instead_of_the_bar(
    tmp_path: Path, mode: str, lines: bool
) -> None:
    from ssl_norms.lightning_cli import run

    cli = run(
        ["-c", str(REPO / "configs/demo.yaml"), "--progress", mode, "--wandb", "disabled",
         "--run_dir", str(tmp_path / "run")],
        run=False,
    )  # fmt: skip
    installed = [c for c in cli.trainer.callbacks if isinstance(c, ProgressLines)]
    assert bool(installed) is lines
    assert (cli.trainer.progress_bar_callback is None) is lines
    if not lines:  # the bar that redraws by time (never a host sync per step on a GPU)
        assert isinstance(cli.trainer.progress_bar_callback, TimedProgressBar)


def test_the_bar_redraws_by_time_not_at_every_step(monkeypatch) -> None:
    """Each redraw reads the loss back from the device: at most one per interval (and the
    loop's last batch), however short the steps; every step when steps are slow."""
    import ssl_norms.progress as progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])

    def redrawn(bar, step_s: float, total: int) -> list[int]:
        drawn = []
        for batch in range(1, total + 1):
            now[0] += step_s
            if bar._should_update(batch, total):
                drawn.append(batch)
        return drawn

    # 125 ms steps, 0.5 s interval: every 4th batch, and the last.
    assert redrawn(TimedProgressBar(interval=0.5), 0.125, 100) == [*range(1, 98, 4), 100]
    assert redrawn(TimedProgressBar(interval=0.5), 2.0, 6) == [1, 2, 3, 4, 5, 6]
    disabled = TimedProgressBar()
    disabled.disable()
    assert redrawn(disabled, 2.0, 3) == []


def _demo_fit_output(tmp_path: Path, epochs: int, n_train: int, wandb: str) -> str:
    """What `ssl-norms fit` of the demo prints into a file (no terminal); asserts exit 0."""
    log = tmp_path / "fit.log"
    with open(log, "w") as out:
        code = subprocess.call(
            [
                sys.executable, "-m", "ssl_norms.cli", "fit",
                "-c", str(REPO / "configs/demo.yaml"),
                "--trainer.max_epochs", str(epochs),
                "--data.init_args.n_train", str(n_train),
                "--data.init_args.n_eval", str(n_train // 2),
                "--wandb", wandb,
                "--run_dir", str(tmp_path / "run"),
            ],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    text = log.read_text()
    assert code == 0, text[-2000:]
    return text


@pytest.mark.slow
def test_a_fit_without_a_terminal_prints_one_line_per_epoch(tmp_path: Path) -> None:
    """`make demo` with its output in a file: lines, never a redrawn bar."""
    text = _demo_fit_output(tmp_path, epochs=4, n_train=512, wandb="disabled")
    lines = text.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/4", "2/4", "3/4", "4/4"]
    for line in epochs:
        assert " loss " in line and " ||z|| " in line and " lr " in line and line.endswith(" s")
    # The demo evaluates every 3 epochs and at the last one.
    evals = [line for line in lines if line.startswith("eval ")]
    assert [line.split()[2] for line in evals] == ["3", "4"]
    assert all("knn/top1 " in line and "||z|| bank " in line for line in evals)
    assert "\r" not in text and "it/s" not in text and "Epoch 0:" not in text
    # Lightning's own deprecation noise (torch's LeafSpec) and its LitLogger advert are not
    # shown to users.
    assert "LeafSpec" not in text and "litlogger" not in text.lower()


@pytest.mark.slow
def test_an_offline_wandb_run_prints_no_deprecation_of_an_unused_setting(tmp_path: Path) -> None:
    """Every run with W&B printed "The anonymous setting has no effect" (Lightning passes
    anonymous=None to wandb.init): a warning about a setting the user never made."""
    text = _demo_fit_output(tmp_path, epochs=1, n_train=256, wandb="offline")
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))  # W&B did run
    assert "anonymous" not in text
