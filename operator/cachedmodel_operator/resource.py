"""A defaulted CachedModel as the builders see it: names, labels, owner reference and the Redis mode.

Pure: built from the resource body (a dict), never talks to the cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cachedmodel_operator import schema

# Managed Redis defaults live here, not in the CRD schema: a schema default would make every
# `spec.redis.external` resource look as if it also set managed fields (see the CRD's CEL rule).
REDIS_DEFAULTS = {
    "mode": "standalone",
    "image": "redis:7.2",
    "maxmemory": "256mb",
    "maxmemoryPolicy": "allkeys-lru",
    "persistence": {"enabled": False, "size": "1Gi"},
    "resources": {},
}
SENTINEL_DEFAULTS = {"replicas": 2}
CLUSTER_DEFAULTS = dict(schema.CLUSTER_DEFAULTS)
REDIS_PORT = 6379
SENTINEL_PORT = 26379
CLUSTER_BUS_PORT = 16379
SENTINELS = 3  # Sentinel pods of a managed sentinel topology; quorum 2
SENTINEL_QUORUM = 2
MANAGER = "cachedmodel-operator"
PART_OF = "cachedmodel"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
CONFIG_CHECKSUM = f"{schema.GROUP}/config-checksum"
AUTH_UID = f"{schema.GROUP}/redis-auth-uid"
PASSWORD_KEY = "password"


@dataclass(frozen=True)
class CachedModel:
    """A CachedModel resource with defaults applied (the API server's and the operator's)."""

    name: str
    namespace: str
    uid: str | None
    generation: int | None
    model: dict = field(repr=False)
    cache: dict = field(repr=False)
    redis: dict = field(repr=False)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "CachedModel":
        body = schema.apply_defaults(dict(body))
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        redis = dict(spec.get("redis") or {})
        if "external" not in redis:
            for key, value in REDIS_DEFAULTS.items():
                redis.setdefault(key, value)
            redis["persistence"] = {**REDIS_DEFAULTS["persistence"], **redis["persistence"]}
            if redis["mode"] == "sentinel":
                redis["sentinel"] = {**SENTINEL_DEFAULTS, **(redis.get("sentinel") or {})}
            if redis["mode"] == "cluster":
                redis["cluster"] = {**CLUSTER_DEFAULTS, **(redis.get("cluster") or {})}
        return cls(name=meta["name"], namespace=meta.get("namespace") or "default", uid=meta.get("uid"),
                   generation=meta.get("generation"), model=spec["model"], cache=spec["cache"], redis=redis)

    # -- what kind of Redis
    @property
    def redis_mode(self) -> str:
        """'disabled' (no cache), 'external' (spec.redis.external) or 'managed' (a StatefulSet we run)."""
        if not self.cache.get("enabled", True):
            return "disabled"
        return "external" if "external" in self.redis else "managed"

    @property
    def redis_topology(self) -> str | None:
        """standalone, sentinel or cluster: spec.redis.mode when managed, what spec.redis.external names when
        external; None when the cache is disabled."""
        if self.redis_mode == "disabled":
            return None
        if self.redis_mode == "managed":
            return self.redis["mode"]
        external = self.redis["external"]
        return "sentinel" if "sentinels" in external else "cluster" if "clusterNodes" in external else "standalone"

    @property
    def redis_nodes(self) -> int:
        """Redis data pods of the managed StatefulSet."""
        mode = self.redis.get("mode")
        if mode == "sentinel":
            return 1 + self.redis["sentinel"]["replicas"]
        if mode == "cluster":
            return self.redis["cluster"]["shards"] * (1 + self.redis["cluster"]["replicasPerShard"])
        return 1

    # -- child names
    @property
    def model_name(self) -> str:
        return self.name

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"

    @property
    def redis_name(self) -> str:
        return f"{self.name}-redis"

    @property
    def redis_headless_name(self) -> str:
        return f"{self.name}-redis-headless"

    @property
    def redis_sentinel_name(self) -> str:
        """StatefulSet, governing (headless) Service and PDB of the Sentinels."""
        return f"{self.name}-redis-sentinel"

    @property
    def sentinel_service(self) -> str:
        """The name under which the Sentinels monitor the primary (the decorator's sentinel_service)."""
        if self.redis_mode == "external":
            return self.redis["external"]["sentinelService"]
        return self.name

    @property
    def redis_config_name(self) -> str:
        return f"{self.name}-redis-config"

    @property
    def redis_secret_name(self) -> str:
        return f"{self.name}-redis-auth"

    # -- addresses
    @property
    def url(self) -> str:
        return f"http://{self.name}.{self.namespace}.svc:{self.model['port']}"

    def redis_host(self, index: int) -> str:
        """Stable DNS name of Redis data pod `index` (through the headless Service; the pod IP changes)."""
        return f"{self.redis_name}-{index}.{self.redis_headless_name}.{self.namespace}.svc"

    def sentinel_host(self, index: int) -> str:
        return f"{self.redis_sentinel_name}-{index}.{self.redis_sentinel_name}.{self.namespace}.svc"

    @property
    def sentinels(self) -> list[str]:
        """host:port of the Sentinels (REDIS_SENTINELS, comma-separated), managed or external."""
        if self.redis_mode == "external":
            return list(self.redis["external"].get("sentinels") or [])
        return [f"{self.sentinel_host(i)}:{SENTINEL_PORT}" for i in range(SENTINELS)]

    @property
    def cluster_nodes(self) -> list[str]:
        """host:port startup nodes of the Redis Cluster (REDIS_CLUSTER_NODES, comma-separated)."""
        if self.redis_mode == "external":
            return list(self.redis["external"].get("clusterNodes") or [])
        return [f"{self.redis_host(i)}:{REDIS_PORT}" for i in range(self.redis_nodes)]

    @property
    def redis_url(self) -> str | None:
        """The URL the model pods get in REDIS_URL (no password in it); None for sentinel and cluster."""
        if self.redis_topology != "standalone":
            return None
        if self.redis_mode == "managed":
            return f"redis://{self.redis_name}.{self.namespace}.svc:{REDIS_PORT}/0"
        if self.redis_mode == "external":
            return self.redis["external"]["url"]
        return None

    @property
    def password_secret(self) -> tuple[str, str] | None:
        """(Secret name, key) holding the Redis password, if any."""
        if self.redis_mode == "managed":
            return self.redis_secret_name, PASSWORD_KEY
        ref = self.redis.get("external", {}).get("passwordSecretRef") if self.redis_mode == "external" else None
        return (ref["name"], ref["key"]) if ref else None

    @property
    def sentinel_password_secret(self) -> tuple[str, str] | None:
        """(Secret name, key) of the Sentinels' password: the managed Secret (Sentinels share the password)."""
        if self.redis_topology != "sentinel":
            return None
        if self.redis_mode == "managed":
            return self.redis_secret_name, PASSWORD_KEY
        ref = self.redis["external"].get("sentinelPasswordSecretRef")
        return (ref["name"], ref["key"]) if ref else None

    # -- metadata of children
    def labels(self, component: str, app: str) -> dict[str, str]:
        """Standard app.kubernetes.io labels; selectors use selector_labels (a stable subset)."""
        return {
            "app.kubernetes.io/name": app,
            LABEL_INSTANCE: self.name,
            LABEL_COMPONENT: component,
            "app.kubernetes.io/part-of": PART_OF,
            LABEL_MANAGED_BY: MANAGER,
        }

    def selector_labels(self, component: str, app: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": app, LABEL_INSTANCE: self.name, LABEL_COMPONENT: component}

    def owner_references(self) -> list[dict]:
        if not self.uid:
            return []
        return [{"apiVersion": schema.API_VERSION, "kind": schema.KIND, "name": self.name, "uid": self.uid,
                 "controller": True, "blockOwnerDeletion": True}]

    def metadata(self, name: str, component: str, app: str) -> dict:
        meta = {"name": name, "namespace": self.namespace, "labels": self.labels(component, app)}
        owners = self.owner_references()
        if owners:
            meta["ownerReferences"] = owners
        return meta
