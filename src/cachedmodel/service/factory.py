"""Build our service ON rest-model-service's app (its create_app), adding only what it lacks.

Layers, outermost first:
  HttpMetricsMiddleware  -> counts/times every request
  UnhandledErrors        -> an escaped exception: logged, and a 500 in the error shape
  BodyLimits             -> reads each body within a deadline and a size limit (408/413)
  PredictionFastPath     -> answers cache hits on the event loop (misses fall through)
  rest-model-service's FastAPI app, with our error handlers (every error in the {"type", "messages"}
  shape), a metadata route that answers 404 for unknown models, prediction routes that render outputs
  in pydantic's JSON mode like the fast path, a /metrics route, and an /openapi.json that documents
  all of it (openapi.py).
"""
from __future__ import annotations

import logging
import os

from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from ml_base.ml_model import MLModelSchemaValidationException
from ml_base.utilities import ModelManager
from rest_model_service.configuration import ServiceConfiguration
from rest_model_service.helpers import create_app
from rest_model_service.routes import PredictionController
from rest_model_service.schemas import Error, HealthStatus, ModelMetadata, StartupStatus
from rest_model_service.status_manager import StatusManager
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cachedmodel.decorator import RedisCachingDecorator
from cachedmodel.keytrace import KeyTraceWriter, key_trace_settings
from cachedmodel.service.errors import (UnhandledErrors, bounded, error_response, http_exception_handler,
                                        unexpected_exception_handler, validation_exception_handler)
from cachedmodel.service.fastpath import PREFIX, SUFFIX, PredictionFastPath, model_name_of, output_body
from cachedmodel.service.http_metrics import HttpMetricsMiddleware, metrics_endpoint
from cachedmodel.service.inputs import json_schema_integers
from cachedmodel.service.limits import BodyLimits, RequestLimits, request_limits
from cachedmodel.service.openapi import install_contract

METADATA_PATH = "/api/models/{model_qualified_name}/metadata"

logger = logging.getLogger("cachedmodel.service")


def unavailable_reason() -> str | None:
    """Why predictions cannot be served right now, from rest-model-service's StatusManager (None = ready)."""
    status = StatusManager()
    if status.get_startup_status() != StartupStatus.STARTED:
        return "models are still loading: retry when /api/health/ready answers 200"
    if status.get_health_status() != HealthStatus.HEALTHY:
        return "loading the models failed (see the service log); /api/health answers 503"
    return None


def _quoted(name: str, limit: int = 100) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


def unknown_model(name: str) -> str:
    """'model 'x' is not loaded here; models: a, b' (the loaded models from ModelManager)."""
    names = [model["qualified_name"] for model in ModelManager().get_models()]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"model {_quoted(name)} is not loaded in this service; models: {shown or 'none'}"


def not_found(request: Request) -> str:
    """The 404 message: names the model for model routes, the path otherwise."""
    path = request.url.path
    name = model_name_of(path)
    if name is not None:
        return unknown_model(name) + " (see GET /api/models)"
    return f"no route {_quoted(path)} (see /docs for the API)"


async def model_metadata(model_qualified_name: str) -> JSONResponse:
    """rest-model-service's metadata route, but an unknown model is 404 (stock: 500 ServiceError)."""
    try:
        metadata = ModelManager().get_model_metadata(qualified_name=model_qualified_name)
    except ValueError:
        reason = unavailable_reason()
        if reason is not None:
            return error_response(503, "ServiceUnavailable", [reason])
        return error_response(404, "NotFound", [unknown_model(model_qualified_name)])
    return JSONResponse(status_code=200, content=ModelMetadata(**metadata).model_dump())


def _shadow_metadata_route(api) -> None:
    """Put our metadata route first: routes match in order, so it answers before the stock one (which
    FastAPI may keep inside its included router, out of reach). /openapi.json documents ours."""
    api.add_api_route(METADATA_PATH, model_metadata, methods=["GET"], response_model=ModelMetadata,
                      responses={404: {"model": Error}, 503: {"model": Error}})
    routes = api.router.routes
    ours = next(route for route in routes if getattr(route, "endpoint", None) is model_metadata)
    routes.remove(ours)  # by identity: build_models may append prediction routes meanwhile
    routes.insert(0, ours)
    generate, patched = api.openapi, []

    def openapi() -> dict:
        schema = generate()  # cached by FastAPI, regenerated when routes change (models load later)
        if not patched or patched[0] is not schema:  # the stock operation came later and won: ours back
            mine = get_openapi(title=api.title, version=api.version, routes=[ours])
            schema["paths"].update(mine["paths"])
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                mine.get("components", {}).get("schemas", {}))
            patched[:] = [schema]
        return schema
    api.openapi = openapi


def prediction_endpoint(model):
    """rest-model-service's PredictionController, but the output is rendered by output_body (pydantic's
    JSON mode, as the fast path renders hits): outputs with datetime, Decimal, UUID ... fields can be
    served, and a hit's bytes equal a miss's; the body is read as the contract reads it (inputs.py).
    Errors as the stock route answers them."""
    def predict(data) -> Response:
        try:
            body = output_body(model.predict(data))
        except MLModelSchemaValidationException as error:
            logger.exception("prediction with model '%s' failed", model.qualified_name)
            return error_response(400, "SchemaValidationError", bounded([str(error)]))
        except Exception as error:  # noqa: BLE001 - the model's error, as the stock route reports it
            logger.exception("prediction with model '%s' failed", model.qualified_name)
            return error_response(500, "ServiceError", bounded([str(error)]))
        return Response(content=body, status_code=200, media_type="application/json")
    predict.__annotations__ = {"data": json_schema_integers(model.input_schema), "return": Response}
    return predict


