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
    if cache.get("ttlSeconds"):
        options["ttl_seconds"] = cache["ttlSeconds"]
    if "socketTimeoutSeconds" in cache:
        options["socket_timeout"] = cache["socketTimeoutSeconds"]
    if "socketConnectTimeoutSeconds" in cache:
        options["socket_connect_timeout"] = cache["socketConnectTimeoutSeconds"]
    local = cache.get("localCache") or {}
    if local.get("size"):
        options["local_cache_size"] = local["size"]
        if "ttlSeconds" in local:
            options["local_cache_ttl_seconds"] = local["ttlSeconds"]
    return options


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
