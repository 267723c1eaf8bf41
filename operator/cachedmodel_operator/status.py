"""status of a CachedModel from its children's real state (pure: objects in, status dict out)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from cachedmodel_operator.builders.autoscaling import selector_text
from cachedmodel_operator.resource import SENTINELS, CachedModel

READY, MODEL_READY, CACHE_READY = "Ready", "ModelReady", "CacheReady"

# Condition reasons that only say "not ready yet": pods are read for a more telling one.
POD_DIAGNOSED = frozenset({"RollingOut", "PodsNotReady", "PodNotReady"})
# Every reason the conditions give without looking at pods; any other False reason came from a pod.
GENERIC_REASONS = POD_DIAGNOSED | {"DeploymentMissing", "StatefulSetMissing", "Progressing", "ScaledToZero",
                                   "PodsReady", "RedisReady", "CacheDisabled", "ExternalRedis"}
PART_LIMIT = 300  # each piece of pod text (waiting message, termination message) in a condition message
MESSAGE_LIMIT = 1024  # a whole condition message
# Waiting reasons of a container that is simply on its way up.
STARTING = frozenset({"ContainerCreating", "PodInitializing"})
# `pkg.module.SomeError: text` / `Error: text`: the line of a log tail (a Python traceback ends with it,
# possibly followed by shutdown chatter) that says what went wrong.
ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception)(?::|$)")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, ok: bool, reason: str, message: str) -> dict:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def clip(text: str, limit: int = PART_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def last_words(text: str | None, limit: int = PART_LIMIT) -> str:
    """The telling part of a termination message. With FallbackToLogsOnError it is the log tail (a
    traceback, then shutdown lines), so prefer the last `SomeError: ...` line, else the last lines."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    errors = [line for line in lines if ERROR_LINE.match(line)]
    if errors:
        return clip(errors[-1], limit)
    kept = [lines.pop()]
    while lines and len(" / ".join([lines[-1], *kept])) <= limit:
        kept.insert(0, lines.pop())
    return clip(" / ".join(kept), limit)


def termination(terminated: dict) -> str:
    """`exit code 1 (Error): <last words>` of a state.terminated / lastState.terminated."""
    text = f"exit code {terminated.get('exitCode')}"
    if terminated.get("signal"):
        text += f", signal {terminated['signal']}"
    if terminated.get("reason"):
        text += f" ({terminated['reason']})"
    words = last_words(terminated.get("message"))
    return f"{text}: {words}" if words else text


def _failed(terminated: dict | None) -> bool:
    return bool(terminated) and (terminated.get("exitCode") not in (0, None) or terminated.get("reason") == "OOMKilled")


def _termination_reason(terminated: dict, default: str) -> str:
    return "OOMKilled" if terminated.get("reason") == "OOMKilled" else default


def container_problem(status: dict) -> tuple[int, str, str] | None:
    """(rank, reason, message) of one containerStatuses entry; lower rank = more telling; None if fine."""
    name = f"container {status.get('name')}"
    state, last = status.get("state") or {}, (status.get("lastState") or {}).get("terminated")
    waiting, terminated = state.get("waiting"), state.get("terminated")
    if waiting and waiting.get("reason") and waiting["reason"] not in STARTING:
        message = f"{name}: {waiting['reason']}"
        if waiting.get("message"):
            message += f": {clip(waiting['message'].strip())}"
        if _failed(last):
            message += f"; last termination: {termination(last)}"
        return 0, waiting["reason"], message
    if _failed(terminated):
        return 1, _termination_reason(terminated, "ContainerFailed"), f"{name} terminated: {termination(terminated)}"
    if state.get("running") and not status.get("ready") and _failed(last):
        restarts = status.get("restartCount", 0)
        return 4, _termination_reason(last, "ContainerRestarted"), \
            f"{name} restarted {restarts} time(s), not ready; last termination: {termination(last)}"
    return None


