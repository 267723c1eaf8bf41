"""The chart and the generated manifests against the real API server of the local control plane:
server-side dry runs (admission, schemas, RBAC objects), and helm install / upgrade / rollback /
uninstall of a release with the sample CachedModel. (The operator itself is exercised in tests/e2e.)"""
from __future__ import annotations

import json
import uuid

import pytest
import yaml

from cachedmodel_operator.testing.operator_process import crd_established
from cachedmodel_operator.testing.processes import wait_until
from tests.e2e.helpers import (CHART_DIR, CRD_FILE, CRD_NAME, EXAMPLE_FILE, MANIFESTS_DIR, get_json, helm_template,
                               load_docs, wait_for)

pytestmark = pytest.mark.k8s

MANIFEST_NAMESPACE = "cachedmodel-system"


@pytest.fixture
def crd(kube_cluster):
    """The CachedModel CRD installed (and removed afterwards if this test installed it)."""
    existed = get_json(kube_cluster, "crd", CRD_NAME) is not None
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    wait_until(lambda: crd_established(kube_cluster, CRD_NAME), 60, what=f"CRD {CRD_NAME} Established")
    yield CRD_NAME
    if not existed:
        kube_cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", check=False, timeout=120)


def _dry_run(cluster, docs: list[dict]) -> str:
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["WATCHED"], "commonAnnotations": {"team": "ml"}}],
                         ids=["cluster-wide", "one-namespace"])
def test_helm_template_is_accepted_by_the_api_server(kube_cluster, k8s_namespace, values):
    values = json.loads(json.dumps(values).replace("WATCHED", k8s_namespace))
    docs = helm_template(values=values, release="dry", namespace=k8s_namespace)
    out = _dry_run(kube_cluster, docs)
    for kind in ("serviceaccount", "clusterrole", "clusterrolebinding", "configmap", "deployment", "service"):
        assert f"{kind}.".lower() in out.lower() or f"{kind}/" in out.lower(), out
    if values.get("watchNamespaces"):
        assert "role.rbac.authorization.k8s.io/dry-cachedmodel-operator created (server dry run)" in out


def test_manifests_are_accepted_by_the_api_server(kube_cluster, k8s_namespace, crd):
    """Every manifest (moved into a test namespace, the Namespace object aside) and the example CachedModel."""
    docs = []
    for path in sorted(MANIFESTS_DIR.glob("*.yaml")):
        for doc in load_docs(path):
            if doc["kind"] == "Namespace":
                continue
            if doc["metadata"].get("namespace") == MANIFEST_NAMESPACE:
                doc["metadata"]["namespace"] = k8s_namespace
            for subject in doc.get("subjects") or []:
                subject["namespace"] = k8s_namespace
            docs.append(doc)
    out = _dry_run(kube_cluster, docs)
    assert out.count("(server dry run)") == len(docs)
    example = load_docs(EXAMPLE_FILE)
    out = kube_cluster.kubectl("apply", "--dry-run=server", "-n", k8s_namespace, "-f", "-",
                               input=yaml.safe_dump_all(example)).stdout
    assert "cachedmodel.cachedmodel.dev/insurance-charges created (server dry run)" in out


def test_bad_sample_spec_is_rejected_at_install_naming_the_field(kube_cluster, k8s_namespace, crd):
    result = kube_cluster.helm("install", "bad", str(CHART_DIR), "-n", k8s_namespace, "--set", "sample.enabled=true",
                               "--set", "sample.spec.redis.maxmemoryPolicy=sometimes", check=False)
    try:
        assert result.returncode != 0
        assert "maxmemoryPolicy" in result.stderr, result.stderr
    finally:
        kube_cluster.helm("uninstall", "bad", "-n", k8s_namespace, check=False)


