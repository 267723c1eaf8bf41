"""status.cache: parsing the model pods' /metrics, summing pods, the recent window, staleness, the scrape loop."""
from __future__ import annotations

import asyncio
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY, generate_latest

from cachedmodel_operator import cache_metrics as cmx
from cachedmodel_operator.cache_metrics import PodSample, Snapshot
from cachedmodel_operator.controller import Controller, Worker
from cachedmodel_operator.scraper import Scraper
from cachedmodel.testing.processes import free_port, wait_until
from operator_samples import body

NOW = 1_800_000_000.0


def page(requests=10, redis_hits=4, local_hits=1, misses=3, bypass=2, errors=1, used=1_572_864, maxmemory=67_108_864,
         keys=7, evicted=0, up=1, sampled=NOW - 5, model="insurance_charges_model") -> str:
    """A /metrics page as the model service writes it (prometheus_client text format)."""
    return f"""# HELP cachedmodel_cache_requests_total Predictions the cache saw.
# TYPE cachedmodel_cache_requests_total counter
cachedmodel_cache_requests_total{{model="{model}"}} {requests}.0
cachedmodel_cache_requests_created{{model="{model}"}} 1.7e+09
# TYPE cachedmodel_cache_hits_total counter
cachedmodel_cache_hits_total{{model="{model}",tier="redis"}} {redis_hits}.0
cachedmodel_cache_hits_total{{model="{model}",tier="local"}} {local_hits}.0
# TYPE cachedmodel_cache_misses_total counter
cachedmodel_cache_misses_total{{model="{model}"}} {misses}.0
# TYPE cachedmodel_cache_bypass_total counter
cachedmodel_cache_bypass_total{{model="{model}",reason="circuit_open"}} {bypass}.0
cachedmodel_cache_bypass_total{{model="{model}",reason="redis_error"}} 0.0
# TYPE cachedmodel_cache_errors_total counter
cachedmodel_cache_errors_total{{kind="timeout",model="{model}"}} {errors}.0
# TYPE cachedmodel_cache_lookup_seconds histogram
cachedmodel_cache_lookup_seconds_bucket{{le="0.001",model="{model}"}} 3.0
cachedmodel_cache_lookup_seconds_bucket{{le="+Inf",model="{model}"}} 9.0
cachedmodel_cache_lookup_seconds_count{{model="{model}"}} 9.0
cachedmodel_cache_lookup_seconds_sum{{model="{model}"}} 0.004
# TYPE cachedmodel_redis_used_memory_bytes gauge
cachedmodel_redis_used_memory_bytes{{model="{model}"}} {used}.0
# TYPE cachedmodel_redis_maxmemory_bytes gauge
cachedmodel_redis_maxmemory_bytes{{model="{model}"}} {maxmemory}.0
# TYPE cachedmodel_redis_keys gauge
cachedmodel_redis_keys{{model="{model}"}} {keys}.0
# TYPE cachedmodel_redis_evicted_keys counter
cachedmodel_redis_evicted_keys_total{{model="{model}"}} {evicted}.0
# TYPE cachedmodel_redis_up gauge
cachedmodel_redis_up{{model="{model}"}} {up}.0
# TYPE cachedmodel_redis_sampled_timestamp_seconds gauge
cachedmodel_redis_sampled_timestamp_seconds{{model="{model}"}} {sampled}
# TYPE http_requests_total counter
http_requests_total{{method="POST",route="/api/models/{{model_qualified_name}}/prediction",status="200"}} 10.0
"""


def test_a_page_parses_into_the_cache_counters_and_redis_figures():
    sample = cmx.parse_page(page())
    assert sample.counters == {"requests": 10, "hits": 5, "misses": 3, "bypasses": 2, "errors": 1}
    assert sample.redis == {"usedMemoryBytes": 1_572_864, "maxMemoryBytes": 67_108_864, "keys": 7, "evictedKeys": 0}
    assert sample.redis_up and sample.redis_sampled_at == NOW - 5


