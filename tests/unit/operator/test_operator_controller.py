"""Event routing of the controller: which events wake a worker, and for a full reconcile or a status refresh."""
import asyncio
import copy

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from cachedmodel_operator import builders, controller as controller_module
from cachedmodel_operator.controller import Controller, Worker, select_children
from cachedmodel_operator.kube import Kube
from operator_samples import body, cached_model


def owned(obj, name="insurance-charges"):
    """The builders already set the owner reference (to insurance-charges); another owner on request."""
    obj = copy.deepcopy(obj)
    if name != "insurance-charges":
        obj["metadata"]["ownerReferences"] = [{"kind": "CachedModel", "name": name, "uid": "u", "controller": True}]
    return obj


@pytest.fixture
def controller():
    ctl = Controller()
    worker = Worker(body=body())
    worker.memory.desired = {(c["kind"], c["metadata"]["name"]): c
                             for c in builders.desired_children(cached_model(), "uid")}
    worker.full, worker.generation = False, 3
    ctl.workers[("ml", "insurance-charges")] = worker
    return ctl, worker


def test_deleted_child_requests_full_reconcile(controller):
    ctl, worker = controller
    ctl.on_child("DELETED", owned(builders.model_service(cached_model())))
    assert worker.wake.is_set() and worker.full


def test_drifted_child_requests_full_reconcile(controller):
    ctl, worker = controller
    dep = owned(builders.model_deployment(cached_model(), "other-checksum", "uid"))
    ctl.on_child("MODIFIED", dep)
    assert worker.wake.is_set() and worker.full


def test_deployment_progress_requests_status_refresh_only(controller):
    ctl, worker = controller
    dep = owned(worker.memory.desired[("Deployment", "insurance-charges")])
    dep["status"] = {"readyReplicas": 1}
    ctl.on_child("MODIFIED", dep)
    assert worker.wake.is_set() and not worker.full


def test_unchanged_config_map_is_ignored(controller):
    ctl, worker = controller
    ctl.on_child("MODIFIED", owned(worker.memory.desired[("ConfigMap", "insurance-charges-config")]))
    assert not worker.wake.is_set()


def test_children_of_unknown_or_no_owner_are_ignored(controller):
    ctl, worker = controller
    ctl.on_child("DELETED", owned(builders.model_service(cached_model()), name="someone-else"))
    orphan = builders.model_service(cached_model())
    del orphan["metadata"]["ownerReferences"]
    ctl.on_child("DELETED", orphan)
    assert not worker.wake.is_set()


def test_spec_change_wakes_and_cuts_backoff(controller):
    ctl, worker = controller
    same = body()
    ctl.on_cachedmodel("MODIFIED", same)  # status-only change: same generation
    assert not worker.wake.is_set()
    changed = body()
    changed["metadata"]["generation"] = 4
    ctl.on_cachedmodel("MODIFIED", changed)
    assert worker.wake.is_set() and worker.spec_changed.is_set() and worker.full and worker.body is changed


def test_deletion_stops_the_worker(controller):
    ctl, worker = controller

    async def scenario():
        worker.task = asyncio.get_running_loop().create_task(asyncio.sleep(60))
        ctl.on_cachedmodel("DELETED", body())
        await asyncio.sleep(0)
        return worker.task

    task = asyncio.run(scenario())
    assert task.cancelled() and ("ml", "insurance-charges") not in ctl.workers


def test_pod_event_requests_status_refresh_of_its_cachedmodel(controller):
    ctl, worker = controller
    labels = {"app.kubernetes.io/instance": "insurance-charges", "app.kubernetes.io/managed-by": "cachedmodel-operator"}
    ctl.on_pod("MODIFIED", {"metadata": {"namespace": "other", "name": "p", "labels": labels}})
    ctl.on_pod("MODIFIED", {"metadata": {"namespace": "ml", "name": "p", "labels": {**labels,
                                         "app.kubernetes.io/instance": "someone-else"}}})
    assert not worker.wake.is_set()
    ctl.on_pod("MODIFIED", {"metadata": {"namespace": "ml", "name": "p", "labels": labels}})
    assert worker.wake.is_set() and not worker.full


# ------------------------------------------------------------------ supervision of the workers

