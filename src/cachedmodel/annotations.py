"""What a schema field's annotation allows: questions the decorator asks once, at set_model()."""
from __future__ import annotations

import datetime
import decimal
import enum
import types
import typing
import uuid
from typing import Any

SCALAR_TYPES = (bool, int, float, str, bytes, type(None), decimal.Decimal, datetime.date, datetime.time,
                datetime.timedelta, uuid.UUID, enum.Enum)  # immutable, never containers (datetime is a date)


def scalar_annotation(annotation: Any) -> bool:
    """True when every value the annotation allows is an immutable scalar (Optional, Union, Literal and
    Annotated of SCALAR_TYPES included): no list, dict, set or model can hide behind it."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return scalar_annotation(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(scalar_annotation(argument) for argument in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, SCALAR_TYPES)


def allows_float(annotation: Any) -> bool:
    """True when a float is one of the values the annotation allows (reduced precision needs one)."""
    if annotation is float:
        return True
    return any(allows_float(argument) for argument in typing.get_args(annotation))
