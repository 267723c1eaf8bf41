"""Installing without Helm: `kubectl apply -f manifests/` gives a working, cluster-wide operator, the
example CachedModel becomes Ready in any namespace, and `kubectl delete -f` removes it all again.

On the local control plane the operator runs as a local process with the token of the ServiceAccount
from manifests/02-rbac.yaml (so the generated RBAC is what is tested); on kind it is the Deployment.
"""
from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.helpers import (CRD_NAME, MANIFESTS_DIR, REAL_PODS, condition, describe,
                               example_cachedmodel, get_json, managed_children, owned_children, wait_for)
from tests.e2e.operator_runner import DeployedOperator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "cachedmodel-system"
DEPLOYMENT = "cachedmodel-operator"
READY_TIMEOUT = 420 if REAL_PODS else 120


@pytest.fixture
def installed(kube_cluster, tmp_path):
    if get_json(kube_cluster, "namespace", NAMESPACE) is not None:
        pytest.fail(f"namespace {NAMESPACE} already exists: this test installs manifests/ there and removes it "
                    "afterwards, so it needs a cluster without another such install")
    crd_existed = get_json(kube_cluster, "crd", CRD_NAME) is not None
    if crd_existed and get_json(kube_cluster, "cachedmodels", "-A")["items"]:
        pytest.fail("CachedModels exist in this cluster: `kubectl delete -f manifests/` (tested here) deletes the "
                    "CRD and with it every CachedModel, so this test needs a cluster without any")
    models = f"cm-e2e-manifests-{uuid.uuid4().hex[:6]}"
    operator = None
    try:
        out = kube_cluster.kubectl("apply", "-f", str(MANIFESTS_DIR), timeout=120).stdout
        assert f"namespace/{NAMESPACE} created" in out
        kube_cluster.kubectl("create", "namespace", models)
        operator = DeployedOperator(kube_cluster, NAMESPACE, DEPLOYMENT, tmp_path).start()
        yield kube_cluster, models, operator
    finally:
        if operator:
            operator.stop()
        kube_cluster.kubectl("delete", "namespace", models, "--ignore-not-found", "--wait=false", check=False)
        kube_cluster.kubectl("delete", "-f", str(MANIFESTS_DIR), "--ignore-not-found", "--wait=false",
                             check=False, timeout=120)
        if crd_existed:  # kubectl delete -f removed a CRD that was there before: put it back
            kube_cluster.kubectl("apply", "-f", str(MANIFESTS_DIR / "01-crd.yaml"), check=False)


def test_kubectl_apply_manifests_installs_a_working_cluster_wide_operator(installed):
    cluster, models, operator = installed
    operator.wait(operator.healthy, 120, "operator healthy")
    config = get_json(cluster, "configmap", DEPLOYMENT, "-n", NAMESPACE)
    assert config["data"]["WATCH_NAMESPACES"] == "", "the manifests install watches every namespace"

    example = example_cachedmodel(cluster)
    cluster.kubectl("apply", "-n", models, "-f", "-", input=json.dumps(example))
    name = example["metadata"]["name"]

    def ready() -> bool:
        found = get_json(cluster, "cachedmodel", name, "-n", models)
        return bool(found) and condition(found, "Ready").get("status") == "True"

    operator.wait(ready, READY_TIMEOUT, f"CachedModel {models}/{name} Ready", diagnose=lambda: describe(cluster, models))
    uid = get_json(cluster, "cachedmodel", name, "-n", models)["metadata"]["uid"]
    assert owned_children(cluster, models, uid).get("statefulsets.apps"), "managed Redis made"

    # removal: the example, then the install (namespace, RBAC, CRD)
    cluster.kubectl("delete", "-n", models, "-f", "-", "--timeout=120s", input=json.dumps(example), timeout=150)
    wait_for(lambda: not managed_children(cluster, models), 120, "children deleted", diagnose=lambda: describe(cluster, models))
    operator.stop()
    cluster.kubectl("delete", "-f", str(MANIFESTS_DIR), "--timeout=180s", timeout=200)
    wait_for(lambda: get_json(cluster, "namespace", NAMESPACE) is None, 180, f"namespace {NAMESPACE} deleted")
    assert get_json(cluster, "crd", CRD_NAME) is None
    leftovers = cluster.kubectl("get", "clusterroles,clusterrolebindings", "-o", "json").stdout
    assert f"{DEPLOYMENT}-{NAMESPACE}" not in json.dumps(json.loads(leftovers)), "cluster RBAC deleted"
