"""Circuit breaker: after N consecutive Redis failures stop calling Redis for a while.

closed --N consecutive failures--> open --reset interval passed--> half-open (one probe call)
half-open --probe succeeds--> closed;  half-open --probe fails--> open again (new interval).
A success while open (a call that started before it opened) changes nothing.
A probe that never reports (its caller was cancelled mid-call) is replaced after another interval.

While open, lookups are skipped at once, so a dead Redis does not add its timeout to every request.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


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

    def allow(self) -> bool:
        """May the caller talk to Redis now? In half-open state only one caller (the probe) may."""
        if self.state == CLOSED:  # fast path, no lock: the hot path of every request
            return True
        with self._lock:
            if self.state == CLOSED:
                return True
            now = self._clock()
            if self.state == OPEN and now - self._opened_at >= self.reset_seconds:
                self.state = HALF_OPEN
                self._probe_in_flight = False
            # a probe that never reported back (its caller was cancelled) must not block recovery forever
            if self.state == HALF_OPEN and (not self._probe_in_flight
                                            or now - self._probe_started_at >= self.reset_seconds):
                self._probe_in_flight = True
                self._probe_started_at = now
                return True
            return False

    def record_success(self) -> bool:
        """Note a successful Redis call; returns True when this closes the circuit (recovery).

        Only a success in half-open state (the probe's) closes it: while open, a success is a call that
        started before the circuit opened and says nothing about Redis now.
        """
        if self.state == CLOSED and self.failures == 0:
            return False
        with self._lock:
            if self.state == OPEN:
                return False
            recovered = self.state == HALF_OPEN
            self.state = CLOSED
            self.failures = 0
            self._probe_in_flight = False
            return recovered

    def record_failure(self) -> bool:
        """Note a failed Redis call; returns True when this opens the circuit."""
        with self._lock:
            if self.state == HALF_OPEN:
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
