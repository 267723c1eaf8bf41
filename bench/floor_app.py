"""The floor of an HTTP cache hit, for bench_service: a bare ASGI app on the same uvicorn that reads the
body, parses the JSON and does one redis.asyncio GET (of the key REDIS_FLOOR_KEY), answering its bytes.
No validation, no key digest, no decoding, no metrics: what any cache-hit path must at least do.
REDIS_FLOOR_MAX_CONNECTIONS (redis-py's default, 100, when unset): the client's pool size; the burst of
bench_service sets it to the burst's size, so each request has a connection of its own and none fails
with redis-py's "Too many connections" (its pool does not wait)."""
from __future__ import annotations

import json
import os

import redis.asyncio

_client = None


async def app(scope, receive, send):
    global _client
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                size = os.environ.get("REDIS_FLOOR_MAX_CONNECTIONS")
                _client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"],
                                                       max_connections=int(size) if size else None)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    json.loads(body)
    value = await _client.get(os.environ["REDIS_FLOOR_KEY"])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(value)).encode())]})
    await send({"type": "http.response.body", "body": value})
