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
STEPS = ("environment", "fast_path_epoch", "epoch_without_guard", "knn", "scaling_step",
         "scaling_knn", "cuda_tests", "augment", "compare_fast_path", "fit_vs_plain",
         "fit_vs_plain_without_guard", "compiled_epoch")  # fmt: skip


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
    # What comes back from a device run: the log, the comparison and one file of records.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast_path.json", "log.txt",
                                                           "records.json"]  # fmt: skip
    records = json.loads((tmp_path / "records.json").read_text())
    names = [r["name"] for r in records]
    assert len(names) == len(set(names))
    # Stamped as make bench stamps its records, with the caller's commit.
    assert all(r["commit"] == "abc1234" and r["machine"] and r["date"].endswith("Z")
               for r in records)  # fmt: skip
    # Only the checked device's rows: the per-image and loader-worker rows measured on the
    # GPU machine's CPU would replace the goal machine's in results/bench.json.
    assert not [n for n in names if "batched_loader" in n]
    for name in ("fit/cpu/fit_vs_plain", "fit/cpu/fit_no_guard_vs_plain",
                 "epoch/cpu/simclr_resnet18_w2_batch16", "epoch/cpu/simclr_resnet18_w2_batch16_no_guard",
                 "epoch/cpu/simclr_resnet18_w2_batch16_compiled"):  # fmt: skip
        assert name in names, (name, names)
    assert any(n.startswith("knn/cpu/") for n in names)
    for prefix in (
        "scaling/cpu/step_ms/batch_",
        "scaling/cpu/knn_s/bank_",
        "memory/cpu/train_step/",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    for prefix in ("augment/two_view/batched_cpu/", "augment/two_view/batched_cpu_resident/"):
        assert any(n.startswith(prefix) for n in names), prefix
    epoch = records[names.index("epoch/cpu/simclr_resnet18_w2_batch16")]
    assert 0 < epoch["step_ms_first"] and 0 < epoch["step_ms_median"] <= epoch["step_ms_max"]
    assert "NaN guard on" in epoch["conditions"]
    no_guard = records[names.index("epoch/cpu/simclr_resnet18_w2_batch16_no_guard")]
    assert "NaN guard off" in no_guard["conditions"]
    assert json.loads((tmp_path / "fast_path.json").read_text())
