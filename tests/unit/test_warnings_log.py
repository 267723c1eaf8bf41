"""Python warnings in the service (issue 19, item 6): each distinct warning is logged at most once per
interval, with the number of repeats, and every one is counted in cachedmodel_warnings_total{category}."""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
import warnings

from prometheus_client import CollectorRegistry, Counter

from cachedmodel.service.warnings_log import WarningLog


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _log(caplog, interval=60, max_distinct=1024):
    clock, registry = Clock(), CollectorRegistry()
    counter = Counter("cachedmodel_warnings", "test", ["category"], registry=registry)
    log = WarningLog(interval, clock, logging.getLogger("test.warnings"), counter, max_distinct)
    caplog.set_level(logging.WARNING, logger="test.warnings")
    return log, clock, lambda category: registry.get_sample_value("cachedmodel_warnings_total",
                                                                 {"category": category}) or 0


def _messages(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "test.warnings"]


def test_a_repeated_warning_is_logged_once_per_interval_and_counted_every_time(caplog):
    log, clock, count = _log(caplog)
    for _ in range(1000):
        log.showwarning(UserWarning("`delayed` should be used with `Parallel`"), UserWarning, "/x/parallel.py", 139)
    assert _messages(caplog) == ["/x/parallel.py:139: UserWarning: `delayed` should be used with `Parallel`"]
    assert count("UserWarning") == 1000
    clock.now = 59.9
    log.showwarning("again", UserWarning, "/x/parallel.py", 139)  # another message: another warning
    log.showwarning(UserWarning("`delayed` should be used with `Parallel`"), UserWarning, "/x/parallel.py", 139)
    assert len(_messages(caplog)) == 2
    clock.now = 60.0
    log.showwarning(UserWarning("`delayed` should be used with `Parallel`"), UserWarning, "/x/parallel.py", 139)
    assert _messages(caplog)[-1].endswith("`delayed` should be used with `Parallel` (1000 more since the last message)")
    assert count("UserWarning") == 1003


def test_category_message_and_location_each_make_a_distinct_warning(caplog):
    log, clock, count = _log(caplog)
    for category, message, filename, lineno in [(UserWarning, "m", "a.py", 1), (FutureWarning, "m", "a.py", 1),
                                                (UserWarning, "n", "a.py", 1), (UserWarning, "m", "b.py", 1),
                                                (UserWarning, "m", "a.py", 2)] * 3:
        log.showwarning(message, category, filename, lineno)
    assert len(_messages(caplog)) == 5
    assert (count("UserWarning"), count("FutureWarning")) == (12, 3)


def test_memory_stays_bounded_under_ever_new_messages(caplog):
    """Messages with a number in them are all distinct: at most max_distinct are remembered, then one entry
    per category stands in, so the log still gets at most one line per interval for the rest."""
    log, clock, count = _log(caplog, max_distinct=10)
    for index in range(5000):
        log.showwarning(f"value {index} is odd", RuntimeWarning, "m.py", 7)
    assert len(_messages(caplog)) == 11 and count("RuntimeWarning") == 5000
    assert len(log._seen) <= 11
    clock.now = 61  # the old entries have been logged long enough ago: forgotten, new ones logged again
    log.showwarning("value -1 is odd", RuntimeWarning, "m.py", 7)
    assert _messages(caplog)[-1] == "m.py:7: RuntimeWarning: value -1 is odd" and len(log._seen) <= 11


def test_long_messages_are_cut(caplog):
    log, _, _ = _log(caplog)
    log.showwarning("x" * 100_000, UserWarning, "a.py", 1)
    (message,) = _messages(caplog)
    assert len(message) < 1100 and message.endswith("(100000 characters)")


def test_concurrent_warnings_are_all_counted_and_logged_once(caplog):
    log, _, count = _log(caplog)

    def run():
        for _ in range(2000):
            log.showwarning("same", UserWarning, "a.py", 1)
    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_messages(caplog)) == 1 and count("UserWarning") == 16_000


def test_the_service_module_routes_real_warnings_through_the_log():
    """In a fresh process (warnings state is global): after importing the service's hook, warnings that
    Python would print every time (a new registry each call) come out once, counted on the registry."""
    code = """
import logging, sys, warnings
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s %(message)s")
from prometheus_client import REGISTRY
from cachedmodel.service.warnings_log import install
install()
for _ in range(500):
    warnings.warn_explicit("flood", UserWarning, "lib.py", 3, registry={})
print(REGISTRY.get_sample_value("cachedmodel_warnings_total", {"category": "UserWarning"}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "py.warnings lib.py:3: UserWarning: flood\n"
    assert result.stdout.strip() == "500.0"


def test_install_is_idempotent():
    from cachedmodel.service import warnings_log
    saved = warnings.showwarning
    try:
        first = warnings_log.install()
        assert warnings_log.install() is first and warnings.showwarning == first.showwarning
    finally:
        warnings.showwarning = saved
