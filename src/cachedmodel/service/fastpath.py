"""The fast path: answer cache hits on the event loop, before the request reaches the threadpool.

rest-model-service's prediction route is a sync callable, so every request costs a threadpool hop,
FastAPI's dependency and response-model machinery, and a blocking Redis GET. For
POST /api/models/<name>/prediction this ASGI layer parses and validates the JSON body with the
model's input schema, awaits `RedisCachingDecorator.aget_cached(data)`, and on a hit answers
directly with the same JSON the route would send (plus `x-cache: hit`). On a miss the decorator
remembers, for this request only (a contextvar that follows it into the route's worker thread), that
the key was just looked up, so the route does not look it up again. Anything else — a miss,
an invalid body, a non-JSON content type, a model without a caching decorator, any error — falls
through to the normal route with the body replayed, so errors and misses behave exactly as without
the fast path (misses are marked `x-cache: miss`).

Only models whose outermost decorator is the caching decorator take the fast path: answering from
the cache must not skip a decorator listed after it.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from pydantic import BaseModel

from cachedmodel.service.errors import is_json_content_type
from cachedmodel.service.http_metrics import FAST_PATH_ROUTE
from cachedmodel.service.inputs import json_schema_integers_adapter

logger = logging.getLogger("cachedmodel.service")

PREFIX = "/api/models/"
SUFFIX = "/prediction"
MAX_FAST_BODY = 64 * 1024  # larger bodies go straight to the route


def model_name_of(path: str) -> str | None:
    """'/api/models/<name>/prediction' -> '<name>' (pure)."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX) and len(path) > len(PREFIX) + len(SUFFIX):
        name = path[len(PREFIX):-len(SUFFIX)]
        return None if "/" in name else name
    return None


def render_json(content: Any) -> bytes:
    """Byte-identical to starlette's JSONResponse.render."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def output_body(output: Any) -> bytes:
    """A prediction's response body, in pydantic's JSON mode (datetime, Decimal, UUID, bytes, enums as
    their JSON forms; NaN and +-Inf still refused): the prediction route sends the same bytes."""
    return render_json(output.model_dump(mode="json") if isinstance(output, BaseModel) else output)


class RenderedAnswers:
    """One model's hit answers by the bytes of their cache entry: decoding an entry, validating it into
    the output schema and rendering that as JSON is a third of a hit's own CPU, and hot entries are hit
    again and again. The answer is a pure function of the entry's bytes (the codec and the output
    schema are fixed per decorator), so it is kept by them. Bounded: entries up to MAX_ENTRY_BYTES,
    answers up to MAX_ANSWER_BYTES, and when `max_entries` are kept the map starts over (a dict clear
    is cheaper per hit than LRU bookkeeping, and the hot entries come back at once)."""

    MAX_ENTRY_BYTES = 1024
    MAX_ANSWER_BYTES = 4096

    def __init__(self, max_entries: int = 2048):
        self.max_entries = max_entries
        self._answers: dict[bytes, bytes] = {}

    def __call__(self, entry: bytes, build_output: Callable[[bytes], Any]) -> bytes:
        """The decorator's `build` hook: the answer for an entry's bytes (decoded and rendered once)."""
        answer = self._answers.get(entry)
        if answer is None:
            answer = output_body(build_output(entry))
            if len(entry) <= self.MAX_ENTRY_BYTES and len(answer) <= self.MAX_ANSWER_BYTES:
                if len(self._answers) >= self.max_entries:
                    self._answers.clear()
                self._answers[entry] = answer
        return answer

    def __len__(self) -> int:
        return len(self._answers)


class PredictionFastPath:
    """ASGI middleware; `resolve(name)` returns the hit-capable decorator for a model, or None."""

    def __init__(self, app, resolve: Callable[[str], Any], unavailable: Callable[[], str | None],
                 close_clients: Callable[[], Any] | None = None):
        self.app = app
        self.resolve = resolve
        self.unavailable = unavailable  # why predictions cannot be served yet (None once models are loaded)
        self.close_clients = close_clients
        self._answers: dict[Any, RenderedAnswers] = {}  # per decorator (resolve() keeps them for good)

    def _answers_of(self, target) -> RenderedAnswers:
        answers = self._answers.get(target)
        if answers is None:
            answers = self._answers[target] = RenderedAnswers()
        return answers

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, self._closing_on_shutdown(receive), send)
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        name = model_name_of(scope["path"])
        if name is None:
            return await self.app(scope, receive, send)
        reason = self.unavailable()
        if reason is not None:
            return await _send_bytes(send, 503, render_json({"type": "ServiceUnavailable", "messages": [reason]}))
        target = self.resolve(name)
        if target is None or not is_json_content_type(_header(scope, b"content-type")):
            return await self.app(scope, receive, send)

        body, complete = await _read_body(receive, MAX_FAST_BODY)
        replay = _replaying(body, complete, receive)
        if not complete or len(body) > MAX_FAST_BODY:  # (BodyLimits hands over whole bodies in one piece)
            return await self.app(scope, replay, send)
        try:
            data = target.input_schema.model_validate_json(body)
        except Exception:  # noqa: BLE001 - ValidationError, or a validator's own bug: the route answers
            try:  # what the route also accepts: 20.0 for an integer field (JSON Schema's integer)
                data = json_schema_integers_adapter(target.input_schema).validate_json(body)
            except Exception:  # noqa: BLE001
                return await self.app(scope, replay, send)  # (the 4xx naming the field, or a shaped 500)
        # None on a miss or any cache error (an entry that cannot be rendered included); remember_miss: the
        # route's predict() then takes this lookup's answer instead of asking Redis again (one GET per
        # request, at most one Redis timeout)
        payload = await target.aget_cached(data, remember_miss=True, build=self._answers_of(target))
        if payload is None:
            return await self.app(scope, replay, _with_header(send, b"x-cache", b"miss"))
        scope[FAST_PATH_ROUTE] = scope["path"]  # a real route's path (resolve() checked): the metrics label
        await _send_bytes(send, 200, payload, extra=((b"x-cache", b"hit"),))

    def _closing_on_shutdown(self, receive):
        """Close the decorators' async Redis clients on this loop before the app reports shutdown."""
        async def wrapped():
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.close_clients is not None:
                try:
                    await self.close_clients()
                except Exception:  # noqa: BLE001 - shutdown must go on
                    logger.exception("closing the cache clients failed")
            return message
        return wrapped


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive, limit: int) -> tuple[bytes, bool]:
    """Read up to `limit` bytes; complete=False if there is more (the rest stays unread for the route)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # client went away: let the app see it
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def _replaying(body: bytes, complete: bool, receive):
    """A receive() that first hands back what was already read, then continues with the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replay():
        if pending:
            return pending.pop()
        return await receive()
    return replay


def _with_header(send, name: bytes, value: bytes):
    async def sending(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (name, value)]}
        await send(message)
    return sending


async def _send_bytes(send, status: int, payload: bytes, extra: tuple = ()) -> None:
    headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
