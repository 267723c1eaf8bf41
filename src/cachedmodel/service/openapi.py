"""The service's OpenAPI contract: /openapi.json documents every answer the service gives.

Users generate clients and gateways from /openapi.json, so it must hold for every answer, the fast
path's and the ASGI layers' included. FastAPI documents only what the routes declare; the service
also answers (in the {"type", "messages"} `Error` schema) 400/415 on prediction routes, 503 while the
models load, 404 for unknown models, 408/413 from the body limits and 500 from the error guard on any
route, and adds the `x-cache` header. `document_contract(schema, model_names)` (pure, idempotent)
adds those, drops FastAPI's 422 (the service never answers it: validation errors are 400), and leaves
out `/` (a redirect to the Swagger UI for browsers, like /docs itself). The prediction schemas stay
the model's.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from cachedmodel.service.fastpath import model_name_of

ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}

EVERY_ROUTE = {
    "408": "RequestTimeout: the request headers or body did not arrive within CACHEDMODEL_HEADER_TIMEOUT_SECONDS "
           "or CACHEDMODEL_BODY_TIMEOUT_SECONDS.",
    "413": "ContentTooLarge: the request body is larger than CACHEDMODEL_MAX_BODY_BYTES.",
    "500": "ServiceError: an unexpected error (see the service log).",
}
PREDICTION = {
    "400": "ValidationError (names each field) or MalformedJSON (the body is not JSON, with the position).",
    "415": "UnsupportedMediaType: the body must be JSON sent with Content-Type: application/json.",
    "500": "ServiceError: the model failed (its message), or an unexpected error.",
    "503": "ServiceUnavailable: the models are still loading, or loading them failed.",
}
METADATA = {
    "404": "NotFound: no model of that name is loaded (see GET /api/models).",
    "503": "ServiceUnavailable: the models are still loading, or loading them failed.",
}
X_CACHE = {
    "description": "Whether the prediction came from the cache: `hit` or `miss` (only for a model whose "
                   "outermost decorator is the caching decorator).",
    "schema": {"type": "string", "enum": ["hit", "miss"]},
}
LEFT_OUT = ("/",)


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": dict(ERROR_SCHEMA)}}}


def _document_errors(responses: dict, errors: dict[str, str], replace: bool) -> None:
    """Each status in `errors` answered in the Error schema (`replace`: also where the route declared
    it otherwise, e.g. rest-model-service's generic 400/500)."""
    for status, description in errors.items():
        if replace or status not in responses:
            responses[status] = _error_response(description)


def _referenced(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, found)
    return found


def _drop_unreferenced(schema: dict, names: Iterable[str]) -> None:
    """Remove these component schemas (FastAPI's 422 ones) unless something else still refers to them."""
    components = schema.get("components", {}).get("schemas", {})
    candidates = {name for name in names if name in components}
    roots = {**{key: value for key, value in schema.items() if key != "components"},
             "kept": {name: value for name, value in components.items() if name not in candidates}}
    used = _referenced(roots, set()) & candidates
    while True:  # what a used candidate refers to is used too
        more = _referenced([components[name] for name in used], set()) & candidates - used
        if not more:
            break
        used |= more
    for name in candidates - used:
        components.pop(name)


def document_contract(schema: dict, model_names: Iterable[str] = ()) -> dict:
    """Pure (edits `schema` in place and returns it; applying it twice changes nothing)."""
    paths = schema.setdefault("paths", {})
    for path in LEFT_OUT:
        paths.pop(path, None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", {
        "type": "object", "title": "Error", "description": "Error details.", "required": ["type", "messages"],
        "properties": {"type": {"type": "string", "title": "Type", "description": "The type of error."},
                       "messages": {"type": "array", "items": {"type": "string"}, "title": "Messages",
                                    "description": "List of error messages."}}})
    names = list(model_names)
    for path, operations in paths.items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            if method == "post" and model_name_of(path) is not None:
                _document_errors(responses, PREDICTION, replace=True)
                ok = responses.get("200")
                if ok is not None:
                    ok.setdefault("headers", {})["x-cache"] = X_CACHE
            if "{model_qualified_name}" in path:
                _document_errors(responses, METADATA, replace=True)
                for parameter in operation.get("parameters", ()):
                    if parameter.get("name") == "model_qualified_name" and names:
                        parameter.setdefault("schema", {})["examples"] = names
            _document_errors(responses, EVERY_ROUTE, replace=False)
    _drop_unreferenced(schema, ("HTTPValidationError", "ValidationError"))
    return schema


def install_contract(api, model_names: Callable[[], list[str]]) -> None:
    """Wrap `api.openapi` (FastAPI regenerates its schema when routes change: models load later) so that
    /openapi.json is always the documented contract."""
    generate, done = api.openapi, []

    def openapi() -> dict:
        schema = generate()
        names = model_names()
        if not done or done[0] is not schema or done[1] != names:
            document_contract(schema, names)
            done[:] = [schema, names]
        return schema
    api.openapi = openapi

