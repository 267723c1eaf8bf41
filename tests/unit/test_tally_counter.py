"""The per-prediction counters (cachedmodel.metrics.TallyCounter): exact under threads, reads that do not
count, and the same exposition a prometheus_client Counter gives (<name>_total, <name>_created)."""
from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from cachedmodel.metrics import TallyCounter


def test_counts_exactly_across_threads_and_reads_do_not_count():
    registry = CollectorRegistry()
    tally = TallyCounter("t_requests", "x", ["model"], registry=registry).labels(model="m")
    start = threading.Barrier(8)

    def work():
        start.wait()
        for _ in range(20_000):
            tally.inc()
        tally.inc(5)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    readings = [tally.get() for _ in range(100)]  # reads while the threads count
    for thread in threads:
        thread.join()
    assert readings == sorted(readings)  # never goes back
    assert tally.get() == tally.get() == 8 * 20_005
    assert registry.get_sample_value("t_requests_total", {"model": "m"}) == 8 * 20_005
    with pytest.raises(ValueError):
        tally.inc(-1)


def test_exposition_matches_a_prometheus_client_counter():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = TallyCounter("t_hits", "Hits by tier.", ["model", "tier"], registry=ours)
    stock = Counter("t_hits", "Hits by tier.", ["model", "tier"], registry=theirs)
    for counter in (mine, stock):
        counter.labels(model="m", tier="local").inc()
        counter.labels(model="m", tier="redis").inc(3)
    assert mine.labels(model="m", tier="local") is mine.labels(tier="local", model="m")  # resolved once

    def shape(registry) -> list[str]:  # the lines, with the created timestamps' values left out
        return [line.rsplit(" ", 1)[0] if "_created" in line else line
                for line in generate_latest(registry).decode().splitlines()]
    assert shape(ours) == shape(theirs)