def test_helm_install_upgrade_rollback_uninstall(kube_cluster, k8s_namespace):
    cluster, ns = kube_cluster, k8s_namespace
    release = f"chart{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-cachedmodel-operator"
    crd_existed = get_json(cluster, "crd", CRD_NAME) is not None
    helm = lambda *a, **k: cluster.helm(*a, "-n", ns, **k)  # noqa: E731
    try:
        out = helm("install", release, str(CHART_DIR), "--set", "sample.enabled=true", "--wait", "--timeout", "3m").stdout
        assert "STATUS: deployed" in out and "REVISION: 1" in out
        assert "The sample CachedModel \"insurance-charges\" was created" in out, "NOTES tell the next step"
        assert get_json(cluster, "crd", CRD_NAME), "helm installs the CRD from crds/"
        deployment = get_json(cluster, "deployment", fullname, "-n", ns)
        assert deployment["status"].get("availableReplicas") == 1
        assert get_json(cluster, "cachedmodel", "insurance-charges", "-n", ns), "the sample was created"
        checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

        out = helm("upgrade", release, str(CHART_DIR), "--reuse-values", "--set", "resyncSeconds=60",
                   "--wait", "--timeout", "3m").stdout
        assert "REVISION: 2" in out
        assert get_json(cluster, "configmap", fullname, "-n", ns)["data"]["CACHEDMODEL_RESYNC_SECONDS"] == "60"
        upgraded = get_json(cluster, "deployment", fullname, "-n", ns)
        assert upgraded["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum
        assert upgraded["metadata"]["generation"] > deployment["metadata"]["generation"], "the pod template changed"

        helm("rollback", release, "1", "--wait", "--timeout", "3m")
        assert get_json(cluster, "configmap", fullname, "-n", ns)["data"]["CACHEDMODEL_RESYNC_SECONDS"] == "30"
        history = json.loads(helm("history", release, "-o", "json").stdout)
        assert [h["revision"] for h in history] == [1, 2, 3] and history[-1]["status"] == "deployed"

        helm("uninstall", release, "--wait", "--timeout", "3m")
        selector = f"app.kubernetes.io/instance={release}"
        wait_for(lambda: not cluster.kubectl("get", "all,configmaps,serviceaccounts", "-n", ns, "-l", selector,
                                             "-o", "name").stdout.strip(), 60, "release objects deleted")
        assert not cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").stdout.strip()
        assert get_json(cluster, "cachedmodel", "insurance-charges", "-n", ns) is None, "the sample goes with the release"
        assert get_json(cluster, "crd", CRD_NAME) is not None, "helm keeps CRDs installed from crds/"
    finally:
        cluster.helm("uninstall", release, "-n", ns, check=False)
        if not crd_existed:
            cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", check=False, timeout=120)


def test_an_ha_release_elects_one_leader_under_the_charts_own_rbac(kube_cluster, k8s_namespace, tmp_path):
    """replicaCount 2: two operators run with the ServiceAccount token and the release's RBAC (the kwok pods
    run nothing, so each runs here as DeployedOperator does): one holds the Lease and reconciles, the other
    waits; the PDB and the RollingUpdate strategy are there."""
    from tests.e2e.operator_runner import DeployedOperator

    cluster, ns = kube_cluster, k8s_namespace
    release = f"ha{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-cachedmodel-operator"
    crd_existed = get_json(cluster, "crd", CRD_NAME) is not None
    operators = []
    try:
        cluster.helm("install", release, str(CHART_DIR), "-n", ns, "--set", "replicaCount=2",
                     "--set", f"watchNamespaces[0]={ns}", "--set", "leaderElection.leaseSeconds=6",
                     "--wait", "--timeout", "3m", timeout=200)
        deployment = get_json(cluster, "deployment", fullname, "-n", ns)
        assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert get_json(cluster, "pdb", fullname, "-n", ns)["spec"]["minAvailable"] == 1
        for name in ("one", "two"):
            operators.append(DeployedOperator(cluster, ns, fullname, tmp_path / name).start(local=True))
        sample = yaml.safe_load(EXAMPLE_FILE.read_text().split("---", 1)[1])
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(sample))
        wait_for(lambda: get_json(cluster, "deployment", sample["metadata"]["name"], "-n", ns), 60,
                 "the leader reconciled the sample")
        holder = cluster.kubectl("get", "lease", fullname, "-n", ns, "-o", "jsonpath={.spec.holderIdentity}").stdout
        logs = [operator.logs() for operator in operators]
        leaders = [log for log in logs if "acquired Lease" in log]
        assert holder and len(leaders) == 1, logs
        assert sum("is a standby" in log for log in logs) == 1, logs
    finally:
        for operator in operators:
            operator.stop()
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False, timeout=120)
        if not crd_existed:
            cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", check=False, timeout=120)
