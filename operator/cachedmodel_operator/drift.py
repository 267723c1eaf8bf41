"""Does a live object still carry everything we applied? (pure; decides whether a child event needs a repair)"""
from __future__ import annotations

from typing import Any


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is present with the same value in `live`.

    Server defaults add fields, so `live` may be a superset; lists must match item by item. Secret
    stringData is write-only and never compared.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(key in live and contains(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(live, list) and len(live) == len(desired)
                and all(contains(item, want) for item, want in zip(live, desired)))
    if isinstance(desired, (int, float)) and not isinstance(desired, bool) and isinstance(live, str):
        return str(desired) == live
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(live) is type(desired) and live == desired
    return live == desired


def drifted(live: dict, desired: dict) -> bool:
    """True when the child must be re-applied (the live object lost or changed a field we own)."""
    desired = {key: value for key, value in desired.items() if key not in ("stringData", "status")}
    return not contains(live, desired)
