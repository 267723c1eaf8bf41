"""The operator runs with exactly operator/rbac-rules.yaml (a ServiceAccount, not the admin)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd
from cachedmodel.testing.redis_server import wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]
RULES = Path(__file__).resolve().parents[2] / "operator/rbac-rules.yaml"


def service_account_kubeconfig(cluster, namespace: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", "cachedmodel-operator", "-n", namespace, "--duration", "1h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_works_with_the_documented_rules_only(kube_cluster, k8s_namespace, tmp_path):
    install_crd(kube_cluster)
    role = f"cachedmodel-operator-{k8s_namespace}"
    rules = yaml.safe_load(RULES.read_text())["rules"]
    kube_cluster.kubectl("create", "serviceaccount", "cachedmodel-operator", "-n", k8s_namespace)
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
        "rules": rules}))
    kube_cluster.kubectl("create", "clusterrolebinding", role, "--clusterrole", role,
                         "--serviceaccount", f"{k8s_namespace}:cachedmodel-operator")
    user = f"system:serviceaccount:{k8s_namespace}:cachedmodel-operator"
    wait_until(lambda: kube_cluster.kubectl("auth", "can-i", "patch", "statefulsets.apps", "-n", k8s_namespace,
                                            "--as", user, check=False).stdout.strip() == "yes",
               30, interval=0.2, what="RBAC binding in effect")
    kubeconfig = service_account_kubeconfig(kube_cluster, k8s_namespace, tmp_path / "operator.kubeconfig")
    denied = kube_cluster.kubectl("--kubeconfig", str(kubeconfig), "get", "secrets", "-n", k8s_namespace,
                                  check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), "must not list Secrets"
    try:
        with OperatorProcess(str(kubeconfig), namespaces=[k8s_namespace], resync_seconds=5) as operator:
            kube_cluster.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=json.dumps({
                "apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel", "metadata": {"name": "rbac"},
                "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                                   "classPath": "insurance_charges_model.model.InsuranceChargesModel"}}}))

            def ready():
                body = json.loads(kube_cluster.kubectl("get", "cmodel", "rbac", "-n", k8s_namespace,
                                                       "-o", "json").stdout)
                return any(c["type"] == "Ready" and c["status"] == "True"
                           for c in (body.get("status") or {}).get("conditions") or [])
            operator.wait(ready, 90, "CachedModel Ready with least-privilege RBAC")
            kube_cluster.kubectl("delete", "deployment", "rbac", "-n", k8s_namespace)
            operator.wait(lambda: kube_cluster.kubectl("get", "deployment", "rbac", "-n", k8s_namespace,
                                                       check=False).returncode == 0, 30, "drift repaired")
            log = operator.log_path.read_text()
            assert "403" not in log and "Forbidden" not in log, operator.tail()
    finally:
        kube_cluster.kubectl("delete", "clusterrolebinding", role, "--ignore-not-found", check=False)
        kube_cluster.kubectl("delete", "clusterrole", role, "--ignore-not-found", check=False)
