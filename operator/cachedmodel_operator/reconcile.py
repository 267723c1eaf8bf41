"""One reconcile of one CachedModel: make the children match the spec, then tell the truth in status.

Synchronous (runs in a worker thread); all decisions come from the pure builders and status modules.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from cachedmodel_operator import builders, schema
from cachedmodel_operator.builders import model as model_builder, redis as redis_builder
from cachedmodel_operator.kube import Kube
from cachedmodel_operator.resource import PASSWORD_KEY, CachedModel
from cachedmodel_operator.status import (compute_status, needs_pods, pod_warnings, remember_warnings,
                                         status_changed)

log = logging.getLogger(__name__)


@dataclass
class Memory:
    """What a worker remembers between reconciles of one CachedModel."""

    desired: dict[tuple[str, str], dict] = field(default_factory=dict)  # (kind, name) -> last applied manifest
    pruned_mode: str | None = None  # the non-managed Redis mode we already cleaned up for
    status: dict | None = None  # the status we last wrote
    checked: set[tuple[str, str]] = field(default_factory=set)  # children found free to take (once per worker)
    warned: dict[str, set[str]] = field(default_factory=dict)  # condition type -> pod reasons already evented


class ChildConflict(Exception):
    """A child's name is taken by an object another controller controls: we refuse to seize it."""


def foreign_controller(live: dict | None, cm: CachedModel) -> dict | None:
    """The controller owner reference of `live` if it is neither this CachedModel nor an earlier one of
    the same name (whose children the garbage collector is about to remove), else None. Pure."""
    for ref in ((live or {}).get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return None if _ours(ref, cm) else ref
    return None


def owned(live: dict | None, cm: CachedModel) -> bool:
    """True when this CachedModel (or an earlier one of the same name) controls `live`. Labels do not count:
    they are copied by hand and survive `--cascade=orphan`, which hands the object to the user. Pure."""
    refs = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and _ours(ref, cm) for ref in refs)


def _ours(ref: dict, cm: CachedModel) -> bool:
    return ref.get("uid") == cm.uid or (ref.get("kind") == schema.KIND and ref.get("name") == cm.name)


_UNREAD = object()


def check_free(kube: Kube, cm: CachedModel, kind: str, name: str, memory: Memory, live=_UNREAD) -> None:
    """Server-side apply with force would silently take over an object another controller runs (and the
    two would then fight over it): check each child name once per worker, raise ChildConflict if taken."""
    if (kind, name) in memory.checked:
        return
    if live is _UNREAD:
        live = kube.get(kind, cm.namespace, name)
    ref = foreign_controller(live, cm)
    if ref is not None:
        raise ChildConflict(f"{kind} {cm.namespace}/{name} already exists and is controlled by {ref.get('kind')} "
                            f"{ref.get('name')}: the operator will not take it over; delete or rename it, or "
                            f"rename this CachedModel")
    memory.checked.add((kind, name))


def ensure_secret(kube: Kube, cm: CachedModel, memory: Memory | None = None) -> str:
    """Create the Redis password Secret once; never rewrite an existing one. Returns its uid.

    One of ours that lost its key is replaced; a Secret of that name we do not own is never deleted
    (it may hold someone's credentials): ChildConflict, so status and an event say what to do."""
    live = kube.get("Secret", cm.namespace, cm.redis_secret_name)
    check_free(kube, cm, "Secret", cm.redis_secret_name, memory or Memory(), live)
    if live is not None and PASSWORD_KEY not in (live.get("data") or {}):
        if not owned(live, cm):
            raise ChildConflict(f"Secret {cm.namespace}/{cm.redis_secret_name} already exists, has no {PASSWORD_KEY!r} "
                                f"key and is not owned by this CachedModel: the operator will not replace it; add "
                                f"the key, delete or rename the Secret, or rename this CachedModel")
        log.warning("Secret %s/%s lost its %r key: replacing it", cm.namespace, cm.redis_secret_name, PASSWORD_KEY)
        kube.delete("Secret", cm.namespace, cm.redis_secret_name, uid=live["metadata"]["uid"])
        live = None
    if live is None:
        try:
            live = kube.create(builders.password_secret(cm))
        except ApiException as error:
            if error.status != 409:
                raise
            live = kube.get("Secret", cm.namespace, cm.redis_secret_name)
    return live["metadata"]["uid"]


def prune_redis(kube: Kube, cm: CachedModel) -> None:
    """Remove managed-Redis children left from an earlier spec (switched to external Redis or cache off)."""
    names = {"StatefulSet": [cm.redis_name, cm.redis_sentinel_name],
             "Service": [cm.redis_name, cm.redis_headless_name, cm.redis_sentinel_name],
             "ConfigMap": [cm.redis_config_name], "NetworkPolicy": [cm.redis_name],
             "PodDisruptionBudget": [cm.redis_name, cm.redis_sentinel_name], "Secret": [cm.redis_secret_name]}
    for kind, kind_names in names.items():
        for name in kind_names:
            if kube.delete(kind, cm.namespace, name, owner_uid=cm.uid):
                log.info("pruned %s %s/%s (spec.redis mode is now %s)", kind, cm.namespace, name, cm.redis_mode)


