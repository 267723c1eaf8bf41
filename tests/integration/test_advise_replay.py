"""cachedmodel-advise against real redis-servers: a working set that fits gives exactly the compulsory-miss
bound; hit ratio never falls as maxmemory grows (LRU-like policies); batching keys into one script call
measures what one request per call measures; the CLI writes advice.json/md/png; the model service's key
trace (CACHEDMODEL_KEY_TRACE) holds the keys the decorator computes, in request order."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import httpx
import pytest

from cachedmodel.advise import simulate, traces
from cachedmodel.advise.replay import replay
from cachedmodel.testing.model_service import EXAMPLE_CONFIG, MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.redis_server import RedisServer, wait_until

pytestmark = pytest.mark.integration
MB = 1024 * 1024


@pytest.fixture(scope="module")
def small_trace():
    return traces.zipf(0.9, 20_000, 40_000, seed=11)


@pytest.mark.parametrize("policy, keys_per_call", [("allkeys-lru", 1), ("allkeys-lfu", 16), ("noeviction", 1),
                                                    ("volatile-ttl", 8)])
def test_a_working_set_that_fits_gives_exactly_the_compulsory_miss_bound(policy, keys_per_call):
    trace = traces.zipf(1.0, 2_000, 20_000, seed=1)
    cell = replay(trace, 64 * MB, policy, 200, ttl_seconds=3600 if policy.startswith("volatile") else None,
                  keys_per_call=keys_per_call)
    assert cell.hits == trace.requests - trace.distinct
    assert cell.hit_ratio == simulate.compulsory_miss_bound(trace.ids)
    assert (cell.evicted_keys, cell.refused_writes, cell.keys) == (0, 0, trace.distinct)
    assert 200 < cell.bytes_per_entry < 450  # a 29-byte key, a 200-byte value, Redis's overhead (+ the TTL)


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu"])
def test_hit_ratio_never_falls_as_maxmemory_grows(small_trace, policy):
    cells = [replay(small_trace, size, policy, 200) for size in (int(1.3 * MB), 2 * MB, 4 * MB, 8 * MB)]
    ratios = [cell.hit_ratio for cell in cells]
    assert ratios == sorted(ratios), ratios
    assert cells[0].evicted_keys > 0 and ratios[0] < ratios[-1]  # the smallest size really evicts
    assert ratios[-1] <= simulate.compulsory_miss_bound(small_trace.ids)


@pytest.mark.parametrize("policy", ["allkeys-lfu", "allkeys-random", "noeviction"])
def test_batching_keys_per_script_call_measures_what_one_key_per_call_measures(small_trace, policy):
    one = replay(small_trace, 2 * MB, policy, 200, keys_per_call=1)
    batched = replay(small_trace, 2 * MB, policy, 200, keys_per_call=16)
    assert one.evicted_keys + one.refused_writes > 5_000  # the cache is under pressure
    assert abs(one.hit_ratio - batched.hit_ratio) < 0.01, (one.hit_ratio, batched.hit_ratio)
    assert abs(one.keys - batched.keys) < 0.02 * one.keys


def test_noeviction_refuses_writes_when_full_and_hits_still_count(small_trace):
    cell = replay(small_trace, int(1.5 * MB), "noeviction", 200)
    assert cell.refused_writes > 0 and cell.evicted_keys == 0
    assert cell.hits + cell.refused_writes + cell.keys == small_trace.requests  # a miss either stored or refused


def test_the_cli_writes_advice_json_md_and_png(tmp_path):
    out = tmp_path / "advice"
    result = subprocess.run([sys.executable, "-m", "cachedmodel.advise.cli", "--zipf", "0.9", "--distinct", "5000",
                             "--requests", "20000", "--value-bytes", "150", "--sizes", "1200kb,2mb,8mb",
                             "--policies", "allkeys-lru,allkeys-lfu", "--target-hit-ratio", "0.5",
                             "--model-latency-ms", "20", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    advice = json.loads((out / "advice.json").read_text())
    assert len(advice["cells"]) == 6
    for cell in advice["cells"]:
        assert {"policy", "maxmemory", "hit_ratio", "evicted_keys", "keys", "used_memory"} <= set(cell)
        assert cell["exact_lru_hit_ratio"] is not None and cell["exact_lfu_hit_ratio"] is not None
    bound = advice["compulsory_miss_bound"]
    fitting = [c for c in advice["cells"] if c["maxmemory"] == 8 * MB]
    assert all(c["hit_ratio"] == bound and c["evicted_keys"] == 0 for c in fitting)
    rec = advice["recommendation"]
    assert rec["met"] and rec["hit_ratio"] >= 0.5 and rec["maxmemory"] in ("1200kb", "2mb", "8mb")
    markdown = (out / "advice.md").read_text()
    assert f"`maxmemory {rec['maxmemory']}`" in markdown and "Model time saved per 1,000 requests" in markdown
    assert "spec.redis.maxmemoryPolicy" in markdown
    assert (out / "hit_ratio.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "replay" in result.stderr  # the progress bar


@pytest.fixture(scope="module")
def _model_artifact():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)


def test_the_model_service_key_trace_holds_the_decorators_keys_in_request_order(tmp_path, _model_artifact):
    from insurance_charges_model.workload import workload

    from cachedmodel.advise.offline import build_decorator
    bodies = workload(30, repeat_share=0.5, seed=3)
    trace_file = tmp_path / "keys.txt"
    with RedisServer() as redis_server:
        service = ModelService(env={"REDIS_URL": redis_server.url, "CACHEDMODEL_KEY_TRACE": str(trace_file)})
        try:
            service.start()
            with httpx.Client(timeout=30) as client:
                for body in bodies:
                    assert client.post(service.prediction_url(), json=body).status_code == 200
            wait_until(lambda: len(trace_file.read_bytes().splitlines()) == len(bodies), 10,
                       what="one trace line per prediction")
        finally:
            logs = service.logs()
            service.cleanup()
    decorator = build_decorator(EXAMPLE_CONFIG)
    try:
        expected = [decorator.cache_key(body) for body in bodies]
    finally:
        decorator.close()
    assert trace_file.read_text().splitlines() == expected, logs
    assert stat.S_IMODE(os.stat(trace_file).st_mode) == 0o600
    trace = traces.read_keys(trace_file)  # what `cachedmodel-advise --keys` reads: the keys as they are
    assert trace.keys[0] == expected[0].encode() and trace.requests == len(bodies)


def test_the_cli_keys_request_bodies_with_the_config_and_measures_the_value(tmp_path, _model_artifact):
    from insurance_charges_model.workload import workload
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text("".join(json.dumps(body) + "\n" for body in workload(3000, repeat_share=0.6, seed=5)))
    out = tmp_path / "advice"
    result = subprocess.run([sys.executable, "-m", "cachedmodel.advise.cli", "--requests", str(bodies), "--config",
                             str(EXAMPLE_CONFIG), "--sample", "5", "--sizes", "1100kb,4mb", "--policies",
                             "allkeys-lfu", "--out", str(out), "--no-progress"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    advice = json.loads((out / "advice.json").read_text())
    assert advice["value_bytes_measured"] and 5 <= advice["value_bytes"] <= 64  # one float, MessagePack
    assert advice["model_latency_seconds"] > 0 and "Model time saved" in (out / "advice.md").read_text()
    assert advice["trace"]["requests"] == 3000
    assert advice["cells"][-1]["hit_ratio"] == advice["compulsory_miss_bound"]  # 4mb holds every key


def test_the_cli_names_the_bad_line_of_a_request_file(tmp_path, _model_artifact):
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_text('{"age": 30}\n')
    result = subprocess.run([sys.executable, "-m", "cachedmodel.advise.cli", "--requests", str(bodies), "--config",
                             str(EXAMPLE_CONFIG), "--out", str(tmp_path / "advice")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{bodies}:1: not a valid input" in result.stderr and "Traceback" not in result.stderr


def test_a_size_below_the_empty_redis_memory_is_warned_about_once_by_name(tmp_path):
    """512kb is less than an empty redis-server uses (~0.9 MB): its cells hold nothing and read hit ratio 0;
    the run says so, naming the size, on stderr and in advice.json / advice.md (one warning per size)."""
    out = tmp_path / "advice"
    result = subprocess.run([sys.executable, "-m", "cachedmodel.advise.cli", "--zipf", "0.9", "--distinct", "2000",
                             "--requests", "6000", "--value-bytes", "150", "--sizes", "512kb,4mb",
                             "--policies", "allkeys-lru,allkeys-lfu", "--out", str(out), "--no-progress"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("cachedmodel-advise: warning: maxmemory 512kb "), result.stderr
    advice = json.loads((out / "advice.json").read_text())
    small = [cell for cell in advice["cells"] if cell["maxmemory"] == 512 * 1024]
    assert len(small) == 2 and all(cell["keys"] == 0 and cell["hit_ratio"] == 0 for cell in small)
    assert all(cell["baseline_memory"] >= 512 * 1024 for cell in small)
    assert len(advice["warnings"]) == 1 and "512kb" in advice["warnings"][0]
    assert advice["warnings"][0] in (out / "advice.md").read_text()
