"""The key trace: one cache key per line, in request order, for `cachedmodel-advise --keys FILE`.

The model service writes it when CACHEDMODEL_KEY_TRACE names a file (off by default): the decorator
calls the writer once per prediction served, with its key. Keys are digests (see cachedmodel.keys),
never inputs. The file is created 0600, appended to (a restart continues it) and bounded: when the next
line would take it past CACHEDMODEL_KEY_TRACE_MAX_BYTES (default 100 MiB) the writer stops, logs one
warning, and closes the file; the service goes on serving. Each line is one unbuffered write under a
lock, so lines never interleave and nothing sits in a buffer when the process is killed.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Mapping

from cachedmodel.env import byte_count

logger = logging.getLogger("cachedmodel")

TRACE_ENV = "CACHEDMODEL_KEY_TRACE"
MAX_BYTES_ENV = "CACHEDMODEL_KEY_TRACE_MAX_BYTES"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024


class KeyTraceSettingsError(ValueError):
    """A bad CACHEDMODEL_KEY_TRACE* variable; the message names it."""


@dataclass(frozen=True)
class KeyTraceSettings:
    path: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES


def key_trace_settings(environ: Mapping[str, str]) -> KeyTraceSettings:
    """Pure: environment -> settings (unset or empty CACHEDMODEL_KEY_TRACE: off)."""
    path = environ.get(TRACE_ENV) or None
    size = byte_count(environ, MAX_BYTES_ENV, DEFAULT_MAX_BYTES, KeyTraceSettingsError)
    if path is not None:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise KeyTraceSettingsError(f"{TRACE_ENV}: directory {directory!r} does not exist")
        if os.path.isdir(path):
            raise KeyTraceSettingsError(f"{TRACE_ENV}: {path!r} is a directory, not a file")
    return KeyTraceSettings(path, size)


class KeyTraceWriter:
    """callable(key): appends `key` and a newline to the file, until max_bytes."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.written = os.fstat(self._fd).st_size  # appending: the bound covers what earlier runs wrote
        self.full = False
        if self.written >= max_bytes:
            self._stop()

    def __call__(self, key: bytes | str) -> None:
        if self.full:
            return
        line = (key if isinstance(key, bytes) else key.encode()) + b"\n"
        with self._lock:
            if self._fd is None:
                return
            if self.written + len(line) > self.max_bytes:
                self._stop()
                return
            try:
                os.write(self._fd, line)
            except OSError as error:  # disk full, file system gone: stop tracing, keep serving
                logger.warning("key trace %s: write failed (%s); tracing stopped", self.path, error)
                self._close()
                return
            self.written += len(line)

    def _stop(self) -> None:
        logger.warning("key trace %s is full (%s reached %d bytes); tracing stopped", self.path, MAX_BYTES_ENV,
                       self.max_bytes)
        self._close()

    def _close(self) -> None:
        self.full = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
