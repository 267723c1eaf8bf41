"""advice.json, advice.md and hit_ratio.png from the measured cells (the recommendation itself is pure)."""
from __future__ import annotations

import json
from pathlib import Path

from cachedmodel.advise.replay import Cell
from cachedmodel.advise.traces import Trace
from cachedmodel.advise.units import format_size, human_size

DEFAULT_TARGET_SHARE = 0.95  # no --target-hit-ratio: 95% of the compulsory-miss bound


def recommend(cells: list[Cell], target: float) -> dict:
    """The smallest measured maxmemory at which some policy reaches `target` (Redis's measured hit
    ratio), with the best policy at that size; else the best cell and a note that more memory is needed."""
    meeting = [cell for cell in cells if cell.hit_ratio >= target]
    if meeting:
        size = min(cell.maxmemory for cell in meeting)
        best = max((cell for cell in meeting if cell.maxmemory == size), key=lambda cell: cell.hit_ratio)
        return {"met": True, "target_hit_ratio": target, "policy": best.policy, "maxmemory": format_size(size),
                "maxmemory_bytes": size, "hit_ratio": best.hit_ratio,
                "reason": f"smallest size tried whose measured hit ratio reaches {target:.3f}"}
    best = max(cells, key=lambda cell: (cell.hit_ratio, -cell.maxmemory))
    largest = max(cell.maxmemory for cell in cells)
    return {"met": False, "target_hit_ratio": target, "policy": best.policy, "maxmemory": format_size(best.maxmemory),
            "maxmemory_bytes": best.maxmemory, "hit_ratio": best.hit_ratio,
            "reason": f"no size tried reaches {target:.3f}: try sizes above {format_size(largest)}"}


def bytes_per_entry(cells: list[Cell]) -> float | None:
    """Measured memory per cached entry (key, value and Redis's overhead), from the cell holding the most keys."""
    full = [cell for cell in cells if cell.keys]
    return max(full, key=lambda cell: cell.keys).bytes_per_entry if full else None


def advice(trace: Trace, cells: list[Cell], value_bytes: int, target: float | None, ttl_seconds: float | None,
           model_latency_seconds: float | None, compulsory: float, warnings: list[str] | None = None) -> dict:
    target = round(DEFAULT_TARGET_SHARE * compulsory, 6) if target is None else target
    return {
        "trace": {"source": trace.source, "requests": trace.requests, "distinct_keys": trace.distinct,
                  "notes": trace.notes},
        "value_bytes": value_bytes,
        "value_bytes_measured": trace.value_bytes is not None,
        "ttl_seconds": ttl_seconds,
        "model_latency_seconds": model_latency_seconds,
        "compulsory_miss_bound": compulsory,
        "bytes_per_entry": bytes_per_entry(cells),
        "cells": [{**cell.as_dict(), "maxmemory_text": format_size(cell.maxmemory)} for cell in cells],
        "recommendation": recommend(cells, target),
        "warnings": list(warnings or []),
    }


