"""kopf wiring: one asyncio worker per CachedModel, woken by its own events and by its children's.

Why not kopf's create/update/daemon handlers: daemons and change handlers make kopf add a finalizer
and progress annotations; with owner references the garbage collector already deletes children, so
the operator only needs to watch and converge. Each worker:
  * reconciles fully (apply every child + status) on start/resume, on a spec change (generation),
    when a child is deleted or drifted, and every RESYNC_SECONDS;
  * refreshes status only when a Deployment/StatefulSet reports progress or one of its pods changes
    (pods are watched so that a CrashLoopBackOff or ImagePullBackOff shows in status at once, although
    the Deployment's own status does not move);
  * on failure writes Ready=False/ReconcileError + a Warning event and retries with exponential
    backoff (never a hot loop); a spec change cuts the backoff short.
Workers are supervised: no exception ends one (an API server that is away for a moment raises urllib3
errors, not ApiException), and a task that dies anyway is replaced, so no CachedModel is orphaned.
Every child kind is watched with a server-side label selector: the API server streams only our objects.

Beside each worker runs its scrape loop (scraper.py): every CACHEDMODEL_SCRAPE_SECONDS it reads the ready
model pods' /metrics and writes status.cache only (a merge patch of that one key), so a refused or slow
scrape never touches a reconcile, and a reconcile never waits for a scrape.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field

import kopf
from kubernetes.client.exceptions import ApiException

from cachedmodel_operator import schema, settings
from cachedmodel_operator.builders import model as model_builder
from cachedmodel_operator.cache_metrics import Snapshot, cache_status, merge_patch, scrape_targets
from cachedmodel_operator.drift import drifted
from cachedmodel_operator.kube import Kube, load_api_client
from cachedmodel_operator.reconcile import Memory, reconcile, report_error
from cachedmodel_operator.resource import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER, CachedModel
from cachedmodel_operator.scraper import Scraper

log = logging.getLogger("cachedmodel_operator")

try:  # `cachedmodel-operator run` checks the environment first (exit 2 naming a bad variable) and sets this
    RESYNC_SECONDS = settings.seconds(os.environ, "CACHEDMODEL_RESYNC_SECONDS", settings.DEFAULT_RESYNC_SECONDS)
except settings.SettingsError:  # imported some other way: never a traceback at import
    RESYNC_SECONDS = settings.DEFAULT_RESYNC_SECONDS
DEBOUNCE_SECONDS = 0.05
BACKOFF_START, BACKOFF_MAX = 2.0, 300.0
CHILD_RESOURCES = [
    ("apps", "v1", "deployments"), ("apps", "v1", "statefulsets"), ("", "v1", "services"),
    ("", "v1", "configmaps"), ("networking.k8s.io", "v1", "networkpolicies"),
    ("policy", "v1", "poddisruptionbudgets"), ("autoscaling", "v2", "horizontalpodautoscalers"),
]
STATUS_KINDS = ("Deployment", "StatefulSet")
# (group, plural) of everything watched besides CachedModels: the API server filters these by our label
WATCHED_CHILDREN = frozenset((group, plural) for group, _, plural in CHILD_RESOURCES) | {("", "pods")}
CHILD_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"
CACHE_REWRITE_SECONDS = 120.0  # status.cache unchanged but for sampledAt: rewritten at most this often


@dataclass
class Worker:
    """The converging loop of one CachedModel."""

    body: dict
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    spec_changed: asyncio.Event = field(default_factory=asyncio.Event)
    full: bool = True
    memory: Memory = field(default_factory=Memory)
    generation: int | None = None
    failures: int = 0
    last_error: str | None = None
    task: asyncio.Task | None = None
    scrape_task: asyncio.Task | None = None
    history: list[Snapshot] = field(default_factory=list)  # the recent hit ratio's baselines
    cache: dict | None = None  # the status.cache we last wrote (or found)
    cache_written_at: float = 0.0

    def request(self, full: bool) -> None:
        self.full = self.full or full
        self.wake.set()


class Controller:
    def __init__(self, scraper: Scraper | None = None) -> None:
        self.workers: dict[tuple[str, str], Worker] = {}
        self.kube: Kube | None = None
        self._kube_lock = threading.Lock()
        self.scraper = scraper

    def kube_client(self) -> Kube:
        with self._kube_lock:  # called from worker threads
            if self.kube is None:
                self.kube = Kube(load_api_client(os.environ.get("KUBECONFIG") or None))
        return self.kube

    # ---- events
    def on_cachedmodel(self, event_type: str | None, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace"), meta.get("name"))
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            worker = self.workers.pop(key, None)
            for task in (worker.task, worker.scrape_task) if worker else ():
                if task:
                    task.cancel()
            return
        worker = self.workers.get(key)
        if worker is None:
            worker = self.workers[key] = Worker(body=obj)
            worker.generation = meta.get("generation")
            worker.cache = (obj.get("status") or {}).get("cache")
            self.start(key, worker)
            self.start_scraping(key, worker)
            worker.wake.set()
            return
        worker.body = obj
        if worker.task is not None and worker.task.done():  # belt and braces: the done callback normally did this
            self.start(key, worker)
        if meta.get("generation") != worker.generation:
            worker.generation = meta.get("generation")
            worker.spec_changed.set()
            worker.request(full=True)

    def on_child(self, event_type: str | None, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        owners = [ref for ref in meta.get("ownerReferences") or []
                  if ref.get("kind") == schema.KIND and ref.get("controller")]
        if not owners:
            return
        worker = self.workers.get((meta.get("namespace"), owners[0]["name"]))
        if worker is None:
            return
        kind = obj.get("kind")
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            worker.request(full=True)
            return
        desired = worker.memory.desired.get((kind, meta.get("name")))
        if desired is not None and drifted(obj, desired):
            worker.request(full=True)
        elif kind in STATUS_KINDS:
            worker.request(full=False)

    def on_pod(self, event_type: str | None, obj: dict) -> None:
        """A model or Redis pod changed: refresh that CachedModel's status (pods carry no owner reference
        to it; its name is their instance label)."""
        meta = obj.get("metadata") or {}
        worker = self.workers.get((meta.get("namespace"), (meta.get("labels") or {}).get(LABEL_INSTANCE)))
        if worker is not None:
            worker.request(full=False)

    # ---- supervision
    def start(self, key: tuple[str, str], worker: Worker) -> None:
        """Run the worker's loop as a task whose unexpected end is noticed (see _task_done)."""
        task = asyncio.get_running_loop().create_task(self.run(key, worker), name=f"cachedmodel {key}")
        task.add_done_callback(functools.partial(self._task_done, key, worker))
        worker.task = task

    def _task_done(self, key: tuple[str, str], worker: Worker, task: asyncio.Task) -> None:
        """A worker only ends by cancellation (deletion, shutdown); one that died is logged and replaced,
        with a full reconcile after the usual backoff (run() backs off first when failures > 0)."""
        if task.cancelled() or self.workers.get(key) is not worker or worker.task is not task:
            return
        error = task.exception()
        worker.failures += 1
        worker.full = True
        log.error("CachedModel %s/%s worker ended (%s): starting a new one", *key,
                  _describe(error) if error else "returned", exc_info=error)
        self.start(key, worker)

    # ---- status.cache from the model pods' /metrics
    def start_scraping(self, key: tuple[str, str], worker: Worker) -> None:
        if self.scraper is None:
            self.scraper = Scraper.from_env()
        if self.scraper.enabled:
            worker.scrape_task = asyncio.get_running_loop().create_task(self.scrape_loop(key, worker),
                                                                        name=f"cachedmodel scrape {key}")

    async def scrape_loop(self, key: tuple[str, str], worker: Worker) -> None:
        """One round right after the pods could be up, then every interval (jittered so that many
        CachedModels do not scrape in step); nothing ends the loop but cancellation."""
        delay = min(5.0, self.scraper.interval) * random.uniform(0.5, 1.0)
        while True:
            await asyncio.sleep(delay)
            delay = self.scraper.interval * random.uniform(0.9, 1.1)
            try:
                await self.scrape_once(key, worker)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the API away, a bug: logged, retried next round, never fatal
                log.warning("CachedModel %s/%s: could not update status.cache: %s", *key, _describe(error))

    async def scrape_once(self, key: tuple[str, str], worker: Worker) -> dict | None:
        """Read the ready model pods' /metrics and write status.cache (only that key). Returns what was written."""
        cm = CachedModel.from_body(worker.body)
        kube = self.kube_client()
        if cm.redis_mode == "disabled":  # no decorator, no cache series
            if worker.cache is not None:
                await asyncio.to_thread(kube.patch_status, cm.namespace, cm.name, {"cache": None})
                worker.cache, worker.history = None, []
            return None
        pods = await asyncio.to_thread(kube.list_pods, cm.namespace,
                                       cm.selector_labels(model_builder.COMPONENT, model_builder.APP))
        targets, ready = scrape_targets(pods, cm.model["port"])
        samples, errors = await self.scraper.scrape(cm.namespace, targets, cm.model["port"])
        if errors and len(errors) == len(targets):
            log.info("CachedModel %s/%s: no model pod answered /metrics: %s", *key, errors[0][1])
        unanswered = frozenset(uid for uid, _, _ in targets if uid not in samples)
        status, history = cache_status(samples, errors, ready, time.time(), worker.history, worker.cache,
                                       unanswered=unanswered)
        worker.history = history
        if not self._cache_due(worker, status):
            return worker.cache
        await asyncio.to_thread(kube.patch_status, cm.namespace, cm.name, {"cache": merge_patch(worker.cache, status)})
        worker.cache, worker.cache_written_at = status, time.monotonic()
        return status

    @staticmethod
    def _cache_due(worker: Worker, status: dict) -> bool:
        """Write when a figure changed, else only every CACHE_REWRITE_SECONDS (sampledAt alone moves)."""
        def figures(cache: dict | None) -> dict:
            return {k: v for k, v in (cache or {}).items() if k not in ("sampledAt", "recent")}
        def recent(cache: dict | None) -> dict:
            return {k: v for k, v in ((cache or {}).get("recent") or {}).items() if k != "windowSeconds"}
        changed = figures(worker.cache) != figures(status) or recent(worker.cache) != recent(status)
        return changed or time.monotonic() - worker.cache_written_at >= CACHE_REWRITE_SECONDS

    # ---- the loop
    async def run(self, key: tuple[str, str], worker: Worker) -> None:
        """Converge until cancelled; any exception is logged and retried after a backoff."""
        while True:
            if worker.failures:
                delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** (worker.failures - 1)) * random.uniform(0.9, 1.1)
                await _wait(worker.spec_changed, delay)
            else:
                if not await _wait(worker.wake, RESYNC_SECONDS):
                    worker.full = True
                await asyncio.sleep(DEBOUNCE_SECONDS)
            try:
                await self._cycle(key, worker)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an API outage outside reconcile (reporting): back off, never die
                worker.failures += 1
                worker.full = True
                log.exception("CachedModel %s/%s: unexpected worker error (attempt %d)", *key, worker.failures)

    async def _cycle(self, key: tuple[str, str], worker: Worker) -> None:
        """One reconcile (full or status only); a failure becomes status + event + backoff."""
        worker.wake.clear()
        worker.spec_changed.clear()
        full, worker.full = worker.full or bool(worker.failures), False
        body = worker.body
        try:
            await asyncio.to_thread(reconcile, self.kube_client(), body, worker.memory, full)
            if worker.failures:
                log.info("CachedModel %s/%s reconciled again after %d failure(s)", *key, worker.failures)
            worker.failures, worker.last_error = 0, None
        except asyncio.CancelledError:
            raise
        except Exception as error:  # every failure becomes status + event + backoff
            worker.failures += 1
            message = _describe(error)
            log.warning("CachedModel %s/%s reconcile failed (attempt %d): %s", *key, worker.failures, message)
            await asyncio.to_thread(self._report, body, worker, message)

    def _report(self, body: dict, worker: Worker, message: str) -> None:
        """Warning event and error status, both best effort: the API may be what is failing."""
        kube = self.kube_client()
        if message != worker.last_error or worker.failures in (1, 5, 10) or worker.failures % 20 == 0:
            kube.warn(body, "ReconcileError", message)
        worker.last_error = message
        try:
            report_error(kube, body, worker.memory, message)
        except Exception as error:  # status is best effort while the API is failing
            log.warning("could not write error status: %s", _describe(error))


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False


