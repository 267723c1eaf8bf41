"""Circuit breaker: after N consecutive Redis failures stop calling Redis for a while.

closed --N consecutive failures--> open --reset interval passed--> half-open (one probe call)
half-open --probe succeeds--> closed;  half-open --probe fails--> open again (new interval).
A success while open (a call that started before it opened) changes nothing.
A probe that never reports (its caller was cancelled mid-call) is replaced after another interval.

The probe is its caller: the asyncio task (or, outside a running event loop, the thread) that allow()
let through while half-open. Only that caller's record_success()/record_failure() decide the half-open
state; a report from anyone else then is a late one, of a call that started before (while closed or
open) and says nothing about Redis now, so it is ignored. A call site reports on the task or thread
that asked allow(), as each call site of the decorator does, so the calls need no token argument.
The closed state's allow() and record_success() stay one attribute read each: no lock, no allocation.

While open, lookups are skipped at once, so a dead Redis does not add its timeout to every request.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, Hashable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def _caller() -> Hashable:
    """Who is calling: the running asyncio task, else the thread (only asked while not closed)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return task if task is not None else threading.get_ident()


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 3, reset_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_started_at = 0.0
        self._probe: Hashable | None = None  # the caller allowed through as the probe (half-open only)

    def allow(self) -> bool:
        """May the caller talk to Redis now? In half-open state only one caller (the probe) may."""
        if self.state == CLOSED:  # fast path, no lock: the hot path of every request
            return True
        caller = _caller()
        with self._lock:
            if self.state == CLOSED:
                return True
            now = self._clock()
            if self.state == OPEN and now - self._opened_at >= self.reset_seconds:
                self.state = HALF_OPEN
                self._probe_in_flight = False
            if self.state != HALF_OPEN:
                return False
            # a probe that never reported back (its caller was cancelled) must not block recovery forever
            if not self._probe_in_flight or now - self._probe_started_at >= self.reset_seconds:
                self._probe_in_flight = True
                self._probe_started_at = now
                self._probe = caller
                return True
            return False

    def _is_probe(self) -> bool:
        """Under the lock, half-open: is the caller the probe in flight? Anyone else's report is late."""
        return self._probe_in_flight and _caller() == self._probe

    def record_success(self) -> bool:
        """Note a successful Redis call; returns True when this closes the circuit (recovery).

        Only the probe's success closes it: while open, or half-open from any caller but the probe, a
        success is a call that started earlier and says nothing about Redis now.
        """
        if self.state == CLOSED and self.failures == 0:
            return False
        with self._lock:
            if self.state == OPEN:
                return False
            recovered = self.state == HALF_OPEN
            if recovered and not self._is_probe():
                return False
            self.state = CLOSED
            self.failures = 0
            self._probe_in_flight = False
            self._probe = None
            return recovered

    def record_failure(self) -> bool:
        """Note a failed Redis call; returns True when this opens the circuit. Half-open, only the
        probe's failure re-opens it (anyone else's is a late report of a call that started earlier)."""
        with self._lock:
            if self.state == HALF_OPEN:
                if not self._is_probe():
                    return False
                self._open()
                return True
            if self.state == OPEN:
                return False
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self._open()
                return True
            return False

    def _open(self) -> None:
        self.state = OPEN
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self._probe = None