def test_a_page_of_the_real_library_parses_and_adds_up():
    """The library's own collectors write the page (only this test's model label is kept)."""
    from cachedmodel.metrics import ModelMetrics

    model = f"m{uuid.uuid4().hex[:8]}"
    metrics = ModelMetrics(model)
    for _ in range(6):
        metrics.requests.inc()
    metrics.redis_hits.inc(3)
    metrics.local_hits.inc()
    metrics.misses.inc()
    metrics.bypasses["circuit_open"].inc()
    metrics.errors["connection"].inc()
    text = "\n".join(line for line in generate_latest(REGISTRY).decode().splitlines()
                     if line.startswith("#") or f'model="{model}"' in line) + "\n"
    sample = cmx.parse_page(text)
    assert sample.counters == {"requests": 6, "hits": 4, "misses": 1, "bypasses": 1, "errors": 1}
    assert sample.counters["requests"] == sample.counters["hits"] + sample.counters["misses"] + sample.counters["bypasses"]


@pytest.mark.parametrize("text", ["", "# just a comment\n", 'http_requests_total{method="GET"} 1\n',
                                  "cachedmodel_cache_requests_total{model=} x y z\n", "\x00\x01garbage {{{\n"])
def test_a_page_without_the_cache_series_or_not_prometheus_is_a_parse_error(text):
    with pytest.raises(cmx.ParseError):
        cmx.parse_page(text)


