"""What the generated manifests promise, checked offline (no helm, no cluster).

Valid against the Kubernetes 1.34 OpenAPI schemas (kubernetes-validate, strict), the operator's
Deployment hardened as the issue asks, its RBAC exactly what the operator says it needs
(operator/rbac-rules.yaml) and nothing wider, its health port the one the operator listens on, and the
example CachedModel accepted by the CRD schema and by the operator's own `render`.
"""
from __future__ import annotations

import re
import subprocess
import sys
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest

from tests.e2e.helpers import (CRD_FILE, EXAMPLE_FILE, MANIFESTS_DIR, MODEL_IMAGE, OPERATOR_IMAGE, ROOT, load_docs,
                               one, rbac_rules_of_operator)

NAMESPACE = "cachedmodel-system"
FILES = ["00-namespace.yaml", "01-crd.yaml", "02-rbac.yaml", "03-operator.yaml"]


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [d for name in FILES for d in load_docs(MANIFESTS_DIR / name)]


def test_apply_order_is_namespace_crd_rbac_operator():
    """`kubectl apply -f manifests/` goes file by file in name order: dependencies come first."""
    assert sorted(p.name for p in MANIFESTS_DIR.glob("*.yaml")) == FILES
    kinds = [[d["kind"] for d in load_docs(MANIFESTS_DIR / name)] for name in FILES]
    assert kinds[0] == ["Namespace"] and kinds[1] == ["CustomResourceDefinition"]
    assert sorted(kinds[2]) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    assert sorted(kinds[3]) == ["ConfigMap", "Deployment", "Service"]
    assert all(d["kind"] == "CachedModel" for d in load_docs(EXAMPLE_FILE)), "the example lives in examples/ alone"


def test_every_object_is_valid_for_kubernetes_1_34(docs):
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue  # validated by the API server in the k8s tier; its own schema is used below
        kubernetes_validate.validate(doc, "1.34.0", strict=True)


def test_crd_is_the_chart_crd_verbatim(docs):
    import yaml

    assert one(docs, "CustomResourceDefinition") == yaml.safe_load(CRD_FILE.read_text())


def test_namespaced_objects_are_in_the_operator_namespace(docs):
    for doc in docs:
        if doc["kind"] in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def test_operator_deployment_is_hardened(docs):
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["image"] == OPERATOR_IMAGE
    assert "command" not in container and "args" not in container, "the image CMD (cachedmodel-operator run) runs"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"], "writable /tmp on a read-only root"
    assert re.fullmatch(r"[0-9a-f]{64}", spec["template"]["metadata"]["annotations"]["checksum/config"])


def test_liveness_probe_targets_the_operator_health_endpoint(docs):
    from cachedmodel_operator.cli import LIVENESS_ENDPOINT

    endpoint = urlparse(LIVENESS_ENDPOINT)
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"]["path"] == endpoint.path
        assert ports[probe["httpGet"]["port"]] == endpoint.port
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "health"
    assert service["spec"]["selector"].items() <= one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()


def test_operator_settings_watch_every_namespace(docs):
    config = one(docs, "ConfigMap")
    assert config["data"]["WATCH_NAMESPACES"] == ""
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]


def _normal(rules: list[dict]) -> list[tuple]:
    """Rules as comparable tuples (order of rules and of list entries does not matter)."""
    return sorted((tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))),
                   tuple(sorted(r.get("verbs", []))), tuple(sorted(r.get("resourceNames", [])))) for r in rules)


def test_cluster_role_has_exactly_the_rules_the_operator_states(docs):
    assert _normal(one(docs, "ClusterRole")["rules"]) == _normal(rbac_rules_of_operator()["rules"]), (
        "the chart's RBAC (charts/cachedmodel-operator/templates/_rbac-rules.tpl) differs from "
        "operator/rbac-rules.yaml: make them equal, then run `make manifests`")


def test_rbac_is_least_privilege(docs):
    for rule in one(docs, "ClusterRole")["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {rule}"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings", "nodes"} & set(rule["resources"])
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": one(docs, "ServiceAccount")["metadata"]["name"],
                                    "namespace": NAMESPACE}]


def test_example_cachedmodel_is_valid_for_the_crd_and_the_operator():
    import yaml

    example = one(load_docs(EXAMPLE_FILE), "CachedModel")
    assert "namespace" not in example["metadata"], "applies into whatever namespace -n names"
    assert example["spec"]["model"]["image"] == MODEL_IMAGE
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    # OpenAPI v3 schemas use draft-4 style (boolean exclusiveMinimum); CEL rules are the API server's job
    jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"]["properties"]["spec"]).validate(example["spec"])
    rendered = subprocess.run([sys.executable, "-m", "cachedmodel_operator.cli", "render", "-f", str(EXAMPLE_FILE)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap"} <= kinds, kinds
