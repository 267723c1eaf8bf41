"""Python warnings in the service: through logging, each distinct one at most once a minute, all counted.

Python prints a warning to stderr each time its filters let it through, and they let the same warning
through again whenever anything changes the filters (every `warnings.catch_warnings()` does: it resets
the once-per-location registry). A library warning on the prediction path of a busy service is then
printed for every request: ~1.6 million lines (495 MB) once, from scikit-learn under concurrent misses.

`install()` (done by `cachedmodel.service.app`, the service's ASGI module) replaces `warnings.showwarning`
with `WarningLog.showwarning`: every warning Python's filters let through counts once in
`cachedmodel_warnings_total{category}`, and each distinct warning (category, message, file and line) is
logged on the `py.warnings` logger (the name `logging.captureWarnings` uses) the first time and then at
most once per `interval` (60 s), with the number of repeats in between. The filters themselves are left
alone: a warning they ignore is neither counted nor logged.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings

from prometheus_client import Counter

WARNINGS = Counter("cachedmodel_warnings",
                   "Python warnings raised in the service process that its warnings filters let through, by "
                   "category (each distinct warning is logged at most once per minute; this counts them all).",
                   ["category"])
INTERVAL_SECONDS = 60.0
MAX_DISTINCT = 1024  # distinct warnings remembered; beyond it, one entry per category stands in
MAX_MESSAGE = 1000  # characters of a warning's message that are logged

logger = logging.getLogger("py.warnings")


class WarningLog:
    """A `warnings.showwarning` replacement: count every warning, log each distinct one once per interval."""

    def __init__(self, interval: float = INTERVAL_SECONDS, clock=time.monotonic, log: logging.Logger = logger,
                 counter: Counter = WARNINGS, max_distinct: int = MAX_DISTINCT):
        self.interval, self._clock, self._log, self._counter = interval, clock, log, counter
        self._max = max_distinct
        self._lock = threading.Lock()
        self._seen: dict[tuple, list] = {}  # key -> [last logged at, repeats since]
        self._counters: dict[str, object] = {}

    def _count(self, category: str) -> None:
        child = self._counters.get(category)
        if child is None:
            child = self._counters[category] = self._counter.labels(category=category)
        child.inc()

    def _due(self, key: tuple, now: float) -> int | None:
        """None: suppressed; else the number of repeats not logged since the last time (0 the first time)."""
        with self._lock:
            entry = self._seen.get(key)
            if entry is None and len(self._seen) >= self._max:  # forget what has not been logged for a while
                for old in [k for k, (at, _) in self._seen.items() if now - at >= self.interval]:
                    del self._seen[old]
                if len(self._seen) >= self._max:  # still full: one entry per category stands in
                    key = (key[0], None, None, None)
                    entry = self._seen.get(key)
            if entry is None:
                self._seen[key] = [now, 0]
                return 0
            if now - entry[0] < self.interval:
                entry[1] += 1
                return None
            repeats, entry[0], entry[1] = entry[1], now, 0
            return repeats

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        name = getattr(category, "__name__", str(category))
        self._count(name)
        text = str(message)
        repeats = self._due((name, text, filename, lineno), self._clock())
        if repeats is None:
            return
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE] + f"... ({len(text)} characters)"
        more = f" ({repeats} more since the last message)" if repeats else ""
        self._log.warning("%s:%s: %s: %s%s", filename, lineno, name, text, more)


_installed: WarningLog | None = None


def install(interval: float = INTERVAL_SECONDS) -> WarningLog:
    """Route this process's warnings through a WarningLog (idempotent); returns it."""
    global _installed
    if _installed is None or warnings.showwarning != _installed.showwarning:
        _installed = WarningLog(interval)
        warnings.showwarning = _installed.showwarning
    return _installed
