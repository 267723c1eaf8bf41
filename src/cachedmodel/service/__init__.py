"""The HTTP layer: rest-model-service's app with clear 4xx errors, /metrics and a fast path for cache hits.

Run it with `REST_CONFIG=... uvicorn cachedmodel.service.app:app`. It talks to Redis only through
the RedisCachingDecorator (never imports redis itself). Needs the `service` extra.
"""
from cachedmodel.service.config import ConfigurationFileError, config_path, load_configuration
from cachedmodel.service.factory import create_service_app

__all__ = ["ConfigurationFileError", "config_path", "create_service_app", "load_configuration"]
