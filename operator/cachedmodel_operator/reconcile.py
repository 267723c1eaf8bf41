"""One reconcile of one CachedModel: make the children match the spec, then tell the truth in status.

Synchronous (runs in a worker thread); all decisions come from the pure builders and status modules.
"""
from __future__ import annotations

import base64
import binascii
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
    autoscaler_pruned: bool = False  # no spec.model.autoscaling, and its HPA already deleted (once per worker)
    status: dict | None = None  # the status we last wrote
    checked: set[tuple[str, str]] = field(default_factory=set)  # children found free to take (once per worker)
    warned: dict[str, set[str]] = field(default_factory=dict)  # condition type -> pod reasons already evented
    provided_secret: str | None = None  # uid of a bring-your-own password Secret already announced (event)


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


# what ensure_secret does with the `<name>-redis-auth` Secret it finds (secret_source)
CREATE, KEEP, REPLACE, PROVIDED = "create", "keep", "replace", "provided"
PROVIDED_REASON = "RedisPasswordProvided"


def _password_problem(encoded: str) -> str | None:
    """Why a password (base64, as the API returns Secret data) cannot be the managed Redis's, or None.
    It goes into redis.conf inside double quotes (requirepass, masterauth, sentinel auth-pass). Pure."""
    try:
        password = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "it is not UTF-8 text"
    if not password:
        return "it is empty (Redis would run without a password)"
    if password.endswith(("\n", "\r")):
        return ("it ends with a line break (a Secret made --from-file of a file written with echo?): make it with "
                "--from-literal, or from a file written with printf")
    if any(c in '"\\' or ord(c) < 32 or ord(c) == 127 for c in password):
        return "it holds a double quote, a backslash or a control character, which redis.conf cannot take"
    return None


def secret_source(live: dict | None, cm: CachedModel) -> str:
    """Pure: what to do with the Secret `<name>-redis-auth` as found (`live`, None when absent).

    CREATE: absent, so the operator makes one with a generated password (owned: it goes with the
    CachedModel). KEEP: ours, with its password. REPLACE: ours, but its `password` key was removed or
    emptied. PROVIDED: bring your own password: a Secret this CachedModel does not control (made by hand,
    or by a secrets tool such as Sealed Secrets or External Secrets, which may control it) with a usable
    `password`: Redis and the model pods use it as it is; the operator never rewrites, replaces or
    deletes it (pruning and the garbage collector leave it too). Anything else of that name is someone
    else's and unusable: ChildConflict naming the way out, and the Secret is left alone."""
    if live is None:
        return CREATE
    where = f"Secret {cm.namespace}/{cm.redis_secret_name}"
    encoded = (live.get("data") or {}).get(PASSWORD_KEY)
    if owned(live, cm):
        return KEEP if encoded else REPLACE
    ref = foreign_controller(live, cm)
    by = f" (it is controlled by {ref.get('kind')} {ref.get('name')})" if ref else ""
    if encoded is None:
        raise ChildConflict(f"{where} already exists, has no {PASSWORD_KEY!r} key and is not owned by this "
                            f"CachedModel{by}: the operator will not replace it; add the key (your own Redis "
                            f"password), delete or rename the Secret, or rename this CachedModel")
    problem = _password_problem(encoded)
    if problem:
        raise ChildConflict(f"{where} is not owned by this CachedModel{by}, so its {PASSWORD_KEY!r} key would be "
                            f"the Redis password, but {problem}; fix the key, or delete the Secret to have the "
                            f"operator generate one")
    return PROVIDED


def _announce_provided(kube: Kube, cm: CachedModel, live: dict, memory: Memory) -> None:
    """Say once per worker (and again when it is another Secret) that the password is the user's."""
    uid = live["metadata"]["uid"]
    if memory.provided_secret == uid:
        return
    message = (f"Secret {cm.namespace}/{cm.redis_secret_name} is not owned by this CachedModel: its "
               f"{PASSWORD_KEY!r} is used as the Redis password, never rewritten or deleted by the operator")
    log.info("CachedModel %s/%s: %s", cm.namespace, cm.name, message)
    about = {"metadata": {"name": cm.name, "namespace": cm.namespace, "uid": cm.uid}}
    kube.warn(about, PROVIDED_REASON, message, event_type="Normal")
    memory.provided_secret = uid


def ensure_secret(kube: Kube, cm: CachedModel, memory: Memory | None = None) -> str:
    """Create the Redis password Secret once; never rewrite an existing one. Returns its uid.

    What happens to one that exists is secret_source's decision: one of ours that lost its key is
    replaced; one we do not own is never deleted (it may hold someone's credentials): with a usable
    `password` it is the user's own password (a Normal event says so), else ChildConflict, so status and
    a Warning event say what to do."""
    memory = memory or Memory()
    live = kube.get("Secret", cm.namespace, cm.redis_secret_name)
    source = secret_source(live, cm)
    if source == PROVIDED:
        _announce_provided(kube, cm, live, memory)
        return live["metadata"]["uid"]
    if source == REPLACE:
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
        autoscaling = bool(cm.model.get("autoscaling"))
        if not autoscaling and not memory.autoscaler_pruned:
            if kube.delete("HorizontalPodAutoscaler", cm.namespace, cm.model_name, owner_uid=cm.uid):
                log.info("pruned HorizontalPodAutoscaler %s/%s (spec.model.autoscaling unset)", cm.namespace,
                         cm.model_name)
        memory.autoscaler_pruned = not autoscaling
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