def pod_problem(pod: dict) -> tuple[int, str, str] | None:
    """The most telling thing wrong with one pod: a container's waiting reason or failed termination,
    unschedulable, failed (e.g. evicted). None for a healthy (or merely starting) pod."""
    status = pod.get("status") or {}
    found = [p for p in map(container_problem, (status.get("initContainerStatuses") or [])
                            + (status.get("containerStatuses") or [])) if p]
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            found.append((2, cond.get("reason") or "Unschedulable",
                          f"not scheduled: {clip((cond.get('message') or '').strip() or 'no reason given')}"))
    if status.get("phase") == "Failed":
        found.append((3, status.get("reason") or "PodFailed",
                      f"failed: {clip((status.get('message') or '').strip() or 'no reason given')}"))
    if not found:
        return None
    rank, reason, message = min(found, key=lambda p: p[0])
    return rank, reason, f"pod {(pod.get('metadata') or {}).get('name')}: {message}"


def pods_problem(pods: list[dict] | None) -> tuple[str, str] | None:
    """(reason, message) of the most telling pod problem, newest pods first on ties (they run the
    current spec); pods being deleted are ignored. Pure and deterministic, so status does not flap."""
    live = [p for p in pods or [] if not (p.get("metadata") or {}).get("deletionTimestamp")]
    live.sort(key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "",
                             (p.get("metadata") or {}).get("name") or ""), reverse=True)
    problems = [(problem, index) for index, problem in enumerate(map(pod_problem, live)) if problem]
    if not problems:
        return None
    (_, reason, message), _ = min(problems, key=lambda item: (item[0][0], item[1]))
    return reason, message


def diagnosed(cond: dict, pods: list[dict] | None) -> dict:
    """A generic not-ready condition, with the pods' most telling problem as reason and in the message."""
    if cond["status"] == "True" or cond["reason"] not in POD_DIAGNOSED:
        return cond
    problem = pods_problem(pods)
    if problem is None:
        return cond
    reason, message = problem
    return condition(cond["type"], False, reason, clip(f"{cond['message']}; {message}", MESSAGE_LIMIT))


def pod_warnings(old: dict | None, new: dict, warned: dict[str, set[str]] | None = None) -> list[tuple[str, str]]:
    """(reason, message) for Warning events: a ModelReady/CacheReady reason that came from the pods, differs
    from the one in `old` status and is not in `warned` (condition type -> reasons already reported in this
    not-ready episode; a crash loop cycles CrashLoopBackOff/ContainerRestarted and must not repeat them)."""
    before = {c.get("type"): c for c in (old or {}).get("conditions") or []}
    warned = warned or {}
    warnings = []
    for cond in new.get("conditions") or []:
        if cond["type"] not in (MODEL_READY, CACHE_READY) or cond["status"] != "False":
            continue
        if (cond["reason"] in GENERIC_REASONS or cond["reason"] in warned.get(cond["type"], ())
                or (before.get(cond["type"]) or {}).get("reason") == cond["reason"]):
            continue
        warnings.append((cond["reason"], f"{cond['type']}: {cond['message']}"))
    return warnings


def remember_warnings(warned: dict[str, set[str]], status: dict) -> None:
    """Record the pod reasons now in `status`; forget a condition's reasons once it is True again."""
    for cond in status.get("conditions") or []:
        if cond["type"] not in (MODEL_READY, CACHE_READY):
            continue
        if cond["status"] == "True":
            warned.pop(cond["type"], None)
        elif cond["reason"] not in GENERIC_REASONS:
            warned.setdefault(cond["type"], set()).add(cond["reason"])


def model_condition(cm: CachedModel, deployment: dict | None, pods: list[dict] | None = None) -> tuple[dict, int]:
    """(ModelReady condition, ready replicas) from the Deployment (None = not there) and its pods."""
    cond, ready = _model_condition(cm, deployment)
    return diagnosed(cond, pods), ready


def _model_condition(cm: CachedModel, deployment: dict | None) -> tuple[dict, int]:
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


def cache_condition(cm: CachedModel, statefulset: dict | None, pods: list[dict] | None = None,
                    sentinels: dict | None = None) -> dict:
    """CacheReady from the Redis StatefulSet(s) (None = not there; `sentinels` in mode sentinel) and their pods."""
    return diagnosed(_cache_condition(cm, statefulset, sentinels), pods)


def needs_pods(cm: CachedModel, deployment: dict | None, statefulset: dict | None,
               sentinels: dict | None = None) -> tuple[bool, bool]:
    """(model pods, Redis pods): which pods compute_status would read, i.e. whose workload is not ready
    for a generic reason. All ready = no pod reads at all."""
    model = _model_condition(cm, deployment)[0]["reason"] in POD_DIAGNOSED
    cache = cm.redis_mode == "managed" and _cache_condition(cm, statefulset, sentinels)["reason"] in POD_DIAGNOSED
    return model, cache


