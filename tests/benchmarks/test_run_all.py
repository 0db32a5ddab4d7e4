"""``make bench QUICK=1`` runs every benchmark script at tiny sizes and writes a valid
``bench.json``, a report and its scaling figure. Never asserts a speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("name", "value", "unit", "baseline", "baseline_value", "ratio", "machine", "date",
          "commit")  # fmt: skip


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.slow
def test_make_bench_quick_writes_a_valid_bench_json(tmp_path):
    committed = REPO / "BENCHMARKS.md"
    before = committed.read_bytes() if committed.exists() else None
    venv = Path(sys.prefix)
    # This interpreter's environment, as it is: no install step (-o: take the stamps as made).
    stamps = [f"-o{venv}/.installed-{kind}" for kind in ("cpu", "gpu", "bench")]
    proc = subprocess.run(
        ["make", "-C", str(REPO), "bench", "QUICK=1", f"BENCH_DIR={tmp_path}", f"VENV={venv}",
         *stamps],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((tmp_path / "bench.json").read_text())
    assert isinstance(records, list) and records
    for r in records:
        assert set(FIELDS) <= r.keys(), r
        assert isinstance(r["name"], str) and isinstance(r["unit"], str), r
        assert _number(r["value"]) and r["value"] >= 0, r
        assert r["machine"] and r["commit"] and r["date"].endswith("Z"), r
        if r["baseline"] is not None:
            assert isinstance(r["baseline"], str) and _number(r["baseline_value"]), r
        if r["ratio"] is not None:
            assert _number(r["ratio"]) and r["ratio"] > 0, r
    names = {r["name"] for r in records}
    assert len(names) == len(records), "record names are unique"
    expected = {
        "fit/cpu/fit_vs_plain",
        "knn/cpu/ours_vs_bare_faiss",
        "knn/cpu/ours_vs_torch_matmul_topk",
        "knn/cpu/ours_vs_scikit-learn",
        "memory/cpu/knn_pass",
        "monitors/cpu/mlp/every_1",
    }
    try:
        import lightly  # noqa: F401

        expected.add("fit/cpu/fit_vs_lightly")
    except ImportError:
        pass
    assert expected <= names, expected - names
    for prefix in ("augment/two_view/batched_cpu/", "scaling/cpu/step_ms/batch_",
                   "scaling/cpu/knn_s/bank_", "memory/cpu/train_step/"):  # fmt: skip
        assert any(n.startswith(prefix) for n in names), prefix
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "Quick mode" in report and "| `fit/cpu/fit_vs_plain` |" in report
    assert "](scaling.png)" in report
    png = (tmp_path / "scaling.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # Quick mode leaves the committed report alone.
    assert (committed.read_bytes() if committed.exists() else None) == before


def _record(name, value, machine, ratio=None, **extra):
    return {"name": name, "value": value, "unit": "s", "baseline": None, "baseline_value": None,
            "ratio": ratio, "machine": machine, "date": "2026-12-05T00:00:00Z",
            "commit": "abc1234", **extra}  # fmt: skip


def test_records_from_a_gpu_machine_merge_by_name_and_name_their_machine(tmp_path):
    cpu, gpu = "2 cores, no GPU", "16 cores, GPU NVIDIA H100 80GB HBM3"
    older = [_record("fit/cpu/fit_vs_plain", 100.0, cpu, 0.98),
             _record("epoch/cuda/simclr", 12.0, cpu)]  # fmt: skip
    newer = [_record("epoch/cuda/simclr", 4.9, gpu),
             _record("knn/cuda/ours_vs_torch_matmul_topk", 0.02, gpu, 1.17)]  # fmt: skip
    files = []
    for i, records in enumerate((older, newer)):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(records))
    out = tmp_path / "out"
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    run_all.main(["--records", *map(str, files), "--out-dir", str(out),
                  "--markdown", str(tmp_path / "B.md"), "--figure", str(tmp_path / "f.png")])  # fmt: skip
    merged = json.loads((out / "bench.json").read_text())
    # The later file's epoch replaced the older one, in its place; nothing else was lost.
    assert [r["name"] for r in merged] == [
        "fit/cpu/fit_vs_plain", "epoch/cuda/simclr", "knn/cuda/ours_vs_torch_matmul_topk"]  # fmt: skip
    assert merged[1]["value"] == 4.9 and merged[1]["machine"] == gpu
    report = (tmp_path / "B.md").read_text()
    header, _, gpu_part = report.partition("## Fast-path epoch, GPU")
    assert f"Machine: {cpu}." in header and gpu not in header
    assert f"Machine: {gpu}. Commit: abc1234." in gpu_part
    assert "value <= 10 s: met" in gpu_part and "value <= 2 s: met" in gpu_part