def _rate(result: dict) -> str:
    seconds = sum(cell["seconds"] for cell in result["cells"])
    requests = sum(cell["requests"] for cell in result["cells"])
    return f"{requests / seconds:,.0f}" if seconds else "?"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def markdown(result: dict) -> str:
    trace, rec = result["trace"], result["recommendation"]
    per_entry = result["bytes_per_entry"]
    lines = ["# Cache sizing advice (cachedmodel-advise)", "",
             f"Trace: {trace['source']}: {trace['requests']:,} requests, {trace['distinct_keys']:,} distinct keys.",
             f"Values: {result['value_bytes']} bytes ({'measured' if result['value_bytes_measured'] else 'assumed: --value-bytes'})"
             + (f", TTL {result['ttl_seconds']:g} s." if result["ttl_seconds"] else ", no TTL."),
             f"Compulsory-miss bound (no cache size hits more): **{result['compulsory_miss_bound']:.3f}**.",
             f"Bytes per entry in Redis (key, value, overhead; measured): **{per_entry:.0f}**." if per_entry else "",
             "", *(f"**Warning:** {warning}." for warning in result.get("warnings") or []),
             "", "## Recommendation", ""]
    verb = "reaches" if rec["met"] else "does not reach"
    lines.append(f"`maxmemory {rec['maxmemory']}` with `maxmemory-policy {rec['policy']}`: measured hit ratio "
                 f"{rec['hit_ratio']:.3f}, which {verb} the target {rec['target_hit_ratio']:.3f} ({rec['reason']}).")
    latency = result["model_latency_seconds"]
    if latency:
        saved = rec["hit_ratio"] * 1000 * latency
        lines.append(f"Model time saved per 1,000 requests at this size: {saved:.2f} s "
                     f"({rec['hit_ratio'] * 1000:.0f} hits x {latency * 1000:.2f} ms per prediction).")
    lines += ["", "In a CachedModel resource: `spec.redis.maxmemory: " + rec["maxmemory"] + "` and "
              "`spec.redis.maxmemoryPolicy: " + rec["policy"] + "` (see docs/deploying.md).", "",
              "## Measurements", "",
              "Redis = measured on a real redis-server; exact LRU / LFU = simulation at the same number of "
              "entries Redis held (the ideal Redis's sampled eviction approximates).", "",
              "| policy | maxmemory | samples | Redis hit ratio | exact LRU | exact LFU | evicted | refused writes "
              "| keys | used_memory | replay s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in result["cells"]:
        lines.append(f"| {cell['policy']} | {cell['maxmemory_text']} | {cell['maxmemory_samples']} | "
                     f"{cell['hit_ratio']:.3f} | {_ratio(cell['exact_lru_hit_ratio'])} | "
                     f"{_ratio(cell['exact_lfu_hit_ratio'])} | {cell['evicted_keys']:,} | {cell['refused_writes']:,} | "
                     f"{cell['keys']:,} | {human_size(cell['used_memory'])} | {cell['seconds']:.1f} |")
    lines += ["", "## Reading it honestly", "",
              f"- Redis's LRU clock ticks once a second and this replay ran at about {_rate(result)} requests/s, far "
              "faster than most production traffic: keys requested within one second look equally old, so "
              "allkeys-lru and volatile-lru read low here (near allkeys-random) when a cache holds fewer entries "
              "than the replay makes requests per second. Production usually sits between the Redis and the "
              "exact-LRU columns; `--rate` replays at production's rate to measure it. LFU is much less affected "
              "(its counters do not depend on the clock within a minute).",
              "- TTLs run in the replay's wall-clock time: a compressed replay expires less than production does.",
              "- refused writes are SETs Redis answered with OOM (noeviction, or volatile-* with nothing "
              "evictable): the decorator serves those requests from the model and counts a Redis error.",
              "- maxmemory includes Redis's own baseline memory (about 1 MB empty) and client buffers: a size at "
              "or below that baseline holds no entries, so its row reads hit ratio 0 whatever the policy.", ""]
    return "\n".join(line for line in lines if line is not None)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def chart_title(result: dict) -> str:
    """What was replayed: the trace, its request count and the stored value size."""
    trace = result["trace"]
    how = "measured" if result.get("value_bytes_measured") else "assumed"
    return (f"{trace['source']}\n{trace['requests']:,} requests, {trace['distinct_keys']:,} distinct keys, "
            f"{result['value_bytes']:,}-byte values ({how}); one marker per measured size (no interpolation)")


def figure(result: dict):
    """The hit-ratio chart as a matplotlib Figure (the caller saves and closes it).

    Measured cells are markers only: nothing is drawn between two sizes, where nothing was measured. Each
    series has its own marker and a small sideways offset (the x axis is log2), hollow markers for the exact
    simulations, so that series on top of each other (a working set that fits: every policy hits the same)
    all stay visible; the compulsory-miss bound is a dashed line, a bound at every size."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, axes = pyplot.subplots(figsize=(10, 5.5))
    series: dict[tuple[str, int], list[tuple[int, float]]] = {}
    exact: dict[int, float] = {}
    exact_lfu: dict[int, float] = {}
    for cell in result["cells"]:
        series.setdefault((cell["policy"], cell["maxmemory_samples"]), []).append((cell["maxmemory"], cell["hit_ratio"]))
        if cell["exact_lru_hit_ratio"] is not None:
            exact.setdefault(cell["maxmemory"], cell["exact_lru_hit_ratio"])
            exact_lfu.setdefault(cell["maxmemory"], cell["exact_lfu_hit_ratio"])
    samples = {s for _, s in series}
    drawn = [(policy if len(samples) == 1 else f"{policy} (samples {sample})", sorted(points), {})
             for (policy, sample), points in sorted(series.items())]
    if exact:
        hollow = {"color": "grey", "markerfacecolor": "none", "markersize": 9}
        drawn.append(("exact LRU (simulated)", sorted(exact.items()), {**hollow, "marker": "o"}))
        drawn.append(("exact LFU (simulated)", sorted(exact_lfu.items()), {**hollow, "marker": "s"}))
    spread = 0.2  # log2 units from the first series to the last: each marker within 7 % of its size
    for index, (label, points, style) in enumerate(drawn):
        offset = 2 ** (spread * (index / (len(drawn) - 1) - 0.5)) if len(drawn) > 1 else 1.0
        style = {"marker": MARKERS[index % len(MARKERS)], "markersize": 7, "alpha": 0.85, **style}
        axes.plot([size * offset for size, _ in points], [ratio for _, ratio in points], linestyle="none",
                  label=label, **style)
    axes.axhline(result["compulsory_miss_bound"], color="black", linestyle="--", linewidth=1,
                 label="compulsory-miss bound")
    axes.set_xscale("log", base=2)
    sizes = sorted({cell["maxmemory"] for cell in result["cells"]})
    axes.set_xticks(sizes, [format_size(s) for s in sizes])
    axes.minorticks_off()
    if len(sizes) == 1:
        axes.set_xlim(sizes[0] / 2, sizes[0] * 2)
    axes.set_xlabel("maxmemory (markers of one size are spread slightly sideways so none hides another)")
    axes.set_ylabel("hit ratio")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(chart_title(result), fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: hides no marker
    fig.tight_layout()
    return fig


def chart(result: dict, path: Path) -> None:
    from matplotlib import pyplot

    fig = figure(result)
    try:
        fig.savefig(path, dpi=100)
    finally:
        pyplot.close(fig)


def write(result: dict, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "advice.json", directory / "advice.md", directory / "hit_ratio.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown(result))
    chart(result, paths[2])
    return paths
