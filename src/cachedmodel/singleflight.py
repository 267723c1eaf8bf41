"""Single-flight: concurrent calls for the same key in one process share one execution.

The first caller (the leader) runs the function; callers arriving meanwhile wait and get its result,
or the same exception. The key is released as soon as the leader finishes, success or not, so a
failing model never leaves waiters or a stale entry behind.

A successful result can also linger for `linger_seconds`: a request whose cache lookup was already
in flight when the leader stored the value misses, and arrives just after the leader finished; it
gets the lingering result instead of calling the model a second time. The decorator lingers only
results that it did store in Redis, for as long as a lookup can take (its socket timeout); errors
never linger.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable


class _Call:
    __slots__ = ("done", "result", "error", "waiters")

    def __init__(self):
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight:
    def __init__(self, linger_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.linger_seconds = linger_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[Any, _Call] = {}
        self._recent: OrderedDict[Any, tuple[float, Any]] = OrderedDict()  # key -> (expires_at, result)

    def do(self, key: Any, function: Callable[[], Any],
           linger_if: Callable[[Any], bool] | None = None) -> tuple[Any, bool]:
        """Run `function` once per concurrent burst of `key`; returns (result, shared).
        The result lingers (see the module docstring) unless `linger_if(result)` is false."""
        call, leader = self.begin(key)
        if not leader:
            return self.wait(call), True
        try:
            result = function()
        except BaseException as error:
            self.finish(key, call, error=error)
            raise
        self.finish(key, call, result, linger=linger_if is None or linger_if(result))
        return result, False

    def begin(self, key: Any) -> tuple[_Call, bool]:
        """Join the burst of `key`: (call, True) makes the caller its leader, who must `finish` it;
        (call, False) a follower, who `wait`s. A lingering result comes back as a finished call.
        Batches claim all their keys first and wait only after finishing their own: no deadlock."""
        with self._lock:
            recent = self._recent
            if recent:
                now = self._clock()
                while recent and next(iter(recent.values()))[0] <= now:
                    recent.popitem(last=False)
                if key in recent:
                    call = _Call()
                    call.result = recent[key][1]
                    call.done.set()
                    return call, False
            call = self._calls.get(key)
            if call is None:
                call = self._calls[key] = _Call()
                return call, True
            call.waiters += 1
            return call, False

    def finish(self, key: Any, call: _Call, result: Any = None, error: BaseException | None = None,
               linger: bool = False) -> None:
        """The leader's result (or error) for every follower; the key is free again."""
        call.result, call.error = result, error
        with self._lock:
            if self._calls.get(key) is call:
                del self._calls[key]
            if error is None and linger and self.linger_seconds > 0:
                self._recent.pop(key, None)
                self._recent[key] = (self._clock() + self.linger_seconds, result)
        call.done.set()

    @staticmethod
    def wait(call: _Call) -> Any:
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def forget(self, key: Any) -> None:
        """Drop a lingering result (e.g. its stored copy turned out unreadable and must be rewritten)."""
        with self._lock:
            self._recent.pop(key, None)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)

    def waiters(self, key: Any) -> int:
        """How many callers wait for the running call of `key` (0 if none runs): observability."""
        with self._lock:
            call = self._calls.get(key)
            return call.waiters if call is not None else 0

    def lingering(self) -> int:
        with self._lock:
            return len(self._recent)
