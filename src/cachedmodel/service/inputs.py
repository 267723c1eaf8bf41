"""Request bodies read as the OpenAPI contract reads them: OpenAPI 3.1 (JSON Schema 2020-12) says a
number with a zero fractional part is an integer, so a client that follows /openapi.json may send
`20.0` for a `type: integer` field. A model's strict int fields (StrictInt: `true` must never be age 1)
refuse it; the prediction routes and the fast path validate with `json_schema_integers(schema)`,
which reads such a value as the integer it is. `20.5`, `true` and `"20"` are still refused.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError, WrapValidator


def _whole_floats_to_ints(value: Any, errors: list[dict]) -> bool:
    """Pure-ish (edits `value`, a copy): each 'not an integer' error whose input is a whole float (20.0)
    gets that integer at its location. Whether any did."""
    fixed = False
    for error in errors:
        found = error.get("input")
        if error.get("type") != "int_type" or type(found) is not float or not found.is_integer():
            continue
        *parents, last = error.get("loc") or (None,)
        container = value
        try:
            for part in parents:
                container = container[part]
            if container[last] is found or container[last] == found:
                container[last] = int(found)
                fixed = True
        except (KeyError, IndexError, TypeError):
            continue  # a location that is not a plain path into the body (a union member): left as it is
    return fixed


def json_schema_integers(input_schema: type) -> Any:
    """`input_schema` as a prediction route's body type: validated as it is; if that fails only because
    of whole floats for integer fields, validated again with those read as integers. Its JSON schema
    is `input_schema`'s."""
    def validate(value, handler):
        try:
            return handler(value)
        except ValidationError as error:
            fixed = copy.deepcopy(value)
            if not _whole_floats_to_ints(fixed, error.errors()):
                raise
        return handler(fixed)
    return Annotated[input_schema, WrapValidator(validate)]


@lru_cache(maxsize=256)
def json_schema_integers_adapter(input_schema: type) -> TypeAdapter:
    """A TypeAdapter of json_schema_integers(input_schema), built once per schema (the fast path's)."""
    return TypeAdapter(json_schema_integers(input_schema))
