"""Copy the benchmark results into the docs, so every published figure is a committed one.

docs/benchmarks.md holds one block per benchmark between `<!-- bench:<name>:begin -->` and
`<!-- bench:<name>:end -->`: bench/results/<name>.md without its title, headings demoted. The
README holds one `bench:summary` block: a few headline figures read from bench/results/*.json.
`make bench` refreshes both, and a unit test fails when a block and its results files disagree.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from bench.common import RESULTS_DIR

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"
SUMMARY_SOURCES = ("decorator", "service", "operator", "faults", "topologies", "batches", "pods")


def markers(name: str) -> tuple[str, str]:
    source = "bench/results/*.json" if name == "summary" else f"bench/results/{name}.md"
    return f"<!-- bench:{name}:begin (generated from {source} by `make bench`) -->", f"<!-- bench:{name}:end -->"


def _wrap(name: str, body: str) -> str:
    begin, end = markers(name)
    return f"{begin}\n{body}\n{end}"


def block(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The docs block of one benchmark: its results Markdown, title dropped, headings demoted."""
    lines = (results_dir / f"{name}.md").read_text(encoding="utf-8").strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join("##" + line if re.match(r"^#{1,3} ", line) else line for line in lines).strip()
    return _wrap(name, body)


def summary(results_dir: Path = RESULTS_DIR) -> str:
    """The README's headline table, from the three benchmarks' JSON results."""
    def load(name: str) -> dict:
        return json.loads((results_dir / f"{name}.json").read_text(encoding="utf-8"))

    decorator, service, operator = load("decorator"), load("service"), load("operator")
    faults, pods, topologies, batches = load("faults"), load("pods"), load("topologies"), load("batches")
    flights = batches["shared_single_flight"]
    by_mode = {row["mode"]: row for row in topologies["latency"]}
    events = {row["fault"]: row for row in topologies["events"]}
    checks, best, ratios = decorator["checks"], service["best"], service["ratios"]
    stampede = {row["single_flight"]: row["model_calls"] for row in decorator["stampede"]}
    rows = [
        ("Redis hit, p50 latency vs a raw redis-py GET", f"{checks['redis_hit_p50_ratio']:.2f}x",
         "bench_decorator"),
        ("in-process tier hit, p50: best round (median round)",
         f"{checks['local_hit_p50_us']:.1f} µs ({checks['local_hit_p50_us_median_round']:.1f} µs; target 3 µs)",
         "bench_decorator"),
        ("Redis bytes per entry vs a naive JSON scheme", f"{checks['bytes_ratio']:.2f}x", "bench_decorator"),
        ("model calls for 64 concurrent identical misses", f"{stampede[True]} (without single-flight: "
         f"{stampede[False]})", "bench_decorator"),
        ("HTTP cache hits vs stock rest-model-service with a no-op model, req/s",
         f"{ratios['hit_vs_stock_noop']:.2f}x ({best['c']['rps']:.0f} vs {best['a']['rps']:.0f})", "bench_service"),
        ("HTTP cache hits vs the real model uncached, req/s", f"{ratios['hit_vs_model']:.0f}x", "bench_service"),
        ("HTTP cache hits vs the floor (bare ASGI app: body, JSON, one redis.asyncio GET), req/s",
         f"{ratios['hit_vs_floor']:.2f}x (target 0.85x)", "bench_service"),
        ("1,000-connection burst over 50 cached bodies: hits, model calls; burst seconds vs the floor",
         f"{service['burst']['hit_share']:.0%}, {service['burst']['totals']['model_calls']}; "
         f"{ratios['burst_vs_floor_seconds']:.2f}x (target ≤ 2x)", "bench_service"),
        ("operator: apply → every child present, p50", f"{operator['apply']['children']['p50_s']:.2f} s",
         "bench_operator"),
        (f"operator: {operator['scale']['cachedmodels']} CachedModels all Ready",
         f"{operator['scale']['all_ready_s']:.1f} s", "bench_operator"),
        (f"{len(faults['faults'])} kinds of Redis fault under HTTP load: failed / wrong predictions",
         f"{faults['totals']['non_200']} / {faults['totals']['wrong']} of {faults['totals']['requests']:,}",
         "bench_faults"),
        ("hit through Sentinel / Redis Cluster, p50 vs a raw redis-py GET on the same topology",
         f"{by_mode['sentinel']['p50_ratio_vs_raw_get']:.2f}x / {by_mode['cluster']['p50_ratio_vs_raw_get']:.2f}x",
         "bench_topologies"),
        ("primary killed under HTTP load → hits on every body again: Sentinel / Cluster (failed predictions)",
         f"{events['sentinel-kill-primary']['all_hits_s']:.1f} s / {events['cluster-kill-primary']['all_hits_s']:.1f} s "
         f"({events['sentinel-kill-primary']['non_200'] + events['cluster-kill-primary']['non_200']})",
         "bench_topologies"),
        ("64 identical misses over 4 processes: model calls with / without shared_single_flight",
         f"{flights['true']['model_calls']} / {flights['false']['model_calls']}", "bench_batches"),
        ("100-row batch, all rows cached: per-row path vs one GET per row, p50",
         f"{batches['batch_index']['1.0|per-row path (MGET + pipelined SET)']:.1f} ms vs "
         f"{batches['batch_index']['1.0|one GET per row']:.1f} ms", "bench_batches"),
        ("real pods: apply → first cached prediction served, p50", f"{pods['apply_to_first_hit']['p50_s']:.1f} s",
         "bench_pods"),
        ("real pods: Redis pod deleted → hits again, p50 (failed predictions meanwhile)",
         f"{pods['redis_deleted_to_hits']['p50_s']:.1f} s ({pods['failed_predictions_during_redis_outage']})",
         "bench_pods"),
    ]
    table = ["| measure | result | benchmark |", "|---|---|---|"]
    table += [f"| {measure} | {result} | `bench/{module}.py` |" for measure, result, module in rows]
    return _wrap("summary", "\n".join(table))


def names_in(text: str) -> list[str]:
    return re.findall(r"<!-- bench:([a-z_]+):begin", text)


def _replace(text: str, name: str, new_block: str) -> str:
    begin, end = markers(name)
    pattern = re.compile(re.escape(begin.split(" (")[0]) + r".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: new_block, text, count=1) if pattern.search(text) else text


def render(text: str, names: list[str] | None = None, results_dir: Path = RESULTS_DIR) -> str:
    """`text` with the blocks of `names` (default: every block it has) regenerated from the results."""
    for name in names or names_in(text):
        if name == "summary":
            if all((results_dir / f"{n}.json").exists() for n in SUMMARY_SOURCES):
                text = _replace(text, name, summary(results_dir))
        elif (results_dir / f"{name}.md").exists():
            text = _replace(text, name, block(name, results_dir))
    return text


def update(names: list[str] | None = None) -> None:
    """Refresh the given benchmarks' blocks in docs/benchmarks.md and the README's summary."""
    BENCHMARKS_DOC.write_text(render(BENCHMARKS_DOC.read_text(encoding="utf-8"), names), encoding="utf-8")
    README.write_text(render(README.read_text(encoding="utf-8"), ["summary"]), encoding="utf-8")


if __name__ == "__main__":
    update()