class FlakyApiServer(Kube):
    """The real Kube request methods over an in-memory API server that can be 'unreachable': then every
    request raises urllib3's MaxRetryError (what the client raises on connection refused, not ApiException)."""

    def __init__(self):
        super().__init__(api=None)
        self.objects: dict[str, dict] = {}
        self.down = False
        self.refused = 0
        self.status_writes: list[dict] = []

    def _call(self, method, path, body=None, query=None, content_type=None):
        if self.down:
            self.refused += 1
            raise MaxRetryError(None, path, NewConnectionError(None, "Connection refused"))
        if method == "GET" and path.endswith("/pods"):
            return {"items": []}
        if method == "GET":
            if path not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            return self.objects[path]
        if method == "PATCH" and path.endswith("/status"):
            self.status_writes.append(body["status"])
            return body
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
        if method == "DELETE":
            self.objects.pop(path, None)
            return {}
        stored = copy.deepcopy(body)
        stored["metadata"]["uid"] = f"uid-{len(self.objects)}"
        if stored.get("kind") == "Secret":
            stored["data"] = {"password": "cHc="}
        self.objects[path] = stored
        return stored


async def until(predicate, timeout=10.0, what="condition"):
    """Poll in the event loop with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(controller_module, "BACKOFF_START", 0.01)
    monkeypatch.setattr(controller_module, "BACKOFF_MAX", 0.05)
    monkeypatch.setattr(controller_module, "DEBOUNCE_SECONDS", 0.0)


def test_a_worker_outlives_an_unreachable_api_server(fast):
    """Reconcile and the error event both fail with MaxRetryError: the worker retries, then converges."""
    ctl, api = Controller(), FlakyApiServer()
    ctl.kube, api.down = api, True

    async def scenario():
        ctl.on_cachedmodel("ADDED", body())
        worker = ctl.workers[("ml", "insurance-charges")]
        await until(lambda: worker.failures >= 3, what="three failed attempts")
        assert not worker.task.done(), "the worker died"
        api.down = False
        await until(lambda: api.status_writes and worker.failures == 0, what="a reconcile after the outage")
        worker.task.cancel()
        return api.status_writes[-1]

    status = asyncio.run(scenario())
    assert status["observedGeneration"] == 3
    assert ("/apis/apps/v1/namespaces/ml/deployments/insurance-charges") in api.objects


class DiesOnce(Controller):
    """A worker loop that crashes the first time (a bug, say), then runs normally."""

    def __init__(self):
        super().__init__()
        self.runs = 0

    async def run(self, key, worker):
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("bug in the loop")
        await asyncio.Event().wait()


def test_a_dead_worker_task_is_replaced():
    ctl = DiesOnce()

    async def scenario():
        ctl.on_cachedmodel("ADDED", body())
        worker = ctl.workers[("ml", "insurance-charges")]
        await until(lambda: ctl.runs == 2, what="a replacement task")
        await asyncio.sleep(0.05)
        assert not worker.task.done() and worker.failures == 1 and worker.full
        ctl.on_cachedmodel("DELETED", body())  # a cancelled worker is not replaced
        await asyncio.sleep(0.05)
        return worker

    worker = asyncio.run(scenario())
    assert worker.task.cancelled() and ctl.runs == 2 and not ctl.workers


def test_an_event_for_a_worker_whose_task_is_gone_starts_a_new_one():
    ctl = DiesOnce()
    ctl.runs = 1  # every run blocks

    async def scenario():
        worker = ctl.workers[("ml", "insurance-charges")] = Worker(body=body())
        worker.task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await worker.task  # ended, and nobody noticed
        ctl.on_cachedmodel("MODIFIED", body())
        await asyncio.sleep(0.01)
        assert worker.task is not None and not worker.task.done() and ctl.runs == 2
        worker.task.cancel()

    asyncio.run(scenario())


def test_every_child_kind_is_label_selected_by_the_api_server_and_cachedmodels_are_not():
    settings = kopf.OperatorSettings()
    select_children(settings)
    selected = settings.watching.label_selectors.collect
    for group, version, plural in controller_module.CHILD_RESOURCES + [("", "v1", "pods")]:
        assert selected(kopf.Resource(group, version, plural)) == ["app.kubernetes.io/managed-by=cachedmodel-operator"]
    assert selected(kopf.Resource("cachedmodel.dev", "v1alpha1", "cachedmodels")) == []
    assert selected(kopf.Resource("", "v1", "secrets")) == []  # not watched; nothing to say
