"""Event routing of the controller: which events wake a worker, and for a full reconcile or a status refresh."""
import asyncio
import copy

import pytest

from cachedmodel_operator import builders
from cachedmodel_operator.controller import Controller, Worker
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
