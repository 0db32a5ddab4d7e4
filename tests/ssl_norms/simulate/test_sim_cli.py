"""``ssl-norms simulate``: both experiments write their CSV and PNG files."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from ssl_norms.cli import main as ssl_norms_main
from ssl_norms.simulate.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_aparametric_writes_csv_and_png(tmp_path, capsys):
    assert main(["aparametric", "--out", str(tmp_path), "--quick", "--seeds", "0", "1"]) == 0
    rows = _rows(tmp_path / "fig2a_aparametric.csv")
    # quick grid: 4 norms + 5 alphas + 2 x 3 grid, per seed
    assert len(rows) == 2 * (4 + 5 + 6)
    assert {r["sweep"] for r in rows} == {"norm", "angle", "grid"}
    assert all(int(r["steps"]) > 0 for r in rows)
    assert (tmp_path / "fig2a_aparametric.png").read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert "wrote" in out and "fig2a_aparametric.png" in out


def test_latent_classes_writes_both_figures(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        status = ssl_norms_main(
            ["simulate", "latent-classes", "--out", str(tmp_path), "--quick", "--seeds", "0"]
        )
    finally:
        torch.set_num_threads(threads)  # the command sets --threads (default 1)
    assert status == 0
    density = _rows(tmp_path / "fig2b_density.csv")
    assert len(density) == 4 * 250  # quick: 250 samples per class
    assert all(float(r["norm"]) > 0 for r in density)
    imbalance = _rows(tmp_path / "fig2c_imbalance.csv")
    assert len(imbalance) == 4 * (5 + 1) * 4  # rotations x (epochs + init) x classes
    for name in ("fig2b_density.png", "fig2c_imbalance.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert "Spearman" in out and "fig2c_imbalance.csv" in out


def test_missing_out_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["aparametric"])
    assert exc.value.code == 2


def test_simulate_never_imports_lightning(tmp_path):
    """``ssl-norms simulate`` stays light (DESIGN §6: lightning costs seconds to import)."""
    code = (
        "import sys; from ssl_norms.cli import main; "
        f"assert main(['simulate', 'aparametric', '--out', {str(tmp_path)!r}, '--quick', '--seeds', '0']) == 0; "
        "heavy = sorted(m for m in ('lightning', 'pytorch_lightning', 'torchvision', 'wandb') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fig2a_aparametric.png").is_file()


BAD_ARGUMENTS = [
    (["aparametric", "--max-steps", "0"], "argument --max-steps: must be >= 1, got 0"),
    (["aparametric", "--n-pairs", "0"], "argument --n-pairs: must be >= 1, got 0"),
    (["aparametric", "--dim", "1"], "argument --dim: must be >= 2, got 1"),
    (["aparametric", "--dim", "x"], "argument --dim: expected an integer, got 'x'"),
    (["aparametric", "--lr", "-1"], "argument --lr: must lie in (0, inf), got -1"),
    (["aparametric", "--threshold", "2"], "argument --threshold: must lie in (-1, 1), got 2"),
    (["aparametric", "--seeds", "-1"], "argument --seeds: must be >= 0, got -1"),
    (["latent-classes", "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["latent-classes", "--lr", "nan"], "argument --lr: must lie in (0, inf), got nan"),
    (
        ["latent-classes", "--temperature", "0"],
        "argument --temperature: must lie in (0, inf), got 0",
    ),
    (["latent-classes", "--noise-std", "-1"], "argument --noise-std: must lie in [0, inf), got -1"),
    (["latent-classes", "--hidden-dim", "0"], "argument --hidden-dim: must be >= 1, got 0"),
    (
        ["latent-classes", "--imbalance-ratio", "0.5"],
        "argument --imbalance-ratio: must lie in [1, inf)",
    ),
    (["latent-classes", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
    (["latent-classes", "--seed", "-3"], "argument --seed: must be >= 0, got -3"),
]


@pytest.mark.parametrize(
    ("argv", "message"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS]
)
def test_every_bad_argument_is_a_message_before_any_work(tmp_path, capsys, argv, message):
    """Before: a ValueError traceback (after the work before it), or a silent run (--epochs 0)."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(out), "--quick"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_a_run_where_nothing_converges_writes_nothing(tmp_path, capsys):
    """--max-steps too small for a sweep: was a matplotlib 'Invalid vmin or vmax' traceback."""
    out = tmp_path / "out"
    assert (
        main(["aparametric", "--out", str(out), "--quick", "--seeds", "0", "--max-steps", "3"]) == 1
    )
    err = capsys.readouterr().err
    assert "converged within --max-steps 3: raise --max-steps (nothing was written)" in err
    assert not out.exists()


def test_an_out_folder_that_cannot_be_made_is_a_message(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["aparametric", "--out", str(blocker / "out"), "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"Not a directory: {blocker / 'out'}" in err and "Traceback" not in err