def redis_nodes(cm: CachedModel, statefulset: dict | None, sentinels: dict | None = None) -> tuple[int, int]:
    """(ready, desired) managed Redis pods: data nodes plus, in mode sentinel, the Sentinels."""
    desired = cm.redis_nodes + (SENTINELS if cm.redis["mode"] == "sentinel" else 0)
    ready = sum(int(((sts or {}).get("status") or {}).get("readyReplicas") or 0) for sts in (statefulset, sentinels))
    return ready, desired


def _workload_condition(statefulset: dict | None, name: str, what: str, want: int) -> dict | None:
    """Why one Redis StatefulSet is not ready yet (None when it is)."""
    if statefulset is None:
        return condition(CACHE_READY, False, "StatefulSetMissing", f"StatefulSet {name} not found")
    st = statefulset.get("status") or {}
    generation = (statefulset.get("metadata") or {}).get("generation") or 0
    if int(st.get("observedGeneration") or 0) < generation:
        return condition(CACHE_READY, False, "Progressing", f"StatefulSet {name} change not yet observed")
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return condition(CACHE_READY, False, "RollingOut", f"{what} being replaced")
    ready = int(st.get("readyReplicas") or 0)
    if ready < want:
        return condition(CACHE_READY, False, "PodNotReady", f"{ready}/{want} {what} ready")
    return None


def _cache_condition(cm: CachedModel, statefulset: dict | None, sentinels: dict | None = None) -> dict:
    mode = cm.redis_mode
    if mode == "managed" and cm.redis["mode"] != "standalone":
        topology = cm.redis["mode"]
        found = _workload_condition(statefulset, cm.redis_name, "Redis pods", cm.redis_nodes)
        if found is None and topology == "sentinel":
            found = _workload_condition(sentinels, cm.redis_sentinel_name, "Sentinels", SENTINELS)
        if found is not None:
            return found
        ready = (f"{cm.redis_nodes} Redis pods (1 primary, {cm.redis_nodes - 1} replicas) and {SENTINELS} Sentinels "
                 f"ready" if topology == "sentinel" else
                 f"{cm.redis_nodes} Redis Cluster nodes ready ({cm.redis['cluster']['shards']} shards, cluster ok)")
        return condition(CACHE_READY, True, "RedisReady", ready)
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
                   old_status: dict | None = None, error: str | None = None, timestamp: str | None = None,
                   model_pods: list[dict] | None = None, redis_pods: list[dict] | None = None,
                   sentinels: dict | None = None) -> dict:
    """The whole status; `error` (a failed reconcile) makes Ready False with reason ReconcileError;
    the pods (when given) turn a generic not-ready reason into the pods' own (CrashLoopBackOff ...)."""
    model_cond, ready = model_condition(cm, deployment, model_pods)
    cache_cond = cache_condition(cm, statefulset, redis_pods, sentinels)
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
    redis: dict = {"source": cm.redis_mode}
    if cm.redis_topology:
        redis["mode"] = cm.redis_topology
    if cm.redis_mode == "managed":
        redis.update(maxmemory=cm.redis["maxmemory"], maxmemoryPolicy=cm.redis["maxmemoryPolicy"])
        ready_nodes, desired_nodes = redis_nodes(cm, statefulset, sentinels)
        redis.update(readyNodes=ready_nodes, desiredNodes=desired_nodes, nodes=f"{ready_nodes}/{desired_nodes}")
    else:
        redis.update(maxmemory=cm.redis_mode, maxmemoryPolicy=cm.redis_mode)
    if cm.redis_url:
        redis["url"] = without_credentials(cm.redis_url)
    if cm.redis_topology == "sentinel":
        redis["sentinelService"] = cm.sentinel_service
    current = int(((deployment or {}).get("status") or {}).get("replicas") or 0)
    status = {
        "url": cm.url,
        # current and selector: the scale subresource's (kubectl scale, HPA, KEDA)
        "replicas": {"ready": ready, "desired": cm.model["replicas"], "current": current},
        "selector": selector_text(cm),
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
