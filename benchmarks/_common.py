"""Shared helpers of the benchmark scripts: interleaved timing, records, the machine, peak memory.

Every comparison runs both (or all) sides in one process, in alternation round after round
(A B A B ...), after a warm-up, and reports medians: load from other processes then hits
every side alike, and the ratio of the medians (or the median of the per-round ratios)
holds when the absolute speed drifts.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # scripts run from anywhere
    sys.path.insert(0, str(REPO))


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall seconds of each function, ``repeats`` rounds of one call each in turn, after
    ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios ``a[i] / b[i]``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def record(
    name: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    ratio: float | None = None,
    **extra,
) -> dict:
    """One benchmark record; ``ratio`` defaults to ``value / baseline_value``."""
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    out = {
        "name": name,
        "value": _round(value),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": _round(baseline_value),
        "ratio": None if ratio is None else round(float(ratio), 4),
    }
    out.update(extra)
    return out


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 4) if abs(x) < 100 else round(x, 1)


def machine() -> str:
    """A one-line description: CPU model and cores, torch threads, GPU when present."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if torch.cuda.is_available():
        text += f", GPU {gpu_name()}"
    return text


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_child(setup, run, queue) -> None:
    try:
        state = setup()
        before = _rss_bytes()
        run(state)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        queue.put(("ok", max(0, peak - before)))
    except BaseException as error:  # report, the parent raises
        queue.put(("error", repr(error)))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Hand freed heap memory back to the OS, then reset this process's peak RSS (VmHWM) to
    its current RSS (Linux >= 4.0): later allocations are then counted, not served from
    memory an earlier run left resident."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kib("VmHWM") <= _status_kib("VmRSS") + 64
    except (OSError, AttributeError):
        return False


def peak_extra_rss(setup: Callable[[], object], run: Callable[[object], object]) -> int:
    """Bytes by which ``run(setup())`` raises the peak resident memory above what ``setup``
    left resident. CPU memory only.

    In this process when Linux lets it reset its peak RSS (``/proc/self/clear_refs``), else
    in a fresh process (so no earlier peak hides it); ``setup`` and ``run`` must then be
    picklable (module-level functions or ``functools.partial``).
    """
    state = setup()
    if _reset_peak_rss():
        before = _status_kib("VmRSS")
        run(state)
        return max(0, _status_kib("VmHWM") - before) * 1024
    del state
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(setup, run, queue))
    proc.start()
    status, value = queue.get(timeout=600)
    proc.join()
    if status != "ok":
        raise RuntimeError(f"peak-memory child failed: {value}")
    return int(value)


def cuda_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak CUDA memory allocated by torch during ``fn()`` above what was allocated before."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated() - before)


def emit(records: list[dict], out: str | None) -> list[dict]:
    """Write the records as JSON to ``out`` (a file path), or print them; returns them."""
    text = json.dumps(records, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    else:
        print(text)
    return records