def _describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        try:
            detail = json.loads(error.body or "{}").get("message") or error.reason
        except ValueError:
            detail = error.reason
        return f"Kubernetes API {error.status}: {detail}"
    return f"{type(error).__name__}: {error}"


CONTROLLER = Controller()


def register(registry: kopf.OperatorRegistry, controller: Controller = CONTROLLER) -> None:
    """Attach the handlers to a kopf registry."""

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        # a private registry lacks kopf's default login handlers: in-cluster token or $KUBECONFIG
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_):
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        select_children(settings)

    @kopf.on.cleanup(registry=registry)
    async def close_scraper(**_):
        if controller.scraper is not None:
            await controller.scraper.close()

    @kopf.on.event(schema.GROUP, schema.VERSION, schema.PLURAL, registry=registry)
    async def cachedmodel_event(event, **_):
        controller.on_cachedmodel(event.get("type"), event["object"])

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(group, version, plural, registry=registry, id=f"child-{plural}",
                      labels={LABEL_MANAGED_BY: MANAGER})(_child_handler(controller))

    @kopf.on.event("", "v1", "pods", registry=registry, id="pods", labels={LABEL_MANAGED_BY: MANAGER})
    async def pod_event(event, **_):
        controller.on_pod(event.get("type"), event["object"])


def select_children(settings: kopf.OperatorSettings) -> None:
    """Have the API server stream only our children: kopf's handler `labels=` filter is client-side, so
    without this every ConfigMap, Service, Deployment ... of the cluster would reach the operator."""
    settings.watching.label_selectors[_is_child] = CHILD_SELECTOR


def _is_child(resource) -> bool:
    return (resource.group, resource.plural) in WATCHED_CHILDREN


def _child_handler(controller: Controller):
    async def child_event(event, **_):
        controller.on_child(event.get("type"), event["object"])
    return child_event
