"""Settings read from the environment, each failing with a message that names its variable."""
from __future__ import annotations

from typing import Mapping


def byte_count(environ: Mapping[str, str], name: str, default: int, error: type[Exception] = ValueError) -> int:
    """environ[name] as a whole number of bytes >= 1 (unset or empty: `default`); `error` otherwise."""
    text = environ.get(name) or str(default)
    try:
        size = int(text)
    except ValueError:
        raise error(f"{name} must be a whole number of bytes, got {text!r}") from None
    if size < 1:
        raise error(f"{name} must be at least 1, got {size}")
    return size
