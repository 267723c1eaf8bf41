"""An HTTP burst for tests and benchmarks: N concurrent POSTs to a loopback service, one TCP connection
each (`Connection: close`), all started at once, each bounded by a client timeout and the whole burst by
a deadline. Reports every answer's status and `x-cache` header, the failures by kind, latencies and the
seconds the whole burst took. Raw asyncio sockets: no HTTP client library caps the connections.

Also `service_counters(url)`: the cache and model counters of a service's /metrics, to take the
difference around a burst (requests, hits, misses, bypasses by reason, model calls).
"""
from __future__ import annotations

import asyncio
import collections
import json
import re
import time
import urllib.request
from dataclasses import dataclass, field

_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")
_X_CACHE = re.compile(rb"\r\nx-cache: *([a-z]+)", re.IGNORECASE)


@dataclass
class BurstResult:
    requests: int
    seconds: float                                   # first connect to last answer (or the deadline)
    statuses: collections.Counter = field(default_factory=collections.Counter)   # status -> answers
    cache: collections.Counter = field(default_factory=collections.Counter)      # x-cache value -> answers
    failures: collections.Counter = field(default_factory=collections.Counter)   # no answer: exception kind
    latencies: list = field(default_factory=list)    # seconds, of the answered requests

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the answered requests' latencies (seconds); 0 when none."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]

    def summary(self) -> dict:
        return {"requests": self.requests, "answered": self.answered, "ok": self.statuses.get(200, 0),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "x_cache": dict(sorted(self.cache.items())), "failures": dict(sorted(self.failures.items())),
                "seconds": round(self.seconds, 3), "p50_ms": round(self.percentile(0.5) * 1000, 1),
                "p99_ms": round(self.percentile(0.99) * 1000, 1)}


def request_bytes(path: str, body: dict | bytes, host: str = "127.0.0.1") -> bytes:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload


async def _one(host: str, port: int, request: bytes, timeout: float, result: BurstResult) -> None:
    started = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            answer = await reader.read()  # Connection: close -> the whole response, then EOF
        status = _STATUS.match(answer)
        if status is None:
            result.failures["no_response" if not answer else "bad_response"] += 1
            return
        result.latencies.append(time.perf_counter() - started)
        result.statuses[int(status.group(1))] += 1
        head = answer.split(b"\r\n\r\n", 1)[0]
        cache = _X_CACHE.search(head)
        result.cache[cache.group(1).decode().lower() if cache else "none"] += 1
    except TimeoutError:
        result.failures["timeout"] += 1
    except OSError as error:
        result.failures[type(error).__name__] += 1
    finally:
        if writer is not None:
            writer.close()


async def aburst(port: int, path: str, bodies: list, connections: int, timeout: float = 30.0,
                 deadline: float = 120.0, host: str = "127.0.0.1") -> BurstResult:
    """`connections` concurrent POSTs of bodies[i % len(bodies)] to http://host:port/path; one connection
    each, every request bounded by `timeout` and the burst by `deadline` seconds (unfinished ones count
    as failures "deadline")."""
    if not host.startswith("127."):
        raise ValueError(f"bursts go to loopback only, not {host}")
    requests = [request_bytes(path, bodies[index % len(bodies)], host) for index in range(connections)]
    result = BurstResult(requests=connections, seconds=0.0)
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(_one(host, port, request, timeout, result)) for request in requests]
    done, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
        result.failures["deadline"] += len(pending)
    result.seconds = time.perf_counter() - started
    return result


def burst(port: int, path: str, bodies: list, connections: int, timeout: float = 30.0, deadline: float = 120.0,
          host: str = "127.0.0.1") -> BurstResult:
    """aburst() on a fresh event loop (for synchronous tests and benchmarks)."""
    return asyncio.run(aburst(port, path, bodies, connections, timeout, deadline, host))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def service_counters(url: str, model: str | None = None, timeout: float = 10.0) -> dict:
    """Sums of the cache counters on `url`/metrics (of one model's label, or all): requests, hits,
    misses, bypasses (and by reason), errors, model_calls."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as response:
        text = response.read().decode()
    counts: dict = collections.defaultdict(float)
    names = {"cachedmodel_cache_requests_total": "requests", "cachedmodel_cache_hits_total": "hits",
             "cachedmodel_cache_misses_total": "misses", "cachedmodel_cache_bypass_total": "bypasses",
             "cachedmodel_cache_errors_total": "errors", "cachedmodel_model_seconds_count": "model_calls"}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) not in names:
            continue
        labels = match.group(2) or ""
        if model is not None and f'model="{model}"' not in labels:
            continue
        name = names[match.group(1)]
        counts[name] += float(match.group(3))
        if name == "bypasses":
            reason = re.search(r'reason="([^"]+)"', labels)
            counts["bypass_" + (reason.group(1) if reason else "unknown")] += float(match.group(3))
    return dict(counts)


def difference(after: dict, before: dict) -> dict:
    """after - before, key by key (both from service_counters)."""
    return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in sorted(set(after) | set(before))}
