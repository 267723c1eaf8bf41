"""`cachedmodel-advise`: argument parsing and the run (replay every size x policy, simulate, report).

Exit codes: 0 advice written; 2 bad arguments or input file, an --out that is not a directory, or no
redis-server on PATH (one line naming the problem, checked before any work, never a traceback); 1 Redis
could not be run; 3 the `advise` extra (matplotlib, tqdm) is not installed.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from cachedmodel.advise import simulate
from cachedmodel.advise.replay import (POLICIES, REDIS_MISSING, VOLATILE, ReplayError, entry_estimate, redis_server,
                                       replay)
from cachedmodel.advise.traces import TraceError, read_keys, zipf
from cachedmodel.advise.units import format_size, parse_size, parse_sizes

PROG = "cachedmodel-advise"
DEFAULT_POLICIES = "allkeys-lru,allkeys-lfu"
DEFAULT_VALUE_BYTES = 256
REDIS_BASELINE = 1024 * 1024  # an empty redis-server's used_memory is about 1 MB
EXTRA_MISSING = (f"{PROG} needs the 'advise' extra (matplotlib, tqdm): pip install 'cachedmodel[advise]'")


class UsageError(ValueError):
    pass


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(
        "How big should the Redis cache be? Replays a request trace against a real redis-server for "
        "every maxmemory x eviction policy, counts hits, reads INFO, and writes advice.json, advice.md "
        "and hit_ratio.png. Input: --keys FILE, or --requests FILE --config REST_CONFIG, or "
        "--zipf S --distinct N --requests R."))
    source = p.add_argument_group("workload (one of)")
    source.add_argument("--keys", metavar="FILE", help="one cache key (or request identifier) per line, in request "
                        "order (e.g. written by the model service with CACHEDMODEL_KEY_TRACE)")
    source.add_argument("--requests", metavar="FILE|R", help="with --config: a JSON-lines file of request bodies; "
                        "with --zipf: the number of requests")
    source.add_argument("--config", metavar="REST_CONFIG", help="the model service's rest-model-service YAML: bodies "
                        "are keyed with its decorator configuration, value size and model latency measured")
    source.add_argument("--model", help="with --config: which model (qualified name), when several are cached")
    source.add_argument("--sample", type=int, default=100, help="with --config: distinct inputs the model runs on "
                        "to measure value size and latency (default 100)")
    source.add_argument("--zipf", type=float, metavar="S", help="synthetic workload: Zipf exponent (0 = uniform)")
    source.add_argument("--distinct", type=int, metavar="N", help="with --zipf: distinct keys")
    source.add_argument("--seed", type=int, default=0, help="with --zipf: random seed (default 0)")
    cache = p.add_argument_group("cache")
    cache.add_argument("--value-bytes", type=int, help=f"stored value size when not measured (default "
                       f"{DEFAULT_VALUE_BYTES})")
    cache.add_argument("--sizes", help="maxmemory values in redis.conf units, e.g. 2mb,8mb,64mb (default: four "
                       "sizes up to the whole working set)")
    cache.add_argument("--policies", default=DEFAULT_POLICIES, help=f"eviction policies, any of {', '.join(POLICIES)} "
                       f"(volatile-* need --ttl-seconds; default {DEFAULT_POLICIES})")
    cache.add_argument("--samples", default="5", help="maxmemory-samples values, e.g. 5,10 (default 5)")
    cache.add_argument("--ttl-seconds", type=float, help="entry TTL (default: none; with --config the decorator's)")
    goal = p.add_argument_group("goal and output")
    goal.add_argument("--target-hit-ratio", type=float, help="the hit ratio to reach (default: 95%% of the "
                      "compulsory-miss bound)")
    goal.add_argument("--model-latency-ms", type=float, help="model time per prediction, for the time saved "
                      "(measured with --config)")
    goal.add_argument("--out", default="advice", metavar="DIR", help="output directory (default ./advice)")
    run = p.add_argument_group("replay")
    run.add_argument("--keys-per-call", type=int, help="keys per server-side script call (default: automatic, "
                     "at most 1/500 of the cache's entries; 1 = eviction between every two requests)")
    run.add_argument("--rate", type=float, help="replay at this many requests per second (production's rate: "
                     "Redis's LRU clock then sees what production sees); default: as fast as possible")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def load_trace(args):
    """The workload the arguments name (exactly one kind)."""
    kinds = [name for name, given in (("--keys", args.keys), ("--config", args.config),
                                      ("--zipf", args.zipf is not None)) if given]
    if len(kinds) != 1:
        raise UsageError("give one workload: --keys FILE, --requests FILE --config REST_CONFIG, or "
                         "--zipf S --distinct N --requests R" + (f" (got {' and '.join(kinds)})" if kinds else ""))
    if args.keys:
        if args.requests:
            raise UsageError("--requests belongs with --config or --zipf, not --keys")
        return read_keys(args.keys), None
    if args.config:
        if not args.requests:
            raise UsageError("--config needs --requests FILE (JSON lines of request bodies)")
        if args.sample < 1:
            raise UsageError("--sample must be at least 1")
        from cachedmodel.advise.offline import build_decorator, read_requests
        decorator = build_decorator(args.config, args.model)
        try:
            return read_requests(args.requests, decorator, args.sample), decorator.options.ttl_seconds
        finally:
            decorator.close()
    if args.distinct is None or args.requests is None:
        raise UsageError("--zipf needs --distinct N and --requests R")
    try:
        requests = int(args.requests)
    except ValueError:
        raise UsageError(f"with --zipf, --requests is a number of requests, got {args.requests!r}") from None
    if not math.isfinite(args.zipf):
        raise UsageError("--zipf must be a finite number")
    return zipf(args.zipf, args.distinct, requests, args.seed), None


def out_error(out: Path) -> str | None:
    """Why --out cannot be the output directory (None: it can): checked before any work, so that a run of
    minutes never ends in a traceback at the last step."""
    for existing in (out, *out.parents):
        if not os.path.lexists(existing):
            continue
        if not existing.is_dir():
            what = "is a file" if existing.is_file() else "exists and is not a directory"
            return (f"--out {out}: {existing} {what}; --out names a directory for advice.json, advice.md and "
                    f"hit_ratio.png (created when missing)")
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"--out {out}: cannot write in {existing} (permission denied)"
        return None
    return None


def baseline_warning(cell) -> str | None:
    """The warning for a size that leaves no room for entries: maxmemory at or below what the empty
    redis-server already used (INFO used_memory, about 1 MB), so every SET is evicted at once or refused,
    Redis holds no keys and the row reads hit ratio 0 whatever the policy. None when entries fit."""
    if cell.maxmemory > cell.baseline_memory and (cell.keys or not (cell.evicted_keys or cell.refused_writes)):
        return None
    return (f"maxmemory {format_size(cell.maxmemory)} ({cell.maxmemory:,} bytes) leaves no room for entries: an "
            f"empty redis-server already uses {cell.baseline_memory:,} bytes (used_memory, measured), so nothing "
            f"stays cached and its row reads hit ratio 0 for every policy; only memory above that holds entries")


def default_sizes(distinct: int, entry: int) -> list[int]:
    """Four sizes from 1/32 of the working set to all of it (plus Redis's baseline), rounded up to 64 KiB."""
    working_set = distinct * entry
    step = 64 * 1024
    return sorted({-(-(REDIS_BASELINE + int(working_set * share)) // step) * step for share in (1 / 32, 1 / 8, 1 / 2, 1.25)})


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import matplotlib  # noqa: F401
        import tqdm
    except ImportError:
        print(EXTRA_MISSING, file=sys.stderr)
        return 3
    try:
        problem = out_error(Path(args.out))
        if problem:
            raise UsageError(problem)
        policies = _csv(args.policies)
        unknown = [p for p in policies if p not in POLICIES]
        if unknown or not policies:
            raise UsageError(f"unknown eviction policy {', '.join(unknown) or '(none)'}: use any of {', '.join(POLICIES)}")
        try:
            samples = sorted({int(s) for s in _csv(args.samples)})
        except ValueError:
            raise UsageError(f"--samples takes whole numbers, e.g. 5,10; got {args.samples!r}") from None
        if not samples or not all(1 <= s <= 64 for s in samples):
            raise UsageError("--samples values must be between 1 and 64")
        sizes = None
        if args.sizes:
            try:
                sizes = parse_sizes(args.sizes)
            except ValueError as error:
                raise UsageError(f"--sizes: {error}") from None
        for name in ("value_bytes", "keys_per_call"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("ttl_seconds", "rate", "model_latency_ms"):
            value = getattr(args, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number")
        if args.target_hit_ratio is not None and not 0 < args.target_hit_ratio <= 1:
            raise UsageError("--target-hit-ratio must be above 0 and at most 1")
        if redis_server() is None:  # before the trace is read or generated: that can take minutes
            raise UsageError(REDIS_MISSING)
        trace, configured_ttl = load_trace(args)
        ttl = args.ttl_seconds if args.ttl_seconds is not None else configured_ttl
        volatile = [p for p in policies if p in VOLATILE]
        if volatile and not ttl:
            raise UsageError(f"{', '.join(volatile)} evict only keys with a TTL: give --ttl-seconds")
        if trace.value_bytes is not None and args.value_bytes is not None:
            print(f"{PROG}: --value-bytes {args.value_bytes} overrides the measured {trace.value_bytes}", file=sys.stderr)
        value_bytes = args.value_bytes or trace.value_bytes or DEFAULT_VALUE_BYTES
        if sizes is None:
            sizes = default_sizes(trace.distinct, entry_estimate(trace, value_bytes))
    except (UsageError, TraceError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    latency = args.model_latency_ms / 1000 if args.model_latency_ms else trace.model_latency_seconds

    from cachedmodel.advise import report
    plan = [(size, policy, sample) for policy in policies for sample in samples for size in sizes]
    print(f"{PROG}: {trace.source}: {trace.requests:,} requests, {trace.distinct:,} distinct; "
          f"{len(plan)} replays ({', '.join(format_size(s) for s in sizes)} x {', '.join(policies)})", file=sys.stderr)
    cells = []
    warnings: list[str] = []  # one per size that holds no entries
    warned: set[int] = set()
    simulated: dict[tuple[str, int], float] = {}
    bar = tqdm.tqdm(total=trace.requests * len(plan), unit="req", unit_scale=True, disable=args.no_progress,
                    file=sys.stderr, desc="replay")
    try:
        for size, policy, sample in plan:
            bar.set_postfix_str(f"{policy} {format_size(size)}")
            try:
                cell = replay(trace, size, policy, value_bytes, ttl, sample, args.keys_per_call, bar.update, args.rate)
            except ReplayError as error:
                bar.close()
                print(f"{PROG}: {error}", file=sys.stderr)
                return 1
            capacity = cell.keys if (cell.evicted_keys or cell.refused_writes or cell.expired_keys) else trace.distinct
            for kind, run in (("lru", simulate.lru_hits), ("lfu", simulate.lfu_hits)):
                if (kind, capacity) not in simulated:
                    simulated[(kind, capacity)] = run(trace.ids, capacity) / trace.requests
            cell.exact_lru_hit_ratio = simulated[("lru", capacity)]
            cell.exact_lfu_hit_ratio = simulated[("lfu", capacity)]
            cells.append(cell)
            warning = baseline_warning(cell)
            if warning and size not in warned:
                warned.add(size)
                warnings.append(warning)
                bar.write(f"{PROG}: warning: {warning}", file=sys.stderr)
    finally:
        bar.close()
    result = report.advice(trace, cells, value_bytes, args.target_hit_ratio, ttl, latency,
                           simulate.compulsory_miss_bound(trace.ids), warnings)
    paths = report.write(result, Path(args.out))
    rec = result["recommendation"]
    print(f"{PROG}: recommend maxmemory {rec['maxmemory']}, maxmemory-policy {rec['policy']} (hit ratio "
          f"{rec['hit_ratio']:.3f}, target {rec['target_hit_ratio']:.3f}{'' if rec['met'] else ', NOT reached'}); "
          f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
