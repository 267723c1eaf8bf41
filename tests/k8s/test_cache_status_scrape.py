"""status.cache end to end against a real kube-apiserver: the operator lists the kwok model pods, reads
their /metrics (CACHEDMODEL_METRICS_URL points at a local page server: kwok pods have no real address),
and writes the figures, the printer columns, refused scrapes and staleness, never touching Ready."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cachedmodel_operator import schema
from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(240)]


def page(requests: int, hits: int) -> str:
    return (f'cachedmodel_cache_requests_total{{model="m"}} {requests}\n'
            f'cachedmodel_cache_hits_total{{model="m",tier="redis"}} {hits}\n'
            f'cachedmodel_cache_misses_total{{model="m"}} {requests - hits}\n'
            'cachedmodel_redis_used_memory_bytes{model="m"} 1572864\n'
            'cachedmodel_redis_maxmemory_bytes{model="m"} 67108864\n'
            'cachedmodel_redis_keys{model="m"} 12\n'
            'cachedmodel_redis_evicted_keys_total{model="m"} 3\n'
            'cachedmodel_redis_up{model="m"} 1\n'
            f'cachedmodel_redis_sampled_timestamp_seconds{{model="m"}} {__import__("time").time()}\n')


class Pods:
    """/<namespace>/<pod>/metrics for any pod: counters per pod name, or a status code to refuse with."""

    def __init__(self):
        self.counts: dict[str, tuple[int, int]] = {}
        self.default = (20, 15)
        self.refuse: dict[str, int] = {}  # pod name (or "*") -> HTTP status
        self.asked: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = self.path.strip("/").split("/")
                pod = parts[1] if len(parts) == 3 else ""
                outer.asked.add(pod)
                code = outer.refuse.get(pod) or outer.refuse.get("*")
                body = b"unavailable" if code else page(*outer.counts.get(pod, outer.default)).encode()
                self.send_response(code or 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def pods():
    server = Pods()
    yield server
    server.close()


@pytest.fixture(scope="module")
def operator(kube_cluster, pods):
    install_crd(kube_cluster)
    env = {"CACHEDMODEL_METRICS_URL": f"http://127.0.0.1:{pods.port}/{{namespace}}/{{pod}}/metrics",
           "CACHEDMODEL_SCRAPE_SECONDS": "1", "CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS": "1"}
    process = OperatorProcess(kube_cluster.kubeconfig, resync_seconds=5, scrape=True, extra_env=env).start()
    try:
        yield process
    finally:
        process.stop()


def test_status_cache_sums_the_pods_and_reports_refusals_and_staleness(kube_cluster, k8s_namespace, pods, operator):
    def kubectl(*args, **kwargs):
        return kube_cluster.kubectl(*args, "-n", k8s_namespace, **kwargs)

    body = {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": "shop"},
            "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                               "classPath": "insurance_charges_model.model.InsuranceChargesModel", "replicas": 2}}}
    kubectl("apply", "-f", "-", input=json.dumps(body))

    def status() -> dict:
        found = json.loads(kubectl("get", "cachedmodel", "shop", "-o", "json").stdout)
        return found.get("status") or {}

    def cache() -> dict:
        return status().get("cache") or {}

    def ready() -> str:
        return next((c["status"] for c in status().get("conditions") or [] if c["type"] == "Ready"), "")

    # two ready pods answer 20 predictions, 15 hits each: 40 / 30 = 0.75
    operator.wait(lambda: cache().get("scrapedPods") == "2/2" and cache().get("hitRatio") == 0.75, 90,
                  "status.cache from both model pods")
    figures = cache()
    assert figures["requests"] == 40 and figures["hits"] == 30 and figures["misses"] == 10
    assert figures["usedMemoryBytes"] == 1572864 and figures["maxMemoryBytes"] == 67108864
    assert figures["keys"] == 12 and figures["evictedKeys"] == 3 and figures["memory"] == "1.5Mi/64Mi"
    assert figures["stale"] is False and "scrapeErrors" not in figures and figures["sampledAt"]
    assert all(name.startswith("shop-") for name in pods.asked - {""})
    table = kubectl("get", "cmodel", "shop").stdout.splitlines()
    header = table[0].split()
    assert "RATIO" in header and "MEMORY" in header, table[0]
    assert "0.75" in table[1] and "1.5Mi/64Mi" in table[1], table
    wide = kubectl("get", "cmodel", "shop", "-o", "wide").stdout.splitlines()
    assert "RECENT" in wide[0] and "STALE" in wide[0], wide[0]

    # more traffic on one pod: the recent window sees only the change (20 more, all hits)
    pod_names = sorted(name for name in pods.asked if name.startswith("shop-"))
    pods.counts[pod_names[0]] = (40, 35)
    operator.wait(lambda: (cache().get("recent") or {}).get("hitRatio") == 1.0 and cache().get("requests") == 60,
                  60, "the recent hit ratio over the new predictions")

    # one pod refuses: named in scrapeErrors, the other still counts; Ready does not move
    pods.refuse[pod_names[1]] = 503
    operator.wait(lambda: cache().get("scrapedPods") == "1/2", 60, "one refused scrape reported")
    assert cache()["scrapeErrors"] == [{"pod": pod_names[1], "message": "HTTP 503 from /metrics"}]
    assert ready() == "True"

    # every pod refuses: the last figures stay, marked stale, with their own time
    before = cache()
    pods.refuse["*"] = 503
    operator.wait(lambda: cache().get("stale") is True and cache().get("scrapedPods") == "0/2", 60,
                  "stale figures when no pod answers")
    after = cache()
    assert after["hitRatio"] == before["hitRatio"] and after["sampledAt"] == before["sampledAt"]
    assert "no model pod answered" in after["staleReason"] and ready() == "True"

    # back: fresh again, errors gone
    pods.refuse.clear()
    operator.wait(lambda: cache().get("stale") is False and "scrapeErrors" not in cache(), 60, "fresh figures again")
    assert kubectl("get", "events", "--field-selector", "reason=ReconcileError", "-o", "name").stdout.strip() == ""
