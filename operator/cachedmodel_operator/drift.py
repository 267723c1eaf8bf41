"""Does a live object still carry everything we applied? (pure; decides whether a child event needs a repair)"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

# Maps whose values are resource quantities (container resources, volume claim requests) and keys whose
# value is one (emptyDir.sizeLimit): the API server stores them canonically (1000m -> 1, 1024Mi -> 1Gi).
QUANTITY_MAPS = frozenset({"limits", "requests"})
QUANTITY_KEYS = frozenset({"sizeLimit"})


def quantity(value: Any) -> Decimal | None:
    """The canonical value of a Kubernetes quantity (`500m`, `1Gi`, 0.5), None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        return parse_quantity(value)
    except (ValueError, ArithmeticError):
        return None


def same_quantity(live: Any, desired: Any) -> bool:
    """Equal as quantities (`1000m` = `1`); two values that do not parse are compared as they are."""
    want, have = quantity(desired), quantity(live)
    if want is None or have is None:
        return live == desired
    return want == have


def contains(live: Any, desired: Any, key: str | None = None, in_quantity_map: bool = False) -> bool:
    """True when every field of `desired` is present with the same value in `live`.

    Server defaults add fields, so `live` may be a superset; lists must match item by item. Quantities
    are compared by value, only where the API takes quantities (a `1000m` in an env var or a ConfigMap is
    just a string). Secret stringData is write-only and never compared.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        values_are_quantities = key in QUANTITY_MAPS
        return all(name in live and contains(live[name], value, name, values_are_quantities)
                   for name, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(live, list) and len(live) == len(desired)
                and all(contains(item, want) for item, want in zip(live, desired)))
    if in_quantity_map or key in QUANTITY_KEYS:
        return same_quantity(live, desired)
    if isinstance(desired, (int, float)) and not isinstance(desired, bool) and isinstance(live, str):
        return str(desired) == live
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(live) is type(desired) and live == desired
    return live == desired


def drifted(live: dict, desired: dict) -> bool:
    """True when the child must be re-applied (the live object lost or changed a field we own)."""
    desired = {key: value for key, value in desired.items() if key not in ("stringData", "status")}
    return not contains(live, desired)
