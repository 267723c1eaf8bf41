"""The rest-model-service configuration that switches cachedmodel.RedisCachingDecorator on.

The operator never imports `cachedmodel`: the contract is this YAML shape plus the env-var names
of the model container, checked by tests/integration/test_config_contract.py against the real
decorator. The topology is in env vars (set by builders/model.py), so the config reads the same for
every address:

- standalone: url ${REDIS_URL}, password ${REDIS_PASSWORD:-}
- sentinel:   sentinels ${REDIS_SENTINELS} (comma-separated host:port), sentinel_service
              ${REDIS_SENTINEL_SERVICE}, sentinel_password ${REDIS_SENTINEL_PASSWORD:-}, password
- cluster:    cluster_nodes ${REDIS_CLUSTER_NODES} (comma-separated host:port), password

plus username and ssl (literal values) for an external Sentinel or Cluster that asks for them.
"""
from __future__ import annotations

import hashlib

import yaml

from cachedmodel_operator.resource import CachedModel

DECORATOR_CLASS_PATH = "cachedmodel.RedisCachingDecorator"
CONFIG_KEY = "rest_config.yaml"
CONFIG_DIR = "/etc/cachedmodel"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"


# spec.cache field (a path under spec.cache) -> the decorator option it sets, when given. One table, so a
# unit test can check every CacheOptions field is either here, set elsewhere below, or in NOT_EXPOSED.
CACHE_OPTIONS = {
    ("ttlSeconds",): "ttl_seconds",
    ("socketTimeoutSeconds",): "socket_timeout",
    ("socketConnectTimeoutSeconds",): "socket_connect_timeout",
    ("singleFlight",): "single_flight",
    ("sharedSingleFlight",): "shared_single_flight",
    ("leaseSeconds",): "lease_seconds",
    ("staleSeconds",): "stale_seconds",
    ("earlyRefreshBeta",): "early_refresh_beta",
    ("maxConnections",): "max_connections",
    ("poolTimeoutSeconds",): "pool_timeout",
    ("redisInfoIntervalSeconds",): "redis_info_interval_seconds",
    ("circuitBreaker", "failures"): "circuit_breaker_failures",
    ("circuitBreaker", "resetSeconds"): "circuit_breaker_reset_seconds",
    ("epoch",): "epoch",
}
# Decorator options a CachedModel sets from other fields (spec.cache's own shapes, or the topology) ...
DERIVED_OPTIONS = {
    "prefix": "spec.cache.prefix", "hashing_fields": "spec.cache.hashingFields", "serder": "spec.cache.serder",
    "use_compression": "spec.cache.compression", "reduced_precision_fields": "spec.cache.reducedPrecision.fields",
    "number_of_places": "spec.cache.reducedPrecision.numberOfPlaces", "local_cache_size": "spec.cache.localCache.size",
    "local_cache_ttl_seconds": "spec.cache.localCache.ttlSeconds",
    "url": "the topology (REDIS_URL)", "password": "the Redis Secret (REDIS_PASSWORD)",
    "sentinels": "the topology (REDIS_SENTINELS)", "sentinel_service": "the topology (REDIS_SENTINEL_SERVICE)",
    "sentinel_password": "the Sentinels' Secret (REDIS_SENTINEL_PASSWORD)",
    "cluster_nodes": "the topology (REDIS_CLUSTER_NODES)",
    "username": "spec.redis.external.username", "ssl": "spec.redis.external.tls",
}
# ... and the ones it deliberately does not expose, with the reason.
NOT_EXPOSED = {
    "host": "the address comes from the topology as a URL (url), never as host/port",
    "port": "the address comes from the topology as a URL (url), never as host/port",
    "database": "a managed Redis uses database 0; an external one names its database in spec.redis.external.url",
    "ssl_ca_certs": "no CA bundle is mounted for the decorator yet; an external rediss:// URL verifies against "
                    "the image's system CAs",
}


def decorator_configuration(cm: CachedModel) -> dict:
    """The decorator's keyword options from spec.cache; unset options are left to the decorator's defaults."""
    cache = cm.cache
    options: dict = topology_options(cm)
    options.update(serder=cache["serder"], use_compression=bool(cache["compression"]))
    if cache.get("prefix"):
        options["prefix"] = cache["prefix"]
    if cache.get("hashingFields"):
        options["hashing_fields"] = list(cache["hashingFields"])
    reduced = cache.get("reducedPrecision") or {}
    if reduced.get("fields"):
        options["reduced_precision_fields"] = list(reduced["fields"])
        options["number_of_places"] = reduced["numberOfPlaces"]
    for path, option in CACHE_OPTIONS.items():
        value = _lookup(cache, path)
        if value is not None:
            options[option] = value
    for option in ("ttl_seconds", "epoch"):  # 0 = the decorator's default (no expiry, the first epoch)
        if not options.get(option):
            options.pop(option, None)
    local = cache.get("localCache") or {}
    if local.get("size"):
        options["local_cache_size"] = local["size"]
        if "ttlSeconds" in local:
            options["local_cache_ttl_seconds"] = local["ttlSeconds"]
    return options


def _lookup(section: dict, path: tuple[str, ...]):
    for name in path:
        section = section.get(name) if isinstance(section, dict) else None
    return section


def topology_options(cm: CachedModel) -> dict:
    """Where Redis is, per topology: the decorator's address options, all read from the model pod's env."""
    topology = cm.redis_topology
    if topology == "sentinel":
        options = {"sentinels": "${REDIS_SENTINELS}", "sentinel_service": "${REDIS_SENTINEL_SERVICE}",
                   "sentinel_password": "${REDIS_SENTINEL_PASSWORD:-}", "password": "${REDIS_PASSWORD:-}"}
    elif topology == "cluster":
        options = {"cluster_nodes": "${REDIS_CLUSTER_NODES}", "password": "${REDIS_PASSWORD:-}"}
    else:
        return {"url": "${REDIS_URL}", "password": "${REDIS_PASSWORD:-}"}
    external = cm.redis.get("external") or {}
    if external.get("username"):
        options["username"] = external["username"]
    if external.get("tls"):
        options["ssl"] = True
    return options


def service_config(cm: CachedModel) -> dict:
    """rest_model_service ServiceConfiguration as a dict: one model, with the decorator unless disabled."""
    model: dict = {"class_path": cm.model["classPath"], "create_endpoint": True}
    if cm.redis_mode != "disabled":
        model["decorators"] = [{"class_path": DECORATOR_CLASS_PATH, "configuration": decorator_configuration(cm)}]
    return {"service_title": f"{cm.name} (CachedModel)", "models": [model]}


def service_config_yaml(cm: CachedModel) -> str:
    return yaml.safe_dump(service_config(cm), sort_keys=True, default_flow_style=False)


def config_checksum(data: dict[str, str]) -> str:
    """sha256 over a ConfigMap's data, stable across dict order; goes into pod templates to roll them."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return digest.hexdigest()


def service_config_map(cm: CachedModel) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": cm.metadata(cm.config_name, "model", "model-service"),
        "data": {CONFIG_KEY: service_config_yaml(cm)},
    }
