#!/usr/bin/env bash
# The GPU checks in one run (about 8-9 minutes on one H100/H200), the most wanted first: the
# CUDA tests, our fit against a plain loop on the GPU (with and without the NaN guard), the
# fast-path epoch (SimCLR ResNet-18, CIFAR-10's 50,000 images, batch 512; goal <= 10 s) with
# and without the guard, the batched augmentation on the GPU (from a loader, and with the
# images held there) against the per-image loader, the k-NN pass (50,000 x 10,000, dim 512;
# goal <= 2 s), the step time against the batch size and the k-NN time against the bank
# size, the epoch with torch.compile, and the fast path's loss and k-NN against the default
# path (benchmarks/compare_fast_path.py).
#
#   OUT=results/gpu DATA=../shared/data COMMIT=$(git rev-parse --short HEAD) \
#       bash benchmarks/gpu_checks.sh
#
# Runs from the repository root without installing the package (PYTHONPATH=.), with the
# python3 that holds torch and lightning (PY=...); faiss, wandb and jsonargparse are not
# needed (without faiss-gpu the k-NN rows are the torch backend's). DATA must hold
# cifar10/ (train.parquet, test.parquet, 54 MB). Writes 3 files: $OUT/log.txt,
# $OUT/fast_path.json and $OUT/records.json, the GPU's records of every finished step
# (rows of the machine's CPU stay in the log), stamped with the machine, the date and
# COMMIT. Then merge them into results/bench.json and re-render BENCHMARKS.md:
# `.venv/bin/python benchmarks/run_all.py --records results/bench.json $OUT/records.json
# --note-file benchmarks/analysis.md` (a record of the same name replaces the older one).
# On a machine that sees only the repository (a lent GPU machine): copy the data into an
# ignored folder first (mkdir -p .gpu_data && cp -r ../shared/data/cifar10 .gpu_data/ &&
# echo /.gpu_data/ >> .git/info/exclude), send it along, and run with DATA=.gpu_data.
# QUICK=1 DEVICE=cpu runs every step at tiny sizes on a CPU: the test suite proves the
# script's plumbing that way (tests/benchmarks/test_gpu_checks.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
DATA=${DATA:-../shared/data}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
Q=${QUICK:+--quick}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export SSL_NORMS_DATA="$DATA"
LOG="$OUT/log.txt"
if [ -z "${CACHE:-}" ]; then  # decoded CIFAR-10, shared by the steps
    CACHE=$(mktemp -d)
    trap 'rm -rf "$CACHE"' EXIT