def pod(name, ip="10.0.0.1", ready=True, phase="Running", deleting=False, uid=None):
    meta = {"name": name, "uid": uid or f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


def test_only_ready_running_pods_with_an_address_are_scraped():
    pods = [pod("b", "10.0.0.2"), pod("a", "10.0.0.1"), pod("c", ready=False), pod("d", phase="Pending"),
            pod("e", ip=None), pod("f", deleting=True), pod("g", "fd00::7")]
    targets, ready = cmx.scrape_targets(pods, 8000)
    assert targets == [("uid-a", "a", "10.0.0.1:8000"), ("uid-b", "b", "10.0.0.2:8000"),
                       ("uid-g", "g", "[fd00::7]:8000")]
    assert ready == 3


def sample(requests, hits, misses=None, sampled=NOW - 5, up=True, used=1024, maxmemory=2048):
    misses = requests - hits if misses is None else misses
    return PodSample({"requests": requests, "hits": hits, "misses": misses, "bypasses": requests - hits - misses,
                      "errors": 0},
                     {"usedMemoryBytes": used, "maxMemoryBytes": maxmemory, "keys": 3, "evictedKeys": 1},
                     up, sampled)


def test_pods_are_summed_and_the_ratio_is_hits_over_requests():
    status, history = cmx.cache_status({"p1": sample(30, 20), "p2": sample(10, 4)}, [], 2, NOW, [])
    assert status["requests"] == 40 and status["hits"] == 24 and status["misses"] == 16
    assert status["hitRatio"] == 0.6 and status["scrapedPods"] == "2/2"
    assert status["sampledAt"] == "2027-01-15T08:00:00Z" and status["stale"] is False
    assert "recent" not in status  # no earlier reading yet
    assert len(history) == 1


def test_redis_figures_come_from_the_newest_sample_never_summed():
    status, _ = cmx.cache_status({"p1": sample(1, 1, used=100, sampled=NOW - 20),
                                  "p2": sample(1, 0, used=200, sampled=NOW - 3)}, [], 2, NOW, [])
    assert status["usedMemoryBytes"] == 200 and status["maxMemoryBytes"] == 2048
    assert status["memory"] == "200/2Ki" and status["redisSampledAt"] == cmx.iso(NOW - 3)


def test_no_request_yet_has_no_ratio():
    status, _ = cmx.cache_status({"p1": sample(0, 0)}, [], 1, NOW, [])
    assert "hitRatio" not in status and status["requests"] == 0


def test_the_recent_ratio_is_the_change_since_the_oldest_reading_in_the_window():
    history = []
    _, history = cmx.cache_status({"p1": sample(100, 10)}, [], 1, NOW - 400, history)  # beyond the window
    _, history = cmx.cache_status({"p1": sample(200, 50)}, [], 1, NOW - 240, history)
    _, history = cmx.cache_status({"p1": sample(250, 80)}, [], 1, NOW - 120, history)
    status, history = cmx.cache_status({"p1": sample(300, 140)}, [], 1, NOW, history)
    assert status["recent"] == {"windowSeconds": 240, "requests": 100, "hits": 90, "misses": 10, "hitRatio": 0.9}
    assert status["hitRatio"] == round(140 / 300, 4)
    assert [s.at for s in history] == [NOW - 240, NOW - 120, NOW]  # bounded by the window


def test_a_restarted_pod_counts_from_zero_and_a_new_pod_counts_whole():
    baseline = Snapshot(NOW - 60, {"p1": {"requests": 500, "hits": 400, "misses": 100, "bypasses": 0, "errors": 0},
                                   "gone": {"requests": 50, "hits": 0, "misses": 50, "bypasses": 0, "errors": 0}})
    status, _ = cmx.cache_status({"p1": sample(20, 10), "p3": sample(10, 10)}, [], 2, NOW, [baseline])
    assert status["recent"]["requests"] == 30 and status["recent"]["hits"] == 20  # never negative
    assert status["recent"]["hitRatio"] == round(20 / 30, 4)


def test_refused_scrapes_are_named_and_the_rest_still_counts():
    errors = [(f"pod-{i}", "cannot connect: Connection refused") for i in range(7)]
    status, _ = cmx.cache_status({"p1": sample(10, 5)}, errors, 8, NOW, [])
    assert status["scrapedPods"] == "1/8" and status["requests"] == 10
    assert len(status["scrapeErrors"]) == cmx.MAX_SCRAPE_ERRORS
    assert status["scrapeErrors"][0] == {"pod": "pod-0", "message": "cannot connect: Connection refused"}


def test_no_pod_answering_keeps_the_last_figures_and_says_they_are_stale():
    fresh, history = cmx.cache_status({"p1": sample(10, 5)}, [], 1, NOW - 30, [])
    stale, history_after = cmx.cache_status({}, [("p1", "timed out after 2 s")], 1, NOW, history, fresh)
    assert stale["stale"] is True and "no model pod answered" in stale["staleReason"]
    assert stale["hitRatio"] == 0.5 and stale["sampledAt"] == fresh["sampledAt"]  # the figures' own time
    assert stale["scrapedPods"] == "0/1" and stale["scrapeErrors"] == [{"pod": "p1", "message": "timed out after 2 s"}]
    assert history_after == history
    none, _ = cmx.cache_status({}, [], 0, NOW, [], None)
    assert none == {"stale": True, "staleReason": "no ready model pod to read /metrics from", "scrapedPods": "0/0"}


def test_an_old_or_failing_redis_sample_marks_the_redis_figures_stale():
    old, _ = cmx.cache_status({"p1": sample(1, 1, sampled=NOW - 600)}, [], 1, NOW, [])
    assert old["stale"] is True and "600 s old" in old["staleReason"]
    down, _ = cmx.cache_status({"p1": sample(1, 1, up=False)}, [], 1, NOW, [])
    assert down["stale"] is True and "cachedmodel_redis_up 0" in down["staleReason"]
    never = PodSample({"requests": 1, "hits": 0, "misses": 1, "bypasses": 0, "errors": 0}, {}, False, None)
    status, _ = cmx.cache_status({"p1": never}, [], 1, NOW, [])
    assert "memory" not in status and "no model pod has sampled Redis INFO yet" in status["staleReason"]


@pytest.mark.parametrize("value, text", [(0, "0"), (512, "512"), (1536, "1.5Ki"), (67_108_864, "64Mi"),
                                          (1_572_864, "1.5Mi"), (3 * 1024 ** 3, "3Gi")])
def test_quantities(value, text):
    assert cmx.quantity(value) == text


def test_memory_without_a_limit_says_so():
    assert cmx.memory_text(1024, 0) == "1Ki/nolimit" and cmx.memory_text(None, 5) is None


def test_the_merge_patch_removes_what_the_new_status_dropped():
    old = {"hitRatio": 0.5, "recent": {"hitRatio": 0.2, "requests": 5}, "scrapeErrors": [{"pod": "a"}]}
    new = {"hitRatio": 0.6, "recent": {"requests": 0}}
    assert cmx.merge_patch(old, new) == {"hitRatio": 0.6, "recent": {"requests": 0, "hitRatio": None},
                                         "scrapeErrors": None}
    assert cmx.merge_patch(old, None) is None


# ---- the scraper and the controller's scrape round, against local HTTP servers


class Pages:
    """A local /metrics server: path -> (status, text); `/slow` never answers until released."""

    def __init__(self):
        self.pages: dict[str, tuple[int, str]] = {}
        self.release = threading.Event()
        pages, release = self.pages, self.release

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/slow/metrics":
                    release.wait(10)
                if self.path == "/lag/metrics":  # a pod that takes 0.6 s to answer (simulated latency)
                    threading.Event().wait(0.6)
                    self.path = "/ok/metrics"
                code, text = pages.get(self.path, (404, "not found"))
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:  # the scraper gave up (the timeout case)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pages():
    server = Pages()
    yield server
    server.close()


def test_the_scraper_reads_pages_and_reports_every_failure_without_raising(pages):
    pages.pages["/ok/metrics"] = (200, page())
    pages.pages["/broken/metrics"] = (500, "oops")
    pages.pages["/plain/metrics"] = (200, "http_requests_total 1.0\n")
    closed = free_port()
    scraper = Scraper(timeout=0.5, url="http://127.0.0.1:{port}/{pod}/metrics")

    other = Scraper(timeout=0.5, url="http://127.0.0.1:{port}/metrics")

    async def go():
        try:
            targets = [("u1", "ok", "x"), ("u2", "broken", "x"), ("u3", "plain", "x"), ("u4", "slow", "x")]
            found = await scraper.scrape("ml", targets, pages.port)
            refused = await other.scrape("ml", [("u5", "refused", "x")], closed)
            return found, refused
        finally:
            await scraper.close()
            await other.close()

    (samples, errors), (_, refused) = asyncio.run(go())
    assert list(samples) == ["u1"] and samples["u1"].counters["requests"] == 10
    messages = dict(errors)
    assert messages["broken"] == "HTTP 500 from /metrics"
    assert "no cachedmodel_cache_requests_total" in messages["plain"]
    assert messages["slow"] == "timed out after 0.5 s"
    assert refused[0][0] == "refused" and refused[0][1].startswith("cannot connect")


class FakeKube:
    def __init__(self, pods):
        self.pods = pods
        self.patches: list[dict] = []

    def list_pods(self, namespace, selector):
        assert selector["app.kubernetes.io/component"] == "model"
        return self.pods

    def patch_status(self, namespace, name, status):
        self.patches.append(status)


def test_a_scrape_round_writes_status_cache_only_and_reports_refusals(pages):
    """Two ready pods: one answers, one refuses; the patch touches status.cache alone."""
    pages.pages["/p1/metrics"] = (200, page(requests=8, redis_hits=6, local_hits=0, misses=2, bypass=0,
                                            sampled=__import__("time").time()))
    kube = FakeKube([pod("p1", "127.0.0.1"), pod("p2", "127.0.0.1")])
    ctl = Controller(Scraper(timeout=1, url="http://{address}/{pod}/metrics"))
    ctl.kube = kube
    worker = Worker(body=body(model={"port": pages.port}))

    async def go():
        try:
            return await ctl.scrape_once(("ml", "insurance-charges"), worker)
        finally:
            await ctl.scraper.close()

    status = asyncio.run(go())
    assert kube.patches == [{"cache": status}]
    assert status["hitRatio"] == 0.75 and status["requests"] == 8 and status["scrapedPods"] == "1/2"
    assert status["scrapeErrors"] == [{"pod": "p2", "message": "HTTP 404 from /metrics"}]
    assert worker.cache == status and len(worker.history) == 1


def test_a_disabled_cache_clears_status_cache_once():
    kube = FakeKube([])
    ctl = Controller(Scraper())
    ctl.kube = kube
    worker = Worker(body=body(cache={"enabled": False}))
    worker.cache = {"hitRatio": 0.5}
    asyncio.run(ctl.scrape_once(("ml", "insurance-charges"), worker))
    asyncio.run(ctl.scrape_once(("ml", "insurance-charges"), worker))
    assert kube.patches == [{"cache": None}]


def test_unchanged_figures_are_not_rewritten_every_round():
    ctl = Controller(Scraper())
    worker = Worker(body=body())
    status = {"sampledAt": "a", "requests": 1, "recent": {"windowSeconds": 30, "requests": 0}}
    worker.cache, worker.cache_written_at = status, __import__("time").monotonic()
    assert not ctl._cache_due(worker, {**status, "sampledAt": "b", "recent": {"windowSeconds": 60, "requests": 0}})
    assert ctl._cache_due(worker, {**status, "requests": 2})
    worker.cache_written_at -= 1000
    assert ctl._cache_due(worker, {**status, "sampledAt": "b"})


def test_scraping_is_off_at_zero_seconds():
    assert not Scraper.from_env({"CACHEDMODEL_SCRAPE_SECONDS": "0"}).enabled
    settings = Scraper.from_env({})
    assert settings.enabled and settings.interval == 30 and settings.timeout == 2 and settings.concurrency == 8


def test_the_scrape_loop_survives_errors_and_keeps_going(monkeypatch):
    """A failing round is logged; the loop runs the next one (no exception ends it)."""
    ctl = Controller(Scraper(interval=0.01))
    worker = Worker(body=body())
    calls = []

    async def failing(key, w):
        calls.append(key)
        raise RuntimeError("API away")

    monkeypatch.setattr(ctl, "scrape_once", failing)

    async def go():
        task = asyncio.get_running_loop().create_task(ctl.scrape_loop(("ml", "insurance-charges"), worker))
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while len(calls) < 3 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
        assert not task.done() or task.cancelled()

    asyncio.run(go())
    assert len(calls) >= 3


class Idle(Controller):
    """No reconciles (the worker loop just waits): only the scrape loop's lifecycle is under test."""

    async def run(self, key, worker):
        await asyncio.Event().wait()


@pytest.mark.parametrize("interval", [3600, 0])
def test_each_worker_gets_a_scrape_loop_unless_off_and_deletion_ends_it(interval):
    ctl = Idle(Scraper(interval=interval))
    found = {"cache": {"hitRatio": 0.5}, "conditions": []}

    async def scenario():
        ctl.on_cachedmodel("ADDED", {**body(), "status": found})
        worker = ctl.workers[("ml", "insurance-charges")]
        assert worker.cache == found["cache"], "a restarted operator continues from the status it finds"
        scrape = worker.scrape_task
        assert (scrape is not None and not scrape.done()) if interval else scrape is None
        ctl.on_cachedmodel("DELETED", body())
        await asyncio.sleep(0.01)
        return worker, scrape

    worker, scrape = asyncio.run(scenario())
    assert worker.task.cancelled() and (scrape is None or scrape.cancelled()) and not ctl.workers


def test_a_pod_that_did_not_answer_at_the_baseline_stays_out_of_the_window():
    """p2 refused at the baseline: its whole count since start is not 'recent'."""
    _, history = cmx.cache_status({"p1": sample(100, 50)}, [("two", "refused")], 2, NOW - 120, [],
                                  unanswered=frozenset({"p2"}))
    status, _ = cmx.cache_status({"p1": sample(110, 60), "p2": sample(1000, 0)}, [], 2, NOW, history)
    assert status["recent"]["requests"] == 10 and status["recent"]["hitRatio"] == 1.0
    assert status["requests"] == 1110  # since start: both pods


def test_queued_scrapes_get_their_own_timeout(pages):
    """One slot, three pods answering in 0.6 s each, 1 s timeout: the third waits 1.2 s for its slot, yet
    gets its whole second (a timeout counted from the queue would fail it)."""
    pages.pages["/ok/metrics"] = (200, page())
    scraper = Scraper(timeout=1.0, concurrency=1, url="http://127.0.0.1:{port}/{pod}/metrics")

    async def go():
        try:
            return await scraper.scrape("ml", [(f"u{i}", "lag", "x") for i in range(3)], pages.port)
        finally:
            await scraper.close()

    samples, errors = asyncio.run(go())
    assert len(samples) == 3 and not errors


def test_the_epoch_is_what_the_pods_serve_the_oldest_while_they_roll():
    """status.cache.epoch follows the pods, not the spec: it equals spec.cache.epoch once every pod rolled."""
    from cachedmodel.metrics import ModelMetrics

    model = f"m{uuid.uuid4().hex[:8]}"
    metrics = ModelMetrics(model)
    metrics.requests.inc()
    metrics.epoch.set(4)
    text = "\n".join(line for line in generate_latest(REGISTRY).decode().splitlines()
                     if line.startswith("#") or f'model="{model}"' in line) + "\n"
    assert cmx.parse_page(text).epoch == 4, "the library's gauge is what the operator reads"
    assert cmx.parse_page(page()).epoch is None, "a page without the gauge says nothing about the epoch"
    old, new = sample(3, 1), sample(3, 2)
    old.epoch, new.epoch = 1, 2
    rolling, _ = cmx.cache_status({"p1": old, "p2": new}, [], 2, NOW, [])
    assert rolling["epoch"] == 1
    new_too = sample(1, 1)
    new_too.epoch = 2
    rolled, _ = cmx.cache_status({"p2": new, "p3": new_too}, [], 2, NOW, [])
    assert rolled["epoch"] == 2
    unknown, _ = cmx.cache_status({"p1": sample(1, 1)}, [], 1, NOW, [])
    assert "epoch" not in unknown