class PredictionRoutes:
    """Replaces rest-model-service's prediction routes (added by its loader thread) with ours, once the
    models are loaded: same path, operation id, schemas and documented responses."""

    def __init__(self, api):
        self._api = api
        self._done = False

    def ensure(self) -> None:
        if self._done:
            return
        routes = self._api.router.routes
        for stock in [r for r in routes if isinstance(getattr(r, "endpoint", None), PredictionController)]:
            endpoint = prediction_endpoint(ModelManager().get_model(model_name_of(stock.path)))
            self._api.add_api_route(stock.path, endpoint, methods=["POST"], name=stock.name,
                                    response_model=stock.response_model, description=stock.description,
                                    responses=stock.responses)
            ours = next(route for route in reversed(routes) if getattr(route, "endpoint", None) is endpoint)
            routes.remove(ours)  # by identity, into the stock route's place
            routes[routes.index(stock)] = ours
        self._done = True


class CachingDecorators:
    """Finds, per model name, the RedisCachingDecorator that may answer hits (outermost only), once."""

    def __init__(self, api):
        self._api = api
        self._resolved: dict[str, RedisCachingDecorator | None] = {}

    def __call__(self, name: str) -> RedisCachingDecorator | None:
        if name in self._resolved:
            return self._resolved[name]
        decorator = None
        has_route = any(getattr(route, "path", None) == f"{PREFIX}{name}{SUFFIX}" for route in self._api.routes)
        if has_route:
            try:
                model = ModelManager().get_model(name)
            except ValueError:
                model = None
            if isinstance(model, RedisCachingDecorator) and not model.caches_rows:
                decorator = model  # (a batch is cached row by row by the route's predict, never one hit)
        if not has_route:
            return None  # unknown names are not remembered (they would grow the dict without bound)
        self._resolved[name] = decorator
        logger.info("fast path for cache hits of %s: %s", name, "on" if decorator else "off")
        return decorator

    def all(self) -> list[RedisCachingDecorator]:
        return [d for d in self._resolved.values() if d is not None]

    async def close(self) -> None:
        for decorator in self.all():
            await decorator.aclose()


class KeyTraces:
    """CACHEDMODEL_KEY_TRACE: once the models are loaded, the outermost RedisCachingDecorator of each model
    gets the one key-trace writer (keys of every cached model go to one file, in request order)."""

    def __init__(self, writer: KeyTraceWriter | None):
        self._writer = writer
        self._done = writer is None

    def ensure(self) -> None:
        if self._done:
            return
        for entry in ModelManager().get_models():
            current = ModelManager().get_model(entry["qualified_name"])
            while current is not None and not isinstance(current, RedisCachingDecorator):
                current = current.__dict__.get("_model") if hasattr(current, "__dict__") else None
            if current is not None:
                current.set_key_trace(self._writer)
                logger.info("key trace of %s: %s", entry["qualified_name"], self._writer.path)
        self._done = True


def create_service_app(configuration: ServiceConfiguration, wait_for_model_creation: bool = False,
                       limits: RequestLimits | None = None):
    """The ASGI app: rest-model-service's app plus errors in one shape, body limits, /metrics and the hit
    fast path. `limits` default: from the environment (CACHEDMODEL_MAX_BODY_BYTES, ..._BODY_TIMEOUT_SECONDS)."""
    limits = request_limits(os.environ) if limits is None else limits
    if configuration.metrics is not None and configuration.metrics.enabled:
        logger.info("'metrics' in the configuration is for the stock service; this app always serves /metrics")
    api = create_app(configuration, wait_for_model_creation=wait_for_model_creation)
    api.add_exception_handler(RequestValidationError, validation_exception_handler)
    api.add_exception_handler(HTTPException, http_exception_handler(not_found))
    api.add_exception_handler(Exception, unexpected_exception_handler)
    _shadow_metadata_route(api)
    api.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    decorators = CachingDecorators(api)
    prediction_routes = PredictionRoutes(api)
    settings = key_trace_settings(os.environ)
    key_traces = KeyTraces(KeyTraceWriter(settings.path, settings.max_bytes) if settings.path else None)

    ready = []

    def unavailable() -> str | None:
        """Every prediction request asks this first (the fast path): ours replace the stock routes then.
        Once the models are loaded that is final (rest-model-service sets STARTED once), so from then on
        this is one list test per request."""
        if ready:
            return None
        reason = unavailable_reason()
        if reason is None:
            prediction_routes.ensure()
            key_traces.ensure()
            ready.append(True)
        return reason

    def model_names() -> list[str]:
        unavailable()  # the routes /openapi.json documents are the ones that answer
        return [model["qualified_name"] for model in ModelManager().get_models()]
    install_contract(api, model_names)
    fast_path = PredictionFastPath(api, resolve=decorators, unavailable=unavailable,
                                   close_clients=decorators.close)
    return HttpMetricsMiddleware(UnhandledErrors(BodyLimits(fast_path, limits)))
