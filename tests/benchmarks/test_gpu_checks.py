"""``benchmarks/gpu_checks.sh``, the one prepared run for a lent GPU, at tiny sizes on the
CPU (``QUICK=1 DEVICE=cpu``): every step runs with the arguments the GPU run gives it and
writes its file, so the script cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = ("environment", "fast_path_epoch", "knn", "cuda_tests", "augment", "compare_fast_path",
         "fit_vs_plain", "compiled_epoch")  # fmt: skip


@pytest.mark.slow
@pytest.mark.data
def test_gpu_checks_run_every_step_on_a_cpu(shared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "PY": sys.executable,
           "OUT": str(tmp_path), "DATA": str(shared_data), "COMMIT": "abc1234"}  # fmt: skip
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_checks.sh")],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    log = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 0, log[-3000:]
    for step in STEPS:
        assert f"== {step}: ok" in proc.stdout, (step, log[-3000:])
    knn = json.loads((tmp_path / "bench_knn.json").read_text())
    assert knn and all("/cpu/" in r["name"] for r in knn)  # --device: only that device's rows
    # Stamped as make bench stamps its records, with the caller's commit.
    assert all(r["commit"] == "abc1234" and r["machine"] and r["date"].endswith("Z") for r in knn)
    augment = json.loads((tmp_path / "bench_augment.json").read_text())
    assert augment and all(r["name"].startswith("augment/two_view/") for r in augment)
    sides = json.loads((tmp_path / "bench_fit_sides.json").read_text())
    assert any(r["name"] == "fit/cpu/fit_vs_plain" for r in sides)
    assert json.loads((tmp_path / "fast_path.json").read_text())
    # At most 8 files come back from a device run: the script writes 7.
    assert len(list(tmp_path.iterdir())) <= 8
