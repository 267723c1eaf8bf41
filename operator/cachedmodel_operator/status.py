"""status of a CachedModel from its children's real state (pure: objects in, status dict out)."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from cachedmodel_operator.resource import CachedModel

READY, MODEL_READY, CACHE_READY = "Ready", "ModelReady", "CacheReady"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, ok: bool, reason: str, message: str) -> dict:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def model_condition(cm: CachedModel, deployment: dict | None) -> tuple[dict, int]:
    """(ModelReady condition, ready replicas) from the Deployment (None = not there)."""
    desired = cm.model["replicas"]
    if deployment is None:
        return condition(MODEL_READY, False, "DeploymentMissing", f"Deployment {cm.model_name} not found"), 0
    st = deployment.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    if int(st.get("observedGeneration") or 0) < generation:
        return condition(MODEL_READY, False, "Progressing", "Deployment change not yet observed"), ready
    if desired == 0:
        return condition(MODEL_READY, False, "ScaledToZero", "spec.model.replicas is 0"), ready
    if updated < desired or total > desired:
        return condition(MODEL_READY, False, "RollingOut",
                         f"{updated}/{desired} pods updated, {ready} ready"), ready
    if ready < desired:
        return condition(MODEL_READY, False, "PodsNotReady", f"{ready}/{desired} pods ready"), ready
    return condition(MODEL_READY, True, "PodsReady", f"{ready}/{desired} pods ready"), ready


def cache_condition(cm: CachedModel, statefulset: dict | None) -> dict:
    mode = cm.redis_mode
    if mode == "disabled":
        return condition(CACHE_READY, True, "CacheDisabled", "spec.cache.enabled is false: no decorator, no Redis")
    if mode == "external":
        return condition(CACHE_READY, True, "ExternalRedis",
                         "using spec.redis.external (not probed by the operator; the decorator falls back "
                         "to the model when it is unreachable)")
    if statefulset is None:
        return condition(CACHE_READY, False, "StatefulSetMissing", f"StatefulSet {cm.redis_name} not found")
    st = statefulset.get("status") or {}
    generation = (statefulset.get("metadata") or {}).get("generation") or 0
    if int(st.get("observedGeneration") or 0) < generation:
        return condition(CACHE_READY, False, "Progressing", "StatefulSet change not yet observed")
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return condition(CACHE_READY, False, "RollingOut", "Redis pod is being replaced")
    if int(st.get("readyReplicas") or 0) < 1:
        return condition(CACHE_READY, False, "PodNotReady", "Redis pod is not ready")
    return condition(CACHE_READY, True, "RedisReady", "Redis pod is ready")


def without_credentials(url: str) -> str:
    """A Redis URL fit for status: any user:password@ part removed."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def merge_conditions(old: list[dict] | None, new: list[dict], timestamp: str | None = None) -> list[dict]:
    """Keep lastTransitionTime when a condition's status did not flip; set it when it did."""
    timestamp = timestamp or now()
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime")
        merged.append({**cond, "lastTransitionTime": before["lastTransitionTime"] if same else timestamp})
    return merged


def compute_status(cm: CachedModel, deployment: dict | None, statefulset: dict | None,
                   old_status: dict | None = None, error: str | None = None, timestamp: str | None = None) -> dict:
    """The whole status; `error` (a failed reconcile) makes Ready False with reason ReconcileError."""
    model_cond, ready = model_condition(cm, deployment)
    cache_cond = cache_condition(cm, statefulset)
    if error:
        ready_cond = condition(READY, False, "ReconcileError", error)
    elif model_cond["status"] == "True" and cache_cond["status"] == "True":
        ready_cond = condition(READY, True, "Ready", f"serving at {cm.url}")
    else:
        waiting = [c for c in (model_cond, cache_cond) if c["status"] != "True"]
        ready_cond = condition(READY, False, waiting[0]["reason"],
                               "; ".join(f"{c['type']}: {c['message']}" for c in waiting))
    conditions = [ready_cond, model_cond, cache_cond]
    for cond in conditions:
        if cm.generation is not None:
            cond["observedGeneration"] = cm.generation
    old_status = old_status or {}
    redis: dict = {"mode": cm.redis_mode}
    if cm.redis_mode == "managed":
        redis.update(maxmemory=cm.redis["maxmemory"], maxmemoryPolicy=cm.redis["maxmemoryPolicy"], url=cm.redis_url)
    else:
        redis.update(maxmemory=cm.redis_mode, maxmemoryPolicy=cm.redis_mode)
        if cm.redis_url:
            redis["url"] = without_credentials(cm.redis_url)
    status = {
        "url": cm.url,
        "replicas": {"ready": ready, "desired": cm.model["replicas"]},
        "redis": redis,
        "conditions": merge_conditions(old_status.get("conditions"), conditions, timestamp),
    }
    if cm.generation is not None:
        status["observedGeneration"] = cm.generation
    return status


def status_changed(old: dict | None, new: dict) -> bool:
    """True when writing `new` would change anything we own (avoids no-op writes and their events)."""
    old = old or {}
    return any(old.get(key) != value for key, value in new.items())
