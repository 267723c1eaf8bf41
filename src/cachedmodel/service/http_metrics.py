"""HTTP request metrics (count and latency by method, route template and status) and the /metrics endpoint.

A small pure-ASGI middleware rather than a dependency: it sits outermost so that answers from the
hit fast path are counted like any other. Everything lands in prometheus_client's default
registry, next to the decorator's cache metrics, and /metrics exposes that registry.
"""
from __future__ import annotations

import time
from typing import Callable

from prometheus_client import REGISTRY, CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from cachedmodel.metrics import TallyCounter

REQUESTS = TallyCounter("http_requests", "HTTP requests answered, by method, route template and status.",
                        ["method", "route", "status"])
LATENCY = Histogram("http_request_duration_seconds", "Time to answer an HTTP request, by method, route and status.",
                    ["method", "route", "status"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
UNMATCHED = "<unmatched>"
CLIENT_GONE = 499  # no answer was sent because the client went away first (nginx's "client closed request")
_CACHE_LIMIT = 1024  # label sets whose children are kept resolved


FAST_PATH_ROUTE = "cachedmodel.route"  # scope key the fast path sets when it answers without routing


def route_name(scope: dict) -> str:
    """The route template that served the request ('/api/models/{model_qualified_name}/metadata'), so
    labels stay few: FastAPI leaves the matched route in the scope; the fast path leaves its path."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
    return scope.get(FAST_PATH_ROUTE, UNMATCHED)


class HttpMetricsMiddleware:
    """Counts and times every HTTP request (not lifespan or websockets)."""

    def __init__(self, app, route_name: Callable[[dict], str] = route_name):
        self.app = app
        self.route_name = route_name
        self._children: dict[tuple, tuple] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = None

        async def send_and_note_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        except Exception:
            status = status or 500  # the server answers an escaped error with a 500
            raise
        finally:  # returned or cancelled without a response: the client left, nothing failed
            self._record(scope, status or CLIENT_GONE, time.perf_counter() - started)

    def _record(self, scope, status: int, seconds: float) -> None:
        labels = (scope["method"], self.route_name(scope), str(status))
        children = self._children.get(labels)
        if children is None:
            children = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
            if len(self._children) < _CACHE_LIMIT:
                self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of the default registry (cache + HTTP metrics)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
