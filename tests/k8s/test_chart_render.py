"""The chart rendered by helm (no cluster): lint, RBAC modes, validation of values, names and labels,
checksum roll trigger, documentation of every value. Needs helm from `make tools`."""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.e2e.helpers import (CHART_DIR, OPERATOR_IMAGE, find, helm_binary, helm_env, helm_template,
                               helm_template_result, one, rbac_rules_of_operator)

pytestmark = pytest.mark.k8s

STANDARD_LABELS = {"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}


def test_helm_lint_strict_is_clean():
    for extra in ([], ["--set", "watchNamespaces={a,b}", "--set", "sample.enabled=true", "--namespace", "a"]):
        result = subprocess.run([helm_binary(), "lint", "--strict", str(CHART_DIR), *extra], capture_output=True,
                                text=True, env=helm_env(), timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_defaults_watch_every_namespace_with_one_cluster_role():
    docs = helm_template()
    cluster_role = one(docs, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "rel-cachedmodel-operator-ops", "cluster-scoped names carry the namespace"
    resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert {"cachedmodels", "cachedmodels/status", "deployments", "statefulsets", "secrets"} <= resources
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert one(docs, "ConfigMap")["data"]["WATCH_NAMESPACES"] == ""
    assert not find(docs, "CachedModel"), "the sample is off by default"


def test_watch_namespaces_gives_a_role_per_namespace_and_only_cluster_reads_cluster_wide():
    docs = helm_template(values={"watchNamespaces": ["team-a", "team-b"]})
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    namespaced = {res for rule in roles[0]["rules"] for res in rule["resources"]}
    assert "cachedmodels" in namespaced and "customresourcedefinitions" not in namespaced
    cluster_wide = {res for rule in one(docs, "ClusterRole")["rules"] for res in rule["resources"]}
    assert not cluster_wide & namespaced, "namespaced permissions must not be granted cluster-wide"
    for binding in find(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-cachedmodel-operator", "namespace": "ops"}]
        assert binding["roleRef"]["kind"] == "Role"
    assert one(docs, "ConfigMap")["data"]["WATCH_NAMESPACES"] == "team-a,team-b"


@pytest.mark.parametrize("values, message", [
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"tag": "latest"}}, 'image.tag: pin a released version'),
    ({"image": {"digest": "sha256:nothex"}}, "/image/digest"),
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    ({"resyncSeconds": 1}, "/resyncSeconds"),
    ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"service": {"port": 70000}}, "/service/port"),
    ({"sample": {"name": "Insurance"}}, "/sample/name"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name: required"),
    ({"sample": {"enabled": True}, "watchNamespaces": ["elsewhere"]}, "sample.enabled: the sample CachedModel goes"),
])
def test_bad_values_are_rejected_naming_the_value(values, message):
    result = helm_template_result(values=values)
    assert result.returncode != 0, f"{values} was accepted"
    assert message in result.stderr, result.stderr


CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


def _normal(rules):
    return sorted((tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
                  for r in rules)


@pytest.mark.parametrize("watch", [[], ["team-a"]], ids=["cluster-wide", "one-namespace"])
def test_rbac_rules_equal_the_operator_statement_in_both_modes(watch):
    """operator/rbac-rules.yaml, split by scope: cluster-scoped resources always in the ClusterRole."""
    stated = rbac_rules_of_operator()["rules"]
    cluster = [r for r in stated if set(r["resources"]) <= CLUSTER_SCOPED]
    namespaced = [r for r in stated if not set(r["resources"]) & CLUSTER_SCOPED]
    assert len(cluster) + len(namespaced) == len(stated), "a rule mixes cluster-scoped and namespaced resources"
    docs = helm_template(values={"watchNamespaces": watch})
    if watch:
        assert _normal(one(docs, "ClusterRole")["rules"]) == _normal(cluster)
        assert _normal(one(docs, "Role")["rules"]) == _normal(namespaced)
    else:
        assert _normal(one(docs, "ClusterRole")["rules"]) == _normal(stated)


def test_checksum_changes_with_operator_settings_only():
    def checksum(values):
        return one(helm_template(values=values), "Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]

    base = checksum({})
    assert checksum({"resyncSeconds": 45}) != base
    assert checksum({"watchNamespaces": ["a"]}) != base
    assert checksum({"resources": {"limits": {"memory": "512Mi"}}}) == base


def test_every_object_has_the_standard_labels_and_names():
    docs = helm_template("--set", "sample.enabled=true", release="cachedmodel-operator")
    for doc in docs:
        if doc["kind"] == "CachedModel":
            continue  # a user object, not the operator's
        assert STANDARD_LABELS <= set(doc["metadata"]["labels"]), doc["metadata"]["name"]
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["name"].startswith("cachedmodel-operator"), "release name contains the chart name"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "cachedmodel-operator",
                                                             "app.kubernetes.io/instance": "cachedmodel-operator"}
    named = helm_template(values={"fullnameOverride": "cm-op", "commonLabels": {"team": "ml"}})
    assert one(named, "Deployment")["metadata"]["name"] == "cm-op"
    assert all(d["metadata"]["labels"]["team"] == "ml" for d in named)


def test_image_is_pinned_and_digest_wins():
    container = one(helm_template(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == OPERATOR_IMAGE
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert OPERATOR_IMAGE.endswith(":" + chart["appVersion"])
    digest = "sha256:" + "a" * 64
    container = one(helm_template(values={"image": {"registry": "registry.example", "digest": digest}}),
                    "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example/cachedmodel/operator@{digest}"


def test_existing_service_account_is_used_when_not_created():
    docs = helm_template(values={"serviceAccount": {"create": False, "name": "ops-sa"}})
    assert not find(docs, "ServiceAccount")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "ops-sa"


def test_sample_and_helm_test_pod():
    docs = helm_template("--set", "sample.enabled=true")
    sample = one(docs, "CachedModel")
    assert "namespace" not in sample["metadata"] and sample["spec"]["model"]["classPath"]
    test_pod = one(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "http://rel-cachedmodel-operator.ops.svc:8080/healthz" in test_pod["spec"]["containers"][0]["command"][-1]
    assert test_pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert not find(helm_template("--set", "tests.enabled=false"), "Pod")
    # while it runs (Ready: it has no probe) the operator's Service must not route to it, nor count it
    selector = one(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= test_pod["metadata"]["labels"].items(), "the Service selects the test pod"
    deployment_selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert not deployment_selector.items() <= test_pod["metadata"]["labels"].items()


def _leaf_paths(value, prefix=""):
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from _leaf_paths(sub, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_every_value_is_documented_with_a_param_line():
    text = (CHART_DIR / "values.yaml").read_text()
    documented = set(re.findall(r"^## @param (\S+) \S", text, re.MULTILINE))
    values = yaml.safe_load(text)
    missing = []
    for path in _leaf_paths(values):
        parts = path.split(".")
        if not any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1)):
            missing.append(path)
    assert not missing, f"values without a `## @param` line: {missing}"
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"]), "every top-level value has a schema entry"


def test_chart_readme_lists_every_value():
    documented = re.findall(r"^## @param (\S+) ", (CHART_DIR / "values.yaml").read_text(), re.MULTILINE)
    readme = (CHART_DIR / "README.md").read_text()
    missing = [name for name in documented if f"| `{name}` |" not in readme]
    assert not missing, f"charts/cachedmodel-operator/README.md lacks parameters: {missing}"