fi
: >"$LOG"
failed=0
STAMP='
import datetime as dt, json, os, pathlib, sys
sys.path.insert(0, "benchmarks")
from _common import machine
out, commit, device = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
info = {"machine": machine(), "commit": commit,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
merged = out / "records.json"
records = json.loads(merged.read_text()) if merged.exists() else []
for path in sorted(out.glob("*.json")):
    data = json.loads(path.read_text())
    if path == merged or not isinstance(data, list):
        continue
    ours = [{**r, **info} for r in data
            if any(f"{a}{device}{b}" in r["name"] for a in "/_" for b in "/_")]
    records = list({r["name"]: r for r in records + ours}.values())
    path.unlink()
tmp = out / "records.json.tmp"
tmp.write_text(json.dumps(records, indent=2) + "\n")
os.replace(tmp, merged)  # whole, even when the run is cut off right here
print(f"{len(records)} records in {merged}")
'
# step NAME LIMIT COMMAND...: run under a time limit (seconds), log, go on after a failure,
# and move the step's records into records.json, stamped: a device run cut off at its limit
# still brings back every finished step's records whole.
step() {
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name: $*" | tee -a "$LOG"
    if timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1; then
        echo "== $name: ok ($((SECONDS - start)) s)" | tee -a "$LOG"
    else
        echo "== $name: FAILED ($((SECONDS - start)) s)" | tee -a "$LOG"
        failed=1
    fi
    "$PY" -c "$STAMP" "$OUT" "${COMMIT:-unknown}" "$DEVICE" >>"$LOG" 2>&1
}

step environment 60 sh -c "nvidia-smi || true; $PY -c 'import torch, lightning; print(torch.__version__, lightning.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())'"
# The steps in the order of what is still unknown, so that a run cut short (a device's time
# runs out) brings back the most: first the CUDA-only tests, among them the four that no
# training step and no batch's views make the host wait for the GPU (torch's sync debug
# mode; a GPU kept busy while the host works, which also sees the driver's own waits).
step cuda_tests 180 "$PY" -m pytest -q -p no:cacheprovider -k "cuda or gpu" \
    tests/datamodules/test_batch_augment.py tests/datamodules/test_data_on_device.py \
    tests/ssl_norms/test_knn.py tests/ssl_norms/models/test_sync_batchnorm.py \
    tests/ssl_norms/methods/test_finite_guard.py
# Our fit against a plain loop over the same module: whole runs in turn, the clock read at
# the window's ends only (no sync after each step, as in a real run), with the NaN guard.
step fit_vs_plain 150 "$PY" benchmarks/bench_fit.py $Q --device "$DEVICE" --sides fit plain \
    --interleave run --steps 40 --synthetic 8192 --out "$OUT/bench_fit_sides.json"
if [ "$DEVICE" = cuda ]; then
    epoch=(--gpu-epoch --data-dir "$DATA/cifar10")
else
    epoch=(--gpu-epoch --synthetic 64)
fi
step fast_path_epoch 240 "$PY" benchmarks/bench_fit.py $Q --device "$DEVICE" --sides "${epoch[@]}" \
    --cache-dir "$CACHE" --out "$OUT/bench_fit_epoch.json"
step epoch_without_guard 240 "$PY" benchmarks/bench_fit.py $Q --device "$DEVICE" --sides \
    "${epoch[@]}" --no-check-finite --tag _no_guard --cache-dir "$CACHE" \
    --out "$OUT/bench_fit_epoch_no_guard.json"
step fit_vs_plain_without_guard 150 "$PY" benchmarks/bench_fit.py $Q --device "$DEVICE" \
    --sides fit plain --interleave run --steps 40 --synthetic 8192 --no-check-finite \
    --tag _no_guard --out "$OUT/bench_fit_sides_no_guard.json"
# The batched augmentation on the GPU (from a loader, and with the images held there: its
# own throughput, against the training step's). The per-image baseline in 8 loader workers
# on a GPU machine (its 2-worker rows took 2 of this step's 3 minutes at 128 px on the
# H100's host).
workers=(--workers 8)
[ "$DEVICE" = cuda ] || workers=()
step augment 180 "$PY" benchmarks/bench_augment.py $Q --sizes 32 128 --methods simclr byol \
    --repeats 3 "${workers[@]}" --out "$OUT/bench_augment.json"
step knn 120 "$PY" benchmarks/bench_knn.py $Q --device "$DEVICE" --skip-sklearn --peak-memory \
    --out "$OUT/bench_knn.json"
# How the step time grows with the batch size and the k-NN time with the bank size (the
# scaling figure of BENCHMARKS.md), and a training step's peak memory.
if [ -n "${QUICK:-}" ]; then
    scaling=(--scaling-batches 8 16)
    banks=(--scaling-banks 64 128)
else
    scaling=(--scaling-batches 64 128 256 512 1024)
    banks=(--scaling-banks 10000 50000 100000 200000)
fi
step scaling_step 150 "$PY" benchmarks/bench_fit.py $Q --device "$DEVICE" --sides \
    "${scaling[@]}" --peak-memory --out "$OUT/bench_fit_scaling.json"
step scaling_knn 150 "$PY" benchmarks/bench_knn.py $Q --device "$DEVICE" --skip-compare \
    "${banks[@]}" --out "$OUT/bench_knn_scaling.json"
# The same epoch with torch.compile (on a CPU without it: compiling there takes minutes, and
# the step only proves the plumbing).
compile=(--compile)
[ "$DEVICE" = cuda ] || compile=()
step compiled_epoch 240 "$PY" benchmarks/bench_fit.py $Q --device "$DEVICE" --sides "${epoch[@]}" \
    "${compile[@]}" --tag _compiled --cache-dir "$CACHE" \
    --out "$OUT/bench_fit_epoch_compiled.json"
# Last, as it was measured before (within noise at fcbdb3f) and takes the longest: the fast
# path's loss and k-NN against the default path, 3 seeds x 2 epochs of the full CIFAR-10
# per path (about 2 minutes on one H100).
if [ -n "${QUICK:-}" ]; then
    compare=(--train-subset 4 --eval-subset 4 --width 4 --batch-size 16 --epochs 1 --seeds 0)
else
    compare=(--epochs 2 --seeds 0 1 2 --num-workers 12)
fi
step compare_fast_path 300 "$PY" benchmarks/compare_fast_path.py --device "$DEVICE" \
    --data-dir "$DATA/cifar10" --cache-dir "$CACHE" "${compare[@]}" --out "$OUT/fast_path.json"
exit $failed
