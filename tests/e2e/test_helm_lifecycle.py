"""The whole life of the operator as a user runs it with Helm, on whatever cluster the fixture gives.

install (watching one namespace: Roles, not a ClusterRole, for the namespaced rules) -> the operator
runs (in-cluster on kind; as a local process with the chart ServiceAccount's token on the local
plane) -> the example CachedModel becomes Ready with all its children -> real traffic (kind only):
predictions through `kubectl port-forward`, the second identical request a Redis hit -> `helm
upgrade` changes a value and the operator pod rolls -> a spec change reaches the children (through
the upgraded operator) -> delete + `helm uninstall` leave nothing behind; the CRD stays (Helm's
policy for crds/) until deleted explicitly.

The steps run in file order and share one release (module fixture); each step asserts its own part.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import (CHART_DIR, CRD_NAME, REAL_PODS, condition, describe, example_cachedmodel,
                               get_json, managed_children, owned_children, wait_for)
from tests.e2e.operator_runner import DeployedOperator, pod_names
from cachedmodel.testing.redis_server import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

READY_TIMEOUT = 420 if REAL_PODS else 120  # real pods pull/start images; kwok pods are instant
PREDICTION = {"age": 42, "sex": "female", "bmi": 24.5, "children": 1, "smoker": False, "region": "northeast"}
OPERATOR_SELECTOR = "app.kubernetes.io/name=cachedmodel-operator"


@dataclass
class Release:
    cluster: object
    name: str
    namespace: str         # where the operator runs
    watched: str           # where the CachedModel lives
    workdir: Path
    operator: DeployedOperator | None = None
    model: str = ""
    model_uid: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def fullname(self) -> str:
        return f"{self.name}-cachedmodel-operator"

    def helm(self, *args, timeout: float = 400):
        return self.cluster.helm(*args, "-n", self.namespace, timeout=timeout)

    def cachedmodel(self) -> dict | None:
        return get_json(self.cluster, "cachedmodel", self.model, "-n", self.watched)

    def describe(self) -> str:
        return describe(self.cluster, self.watched)


def _install_args(release: Release) -> list[str]:
    return ["--set", f"watchNamespaces[0]={release.watched}", "--wait", "--timeout", "5m"]


@pytest.fixture(scope="module")
def release(kube_cluster, tmp_path_factory):
    suffix = uuid.uuid4().hex[:6]
    rel = Release(cluster=kube_cluster, name=f"e2e{suffix}", namespace=f"cm-e2e-op-{suffix}",
                  watched=f"cm-e2e-models-{suffix}", workdir=tmp_path_factory.mktemp("helm-e2e"))
    crd_existed = get_json(kube_cluster, "crd", CRD_NAME) is not None
    for ns in (rel.namespace, rel.watched):
        kube_cluster.kubectl("create", "namespace", ns)
    try:
        yield rel
    finally:  # whatever step failed: stop the operator, remove the release, models, namespaces
        if rel.operator:
            rel.operator.stop()
        kube_cluster.kubectl("delete", "cachedmodels", "--all", "-n", rel.watched, "--ignore-not-found",
                             "--wait=false", check=False)
        kube_cluster.helm("uninstall", rel.name, "-n", rel.namespace, "--wait", check=False, timeout=300)
        for ns in (rel.watched, rel.namespace):
            kube_cluster.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
        if not crd_existed:
            kube_cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", check=False, timeout=120)


def test_helm_install_creates_the_operator_with_namespaced_rbac(release: Release):
    out = release.helm("install", release.name, str(CHART_DIR), *_install_args(release)).stdout
    assert "STATUS: deployed" in out
    assert f"kubectl -n {release.namespace} rollout status deployment/{release.fullname}" in out, "NOTES: next step"
    cluster = release.cluster
    crd = get_json(cluster, "crd", CRD_NAME)
    assert crd and condition(crd, "Established").get("status") == "True"
    deployment = get_json(cluster, "deployment", release.fullname, "-n", release.namespace)
    assert deployment["spec"]["strategy"]["type"] == "Recreate" and deployment["spec"]["replicas"] == 1
    # watching one namespace: the namespaced rules are a Role there, the ClusterRole keeps cluster reads only
    role = get_json(cluster, "role", release.fullname, "-n", release.watched)
    assert role and any("cachedmodels" in r.get("resources", []) for r in role["rules"])
    binding = get_json(cluster, "rolebinding", release.fullname, "-n", release.watched)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": release.fullname,
                                    "namespace": release.namespace}]
    cluster_role = get_json(cluster, "clusterrole", f"{release.fullname}-{release.namespace}")
    assert not any("cachedmodels" in r.get("resources", []) for r in cluster_role["rules"])
    # the service account may act in the watched namespace, and not in the one next to it
    sa = f"system:serviceaccount:{release.namespace}:{release.fullname}"
    can = lambda *a: cluster.kubectl("auth", "can-i", *a, "--as", sa, check=False).stdout.strip()  # noqa: E731
    assert can("create", "deployments.apps", "-n", release.watched) == "yes"
    assert can("patch", "cachedmodels.cachedmodel.dev", "--subresource=status", "-n", release.watched) == "yes"
    assert can("list", "secrets", "-n", release.watched) == "no", "Secrets are read by name only"
    assert can("create", "deployments.apps", "-n", "default") == "no"
    assert can("delete", "nodes") == "no"


def test_operator_runs_with_the_chart_service_account(release: Release):
    release.operator = DeployedOperator(release.cluster, release.namespace, release.fullname,
                                        release.workdir).start()
    release.operator.wait(release.operator.healthy, 120, "operator healthy")
    pods = pod_names(release.cluster, release.namespace, f"{OPERATOR_SELECTOR},app.kubernetes.io/instance={release.name}")
    assert len(pods) == 1, pods


@pytest.mark.needs_real_pods
def test_helm_test_reaches_the_operator_health_endpoint(release: Release):
    out = release.helm("test", release.name, "--logs", timeout=300).stdout
    assert "Phase:          Succeeded" in out or "Succeeded" in out, out
    assert "answered 200" in out


def test_example_cachedmodel_becomes_ready_with_its_children(release: Release):
    body = example_cachedmodel(release.cluster)
    release.model = body["metadata"]["name"]
    release.cluster.kubectl("apply", "-n", release.watched, "-f", "-", input=json.dumps(body))

    def ready() -> bool:
        found = release.cachedmodel()
        return bool(found) and condition(found, "Ready").get("status") == "True"

    release.operator.wait(ready, READY_TIMEOUT, f"CachedModel {release.model} Ready=True", diagnose=release.describe)
    found = release.cachedmodel()
    release.model_uid = found["metadata"]["uid"]
    status = found["status"]
    assert status["observedGeneration"] == found["metadata"]["generation"]
    assert status["url"] == f"http://{release.model}.{release.watched}.svc:8000"
    assert status["replicas"] == {"ready": 1, "desired": 1, "current": 1}
    children = owned_children(release.cluster, release.watched, release.model_uid)
    for kind in ("deployments.apps", "statefulsets.apps", "services", "configmaps", "secrets",
                 "networkpolicies.networking.k8s.io", "poddisruptionbudgets.policy"):
        assert children.get(kind), f"no {kind} owned by the CachedModel: {children}"


class PortForward:
    """`kubectl port-forward` to a Service on a free loopback port, for the duration of a with-block."""

    def __init__(self, cluster, namespace: str, target: str, remote_port: int):
        self.cluster, self.namespace, self.target, self.remote_port = cluster, namespace, target, remote_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        cmd = [str(Path(self.cluster.bin_dir) / "kubectl"), "port-forward", "-n", self.namespace, self.target,
               f"{self.port}:{self.remote_port}", "--address", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, env=self.cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubectl port-forward exited: {self.proc.stdout.read()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 30, interval=0.2, what=f"port-forward to {self.target}")
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _redis_hits(metrics_text: str) -> float:
    pattern = re.compile(r'^cachedmodel_cache_hits_total\{[^}]*tier="redis"[^}]*\}\s+([0-9.eE+-]+)$', re.MULTILINE)
    return sum(float(v) for v in pattern.findall(metrics_text))


def _redis_keys(release: Release) -> int:
    out = release.cluster.kubectl("exec", "-n", release.watched, f"statefulset/{release.model}-redis", "-c", "redis",
                                  "--", "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli DBSIZE').stdout
    return int(out.strip().split()[-1])


@pytest.mark.needs_real_pods
def test_predictions_through_port_forward_and_second_request_is_a_redis_hit(release: Release):
    with PortForward(release.cluster, release.watched, f"service/{release.model}", 8000) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            wait_for(lambda: http.get("/api/health/ready").status_code == 200, 120, "model service ready")
            hits_before = _redis_hits(http.get("/metrics").text)
            first = http.post("/api/models/insurance_charges_model/prediction", json=PREDICTION)
            assert first.status_code == 200, first.text
            assert _redis_keys(release) >= 1, "the first prediction was not stored in Redis"
            second = http.post("/api/models/insurance_charges_model/prediction", json=PREDICTION)
            assert second.status_code == 200 and second.json() == first.json()
            assert isinstance(first.json()["charges"], float)
            hits_after = _redis_hits(http.get("/metrics").text)
            assert hits_after == hits_before + 1, f"redis hits {hits_before} -> {hits_after}"
            bad = http.post("/api/models/insurance_charges_model/prediction", json={**PREDICTION, "age": "old"})
            assert 400 <= bad.status_code < 500 and "age" in bad.text


def test_helm_upgrade_changes_a_value_and_rolls_the_operator(release: Release):
    cluster = release.cluster
    selector = f"{OPERATOR_SELECTOR},app.kubernetes.io/instance={release.name}"
    pods_before = pod_names(cluster, release.namespace, selector)
    checksum_before = release.operator.template_checksum()
    out = release.helm("upgrade", release.name, str(CHART_DIR), "--reuse-values", "--set", "resyncSeconds=45",
                       "--wait", "--timeout", "5m").stdout
    assert "REVISION: 2" in out
    config = get_json(cluster, "configmap", release.fullname, "-n", release.namespace)
    assert config["data"]["CACHEDMODEL_RESYNC_SECONDS"] == "45"
    assert release.operator.template_checksum() != checksum_before, "config change must change checksum/config"
    release.operator.sync()
    wait_for(lambda: (p := pod_names(cluster, release.namespace, selector)) and not (p & pods_before) and len(p) == 1,
             120, "a new operator pod replacing the old one",
             diagnose=lambda: cluster.kubectl("get", "pods,replicasets", "-n", release.namespace, "-o", "wide",
                                              check=False).stdout)
    release.operator.wait(release.operator.healthy, 120, "upgraded operator healthy")
    history = json.loads(release.helm("history", release.name, "-o", "json").stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]


def test_spec_change_reaches_the_children(release: Release):
    cluster = release.cluster
    patch = {"spec": {"model": {"replicas": 2}, "redis": {"maxmemory": "96mb"}}}
    cluster.kubectl("patch", "cachedmodel", release.model, "-n", release.watched, "--type=merge",
                    "-p", json.dumps(patch))

    def converged() -> bool:
        deployment = get_json(cluster, "deployment", release.model, "-n", release.watched)
        redis_conf = get_json(cluster, "configmap", f"{release.model}-redis-config", "-n", release.watched)
        found = release.cachedmodel()
        return (deployment["spec"]["replicas"] == 2
                and "maxmemory 96mb" in "".join((redis_conf.get("data") or {}).values())
                and found["status"].get("observedGeneration") == found["metadata"]["generation"]
                and found["status"].get("replicas") == {"ready": 2, "desired": 2, "current": 2}
                and condition(found, "Ready").get("status") == "True")

    release.operator.wait(converged, READY_TIMEOUT, "children follow spec (replicas 2, maxmemory 96mb), Ready again",
                          diagnose=release.describe)


def test_delete_and_uninstall_leave_nothing_behind_but_the_crd(release: Release):
    cluster = release.cluster
    assert managed_children(cluster, release.watched)
    # 1. the CachedModel goes: the garbage collector removes its children (owner references)
    cluster.kubectl("delete", "cachedmodel", release.model, "-n", release.watched, "--timeout=120s", timeout=150)
    wait_for(lambda: not managed_children(cluster, release.watched), 120, "children of the deleted CachedModel gone",
             diagnose=release.describe)
    # 2. helm uninstall: operator, RBAC (cluster-wide and per namespace), Service, ConfigMap
    release.helm("uninstall", release.name, "--wait", "--timeout", "3m")
    release.operator.stop()
    selector = f"app.kubernetes.io/instance={release.name}"
    # Helm leaves hook resources to the user: the `helm test` pod outlives uninstall (its delete policy
    # keeps it for `helm test --logs`, helm#9098); the documented last step removes it
    left = lambda: cluster.kubectl("get", "all,configmaps,serviceaccounts,roles,rolebindings", "-n",  # noqa: E731
                                   release.namespace, "-l", selector, "-o", "name").stdout.split()
    test_pod = f"pod/{release.fullname}-test-healthz"
    wait_for(lambda: set(left()) <= {test_pod}, 120, "release objects gone from the operator namespace")
    cluster.kubectl("delete", "pod", "-n", release.namespace, "-l", f"{selector},app.kubernetes.io/component=test",
                    "--timeout=60s", timeout=90)
    wait_for(lambda: not left(), 60, "the helm test pod gone too")
    assert not cluster.kubectl("get", "roles,rolebindings", "-n", release.watched, "-l", selector, "-o", "name").stdout.strip()
    assert not cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").stdout.strip()
    wait_for(lambda: not _leftovers(cluster, release.watched), 120, f"namespace {release.watched} empty",
             diagnose=release.describe)
    # 3. Helm never deletes CRDs it installed from crds/ (documented in NOTES.txt and the README) ...
    assert get_json(cluster, "crd", CRD_NAME) is not None
    # ... so removing the API is an explicit, separate step
    cluster.kubectl("delete", "crd", CRD_NAME, "--timeout=120s", timeout=150)
    wait_for(lambda: get_json(cluster, "crd", CRD_NAME) is None, 60, "CRD deleted")


def _leftovers(cluster, namespace: str) -> list[str]:
    """Every object of the usual kinds in the namespace, but the root CA ConfigMap every namespace has."""
    out = cluster.kubectl("get", "all,configmaps,secrets,networkpolicies,poddisruptionbudgets,persistentvolumeclaims",
                          "-n", namespace, "-o", "name").stdout
    return [line for line in out.split() if line != "configmap/kube-root-ca.crt"]