def apply_child(kube: Kube, child: dict) -> dict:
    """Server-side apply; a StatefulSet whose immutable fields changed (e.g. persistence) is replaced."""
    try:
        return kube.apply(child)
    except ApiException as error:
        if error.status == 422 and child["kind"] == "StatefulSet" and "Forbidden" in (error.body or ""):
            meta = child["metadata"]
            log.info("replacing StatefulSet %s/%s: immutable fields changed", meta["namespace"], meta["name"])
            kube.delete("StatefulSet", meta["namespace"], meta["name"])
            return kube.apply(child)
        raise


def reconcile(kube: Kube, body: dict, memory: Memory, full: bool = True) -> dict:
    """Apply children (when full) and write status; returns the status. Raises on API errors."""
    cm = CachedModel.from_body(body)
    live: dict[tuple[str, str], dict] = {}
    if full:
        auth_uid = ensure_secret(kube, cm, memory) if cm.redis_mode == "managed" else None
        if cm.redis_mode != "managed" and memory.pruned_mode != cm.redis_mode:
            prune_redis(kube, cm)
            memory.pruned_mode = cm.redis_mode
        elif cm.redis_mode == "managed":
            memory.pruned_mode = None
        desired = builders.desired_children(cm, auth_uid)
        memory.desired = {(c["kind"], c["metadata"]["name"]): c for c in desired}
        for child in desired:
            check_free(kube, cm, child["kind"], child["metadata"]["name"], memory)
        for child in desired:
            live[(child["kind"], child["metadata"]["name"])] = apply_child(kube, child)
        log.debug("CachedModel %s/%s: applied %d children", cm.namespace, cm.name, len(desired))
    return write_status(kube, cm, body, memory, observed_status(kube, cm, memory, body, live))


def observed_status(kube: Kube, cm: CachedModel, memory: Memory, body: dict, live: dict | None = None,
                    error: str | None = None) -> dict:
    """Status from the live Deployment/StatefulSet, and from their pods only when those are not ready
    (one label-selected list per not-ready workload; nothing more while everything is ready)."""
    live = live or {}
    deployment = live.get(("Deployment", cm.model_name)) or kube.get("Deployment", cm.namespace, cm.model_name)
    statefulset = sentinels = None
    if cm.redis_mode == "managed":
        statefulset = (live.get(("StatefulSet", cm.redis_name))
                       or kube.get("StatefulSet", cm.namespace, cm.redis_name))
        if cm.redis["mode"] == "sentinel":
            sentinels = (live.get(("StatefulSet", cm.redis_sentinel_name))
                         or kube.get("StatefulSet", cm.namespace, cm.redis_sentinel_name))
    want_model, want_redis = needs_pods(cm, deployment, statefulset, sentinels)
    model_pods = (kube.list_pods(cm.namespace, cm.selector_labels(model_builder.COMPONENT, model_builder.APP))
                  if want_model else None)
    redis_selector = cm.selector_labels(redis_builder.COMPONENT, redis_builder.APP)
    if sentinels is not None:  # the Sentinels' pods too
        redis_selector = {key: redis_selector[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    redis_pods = kube.list_pods(cm.namespace, redis_selector) if want_redis else None
    return compute_status(cm, deployment, statefulset, old_status=memory.status or body.get("status"),
                          error=error, model_pods=model_pods, redis_pods=redis_pods, sentinels=sentinels)


def write_status(kube: Kube, cm: CachedModel, body: dict, memory: Memory, status: dict) -> dict:
    old = memory.status or body.get("status")
    if status_changed(old, status):
        kube.patch_status(cm.namespace, cm.name, status)
        before, after = _ready(old), _ready(status)
        if before.get("status") != after.get("status") or before.get("reason") != after.get("reason"):
            log.info("CachedModel %s/%s Ready=%s (%s): %s", cm.namespace, cm.name, after.get("status"),
                     after.get("reason"), after.get("message"))
        for reason, message in pod_warnings(old, status, memory.warned):
            kube.warn(body, reason, message)
    remember_warnings(memory.warned, status)
    memory.status = status
    return status


def _ready(status: dict | None) -> dict:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def report_error(kube: Kube, body: dict, memory: Memory, message: str) -> None:
    """Ready=False/ReconcileError in status (best effort) after a failed reconcile."""
    cm = CachedModel.from_body(body)
    write_status(kube, cm, body, memory, observed_status(kube, cm, memory, body, error=message))
