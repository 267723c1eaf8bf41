"""Memory sizes in redis.conf units (pure): `1k` = 1000 bytes, `1kb` = 1024; likewise m/mb, g/gb."""
from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def parse_size(text: str) -> int:
    """'64mb' -> 67108864, as redis.conf reads it (case-insensitive; a plain number is bytes)."""
    match = _SIZE.match(str(text).lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a size in redis.conf units (e.g. 512kb, 64mb, 1gb)")
    size = int(match.group(1)) * _UNITS[match.group(2)]
    if size <= 0:
        raise ValueError(f"{text!r}: a size must be above 0")
    return size


def parse_sizes(text: str) -> list[int]:
    """'2mb,8mb,64mb' -> sorted distinct sizes in bytes."""
    parts = [part for part in str(text).split(",") if part.strip()]
    if not parts:
        raise ValueError("no sizes given (e.g. --sizes 2mb,8mb,64mb)")
    return sorted({parse_size(part) for part in parts})


def format_size(size: int) -> str:
    """Bytes -> the shortest exact redis.conf spelling in binary units ('64mb', '1536kb', '1000')."""
    for unit, factor in (("gb", 1024 ** 3), ("mb", 1024 ** 2), ("kb", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def human_size(size: float) -> str:
    """Bytes -> '1.5 MiB' for reports."""
    for unit, factor in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size:.0f} B"
