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
