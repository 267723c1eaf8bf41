"""`make bench`: run every benchmark module's main() in turn; exit non-zero if one of them failed."""
from __future__ import annotations

import importlib
import sys
import time
import traceback

from bench import readme

BENCHMARKS = [
    "bench.bench_decorator",
    "bench.bench_service",
    "bench.bench_faults",
    "bench.bench_topologies",
    "bench.bench_batches",
    "bench.bench_operator",
    "bench.bench_pods",
]


def main(names: list[str] | None = None) -> int:
    failed = []
    for name in names or BENCHMARKS:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            importlib.import_module(name).main()
        except Exception:  # noqa: BLE001 - report and carry on with the next benchmark
            traceback.print_exc()
            failed.append(name)
        print(f"== {name}: {'FAILED' if name in failed else 'done'} in {time.monotonic() - started:.1f}s", flush=True)
    ran = [name.removeprefix("bench.bench_") for name in names or BENCHMARKS if name not in failed]
    readme.update(ran)
    print(f"docs/benchmarks.md and README summary refreshed: {', '.join(ran) or 'none'}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
