"""A burst stays a hit (issue 20), through the real service process: many concurrent connections (one
request each, `Connection: close`) asking for bodies that are already in Redis are all answered from
the cache, with a small connection pool, no pool_exhausted bypass and no model call; a 10,000-connection
burst keeps the service alive and answering, and hits + misses + bypasses = requests.

It used to be: 1,000 connections over 50 cached bodies, 805-850 bypassed to the model because 50 pooled
connections were busy (pool_exhausted after pool_timeout), and the burst took seconds instead of a
fraction of one. Loopback only; every burst bounded in count and time.
"""
from __future__ import annotations

import resource

import httpx
import pytest
import yaml

from cachedmodel.testing.burst import burst, difference, service_counters
from cachedmodel.testing.model_service import EXAMPLE_CONFIG, MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.redis_server import RedisServer
from insurance_charges_model.workload import workload

pytestmark = pytest.mark.integration

MODEL = "insurance_charges_model"
PREDICTION = f"/api/models/{MODEL}/prediction"
MAX_CONNECTIONS = 4  # per pool: the burst must not need more connections than a trickle
BURST = 1_000        # the burst: 1,000 connections over 50 cached bodies
BIG_BURST = 10_000
OPEN_FILES = BIG_BURST + 2_000  # each side of the 10,000 connections holds one descriptor per connection


@pytest.fixture(scope="module")
def open_files():
    """Raise this process's soft limit of open files (the service inherits it) for the big burst."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES)
    if wanted < OPEN_FILES:
        pytest.fail(f"the 10,000-connection burst needs {OPEN_FILES} open files per process; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def service(open_files, tmp_path_factory):
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["models"][0]["decorators"][0]["configuration"]["max_connections"] = MAX_CONNECTIONS
    config.pop("logging", None)
    path = tmp_path_factory.mktemp("burst") / "rest_config.yaml"
    path.write_text(yaml.safe_dump(config))
    with RedisServer() as store:
        svc = ModelService(config=path, env={"REDIS_URL": store.url})
        try:
            svc.start()
            yield svc
        except BaseException:
            print(svc.logs()[-5000:])
            raise
        finally:
            svc.cleanup()


@pytest.fixture(scope="module")
def bodies(service):
    """50 distinct bodies, each predicted once (stored) and then answered from the cache."""
    cached = workload(50, repeat_share=0.0, seed=20)
    with httpx.Client(base_url=service.url, timeout=15.0) as http:
        for body in cached:
            assert http.post(PREDICTION, json=body).status_code == 200
        for body in cached:
            assert http.post(PREDICTION, json=body).headers["x-cache"] == "hit"
    return cached


def balanced(counts: dict) -> bool:
    return counts.get("requests", 0) == counts.get("hits", 0) + counts.get("misses", 0) + counts.get("bypasses", 0)


def test_a_burst_of_cached_requests_stays_a_hit(service, bodies):
    before = service_counters(service.url, MODEL)
    result = burst(service.port, PREDICTION, bodies, connections=BURST, timeout=30.0, deadline=60.0)
    counts = difference(service_counters(service.url, MODEL), before)
    assert result.statuses == {200: BURST} and not result.failures, result.summary()
    assert result.cache == {"hit": BURST}, result.summary()
    assert counts["bypasses"] == 0 and counts.get("bypass_pool_exhausted", 0) == 0, counts
    assert counts["model_calls"] == 0 and counts["misses"] == 0, counts
    assert counts["hits"] == counts["requests"] == BURST and balanced(counts), counts


@pytest.mark.slow
def test_a_10000_connection_burst_keeps_the_service_alive_and_counted(service, bodies):
    before = service_counters(service.url, MODEL)
    result = burst(service.port, PREDICTION, bodies, connections=BIG_BURST, timeout=45.0, deadline=55.0)
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        assert http.get("/api/health").status_code == 200  # alive ...
        answer = http.post(PREDICTION, json=bodies[0])       # ... and answering
        assert answer.status_code == 200 and answer.headers["x-cache"] == "hit"
    counts = difference(service_counters(service.url, MODEL), before)
    summary = result.summary()
    assert result.answered == BIG_BURST and result.statuses == {200: BIG_BURST}, summary
    assert balanced(counts) and counts["requests"] == BIG_BURST + 1, counts  # every request counted once
    assert counts["hits"] >= 0.99 * counts["requests"], (counts, summary)
    assert counts.get("bypass_pool_exhausted", 0) == 0 and counts["model_calls"] <= 0.01 * BIG_BURST, counts
