"""The HTTP layer: rest-model-service's app with clear 4xx errors, /metrics and a fast path for cache hits.

Every error answer is {"type", "messages"} (bounded); request bodies are limited in size
(CACHEDMODEL_MAX_BODY_BYTES, default 1 MiB -> 413) and in time (CACHEDMODEL_BODY_TIMEOUT_SECONDS,
default 10 -> 408); request heads in time too (CACHEDMODEL_HEADER_TIMEOUT_SECONDS, default 10 -> 408,
enforced in uvicorn's protocol, so by `python -m cachedmodel.service`): see `cachedmodel.service.__main__`
for the whole environment contract.

Run it with `REST_CONFIG=... uvicorn cachedmodel.service.app:app`. It talks to Redis only through
the RedisCachingDecorator (never imports redis itself). Needs the `service` extra.
"""
from cachedmodel.service.config import ConfigurationFileError, config_path, load_configuration
from cachedmodel.service.factory import create_service_app

__all__ = ["ConfigurationFileError", "config_path", "create_service_app", "load_configuration"]
