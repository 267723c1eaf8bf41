"""Request errors as 4xx answers that name the problem (stock rest-model-service crashes into a 500
on a malformed JSON body because it joins integer error locations as strings).

Body shape stays rest-model-service's `Error`: {"type": ..., "messages": [...]}.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

logger = logging.getLogger("cachedmodel.service")

def is_json_content_type(value: str | None) -> bool:
    """application/json or application/*+json, parameters (charset) ignored."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _field_path(location: Iterable[Any]) -> str:
    """('body', 'age') -> 'age'; nested locations are dotted; list indexes kept as numbers."""
    parts = [str(part) for part in location]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: dict) -> str:
    """One pydantic error as a sentence that starts with the field's name."""
    kind = error.get("type", "")
    field = _field_path(error.get("loc", ()))
    if kind == "missing":
        if not field:
            return "request body is missing: send a JSON object with the model's input fields"
        return f"field '{field}' is required"
    if kind == "extra_forbidden":
        return f"field '{field}' is not an input of this model"
    where = f"field '{field}'" if field else "body"
    got = f" (got {_shown(error['input'])})" if "input" in error else ""
    return f"{where}: {error.get('msg', 'invalid')}{got}"


def classify(errors: list[dict], content_type: str | None) -> tuple[int, str, list[str]]:
    """Pure: FastAPI validation errors -> (status, error type, messages)."""
    for error in errors:
        if error.get("type") == "json_invalid":
            location = list(error.get("loc", ()))
            position = location[1] if len(location) > 1 else "?"
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            return 400, "MalformedJSON", [f"request body is not valid JSON: {reason} at character {position}"]
    if not is_json_content_type(content_type) and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        shown = content_type or "none"
        return 415, "UnsupportedMediaType", [f"request body must be JSON sent with Content-Type: application/json "
                                             f"(got Content-Type: {shown})"]
    return 400, "ValidationError", [_describe(error) for error in errors]


async def validation_exception_handler(request: Request, exception: RequestValidationError) -> JSONResponse:
    """Replaces rest-model-service's handler: never fails itself, answers 400/415 naming the field."""
    status, kind, messages = classify(list(exception.errors()), request.headers.get("content-type"))
    logger.info("rejected %s %s: %s", request.method, request.url.path, "; ".join(messages))
    return JSONResponse(status_code=status, content={"type": kind, "messages": messages})
