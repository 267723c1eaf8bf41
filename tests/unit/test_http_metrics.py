"""HTTP metrics count a request the client abandoned as 499, not as a server error."""
import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from cachedmodel.service import http_metrics


@pytest.fixture
def counted(monkeypatch):
    registry = CollectorRegistry()
    requests = Counter("t_http_requests_total", "t", ["method", "route", "status"], registry=registry)
    monkeypatch.setattr(http_metrics, "REQUESTS", requests)
    monkeypatch.setattr(http_metrics, "LATENCY", Histogram("t_http_seconds", "t", ["method", "route", "status"],
                                                             registry=registry))

    def statuses() -> dict[str, float]:
        return {sample.labels["status"]: sample.value for metric in registry.collect()
                for sample in metric.samples if sample.name == "t_http_requests_total"}
    return statuses


def run(app) -> None:
    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        pass

    scope = {"type": "http", "method": "POST", "path": "/x"}
    asyncio.run(http_metrics.HttpMetricsMiddleware(app, route_name=lambda scope: "/x")(scope, receive, send))


async def answers(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def client_left(scope, receive, send):
    assert (await receive())["type"] == "http.disconnect"  # returns without answering


async def cancelled(scope, receive, send):
    raise asyncio.CancelledError


async def fails(scope, receive, send):
    raise RuntimeError("boom")


def test_answers_disconnects_and_errors_are_told_apart(counted):
    run(answers)
    run(client_left)
    with pytest.raises(asyncio.CancelledError):
        run(cancelled)
    with pytest.raises(RuntimeError):
        run(fails)
    assert counted() == {"200": 1.0, "499": 2.0, "500": 1.0}
