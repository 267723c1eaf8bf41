"""Single-flight: concurrent calls for the same key in one process share one execution.

The first caller (the leader) runs the function; callers arriving meanwhile wait and get its result,
or the same exception. The key is released as soon as the leader finishes, success or not, so a
failing model never leaves waiters or a stale entry behind.
"""
from __future__ import annotations

import threading
from typing import Any, Callable


class _Call:
    __slots__ = ("done", "result", "error", "waiters")

    def __init__(self):
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight:
    def __init__(self):
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}

    def do(self, key: str, function: Callable[[], Any]) -> tuple[Any, bool]:
        """Run `function` once per concurrent burst of `key`; returns (result, shared)."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = _Call()
            else:
                call.waiters += 1
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result, True
        try:
            call.result = function()
        except BaseException as error:
            call.error = error
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result, False

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)
