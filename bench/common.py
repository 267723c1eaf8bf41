"""Shared benchmark helpers: percentiles, interleaved timing, and writing bench/results/<name>.{json,md}."""
from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sample."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summarize(samples_ns: Sequence[int]) -> dict:
    """p50/p90/p99/mean in microseconds of samples measured in nanoseconds."""
    micros = [sample / 1000 for sample in samples_ns]
    return {"p50_us": round(percentile(micros, 0.50), 2), "p90_us": round(percentile(micros, 0.90), 2),
            "p99_us": round(percentile(micros, 0.99), 2), "mean_us": round(statistics.fmean(micros), 2),
            "samples": len(micros)}


def interleaved(operations: dict[str, Callable[[], object]], iterations: int, warmup: int = 200) -> dict:
    """Time each operation `iterations` times, round-robin, so all of them see the same machine load
    (the side-by-side comparison stays fair on a busy machine). Returns name -> summary."""
    clock = time.perf_counter_ns
    for _ in range(warmup):
        for operation in operations.values():
            operation()
    samples: dict[str, list[int]] = {name: [] for name in operations}
    for _ in range(iterations):
        for name, operation in operations.items():
            started = clock()
            operation()
            samples[name].append(clock() - started)
    return {name: summarize(values) for name, values in samples.items()}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """Write bench/results/<name>.json (data + run metadata) and <name>.md (the tables)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": name, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "machine": platform.machine(), "cpus": _cpu_count()}
    json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps({"meta": meta, **data}, indent=2) + "\n")
    md_path.write_text(f"# {name}\n\n{markdown.strip()}\n\n_{meta['finished_at']}, Python {meta['python']}, "
                       f"{meta['cpus']} CPUs; written by `make bench`._\n")
    return json_path, md_path


def _cpu_count() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
