"""Build our service ON rest-model-service's app (its create_app), adding only what it lacks.

Layers, outermost first:
  HttpMetricsMiddleware  -> counts/times every request
  PredictionFastPath     -> answers cache hits on the event loop (misses fall through)
  rest-model-service's FastAPI app, with our 4xx validation handler and a /metrics route.
"""
from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from ml_base.utilities import ModelManager
from rest_model_service.configuration import ServiceConfiguration
from rest_model_service.helpers import create_app
from rest_model_service.schemas import HealthStatus, StartupStatus
from rest_model_service.status_manager import StatusManager

from cachedmodel.decorator import RedisCachingDecorator
from cachedmodel.service.errors import validation_exception_handler
from cachedmodel.service.fastpath import PREFIX, SUFFIX, PredictionFastPath
from cachedmodel.service.http_metrics import HttpMetricsMiddleware, metrics_endpoint

logger = logging.getLogger("cachedmodel.service")


def unavailable_reason() -> str | None:
    """Why predictions cannot be served right now, from rest-model-service's StatusManager (None = ready)."""
    status = StatusManager()
    if status.get_startup_status() != StartupStatus.STARTED:
        return "models are still loading: retry when /api/health/ready answers 200"
    if status.get_health_status() != HealthStatus.HEALTHY:
        return "loading the models failed (see the service log); /api/health answers 503"
    return None


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
            if isinstance(model, RedisCachingDecorator):
                decorator = model
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


def create_service_app(configuration: ServiceConfiguration, wait_for_model_creation: bool = False):
    """The ASGI app: rest-model-service's app plus 4xx errors, /metrics and the hit fast path."""
    if configuration.metrics is not None and configuration.metrics.enabled:
        logger.info("'metrics' in the configuration is for the stock service; this app always serves /metrics")
    api = create_app(configuration, wait_for_model_creation=wait_for_model_creation)
    api.add_exception_handler(RequestValidationError, validation_exception_handler)
    api.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    decorators = CachingDecorators(api)
    fast_path = PredictionFastPath(api, resolve=decorators, unavailable=unavailable_reason,
                                   close_clients=decorators.close)
    return HttpMetricsMiddleware(fast_path)
