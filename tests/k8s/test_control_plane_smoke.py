"""Smoke test of the local control plane: the parts the operator and chart tests rely on really work.

Deployments get Ready pods on kwok nodes (readiness probes included), CRD schemas are enforced,
the garbage collector cascades owner deletion, namespaces are emptied and deleted, service-account
tokens authenticate, and helm installs and uninstalls a chart.
"""
from __future__ import annotations

import json
import os
import textwrap
import uuid

import pytest
from kubernetes import client

from cachedmodel_operator.testing.control_plane import KubeCommandError
from cachedmodel.testing.redis_server import wait_until
from cachedmodel_operator.testing.operator_process import crd_established

pytestmark = pytest.mark.k8s


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    container = {"name": "web", "image": "registry.invalid/web:1",
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def get_json(cluster, *args) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def exists(cluster, *args) -> bool:
    return cluster.kubectl("get", *args, check=False).returncode == 0


def test_server_reports_the_built_version(kube_cluster):
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]
    if not kube_cluster.external and not os.environ.get("CACHEDMODEL_K8S_BIN_DIR"):
        # the binaries `make tools` built: the version ldflags make them report the pinned release
        from scripts.build_tools import HELM_VERSION, K8S_VERSION

        assert version["serverVersion"]["gitVersion"] == K8S_VERSION
        assert version["serverVersion"]["gitTreeState"] == "clean" and version["serverVersion"]["buildDate"]
        assert kube_cluster.helm("version", "--template", "{{.Version}}").stdout.strip() == HELM_VERSION


def test_deployment_pods_become_ready_on_kwok_nodes(kube_cluster, k8s_namespace):
    kube_cluster.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=json.dumps(deployment("web", 3)))
    api = client.AppsV1Api(kube_cluster.api_client())
    try:
        wait_until(lambda: api.read_namespaced_deployment("web", k8s_namespace).status.ready_replicas == 3,
                   60, interval=0.3, what="3 ready replicas of deployment web")
    finally:
        api.api_client.close()
    pods = get_json(kube_cluster, "pods", "-n", k8s_namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-node-")
        assert pod["status"]["phase"] == "Running"
        assert {"type": "Ready", "status": "True"}.items() <= next(
            c for c in pod["status"]["conditions"] if c["type"] == "Ready").items()


def test_crd_schema_refuses_a_bad_object_and_accepts_a_good_one(kube_cluster, k8s_namespace):
    group = f"smoke{uuid.uuid4().hex[:8]}.cachedmodel.test"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {
                            "type": "object", "required": ["size"],
                            "properties": {"size": {"type": "integer", "minimum": 1}}}}}}}]}}
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        wait_until(lambda: crd_established(kube_cluster, f"widgets.{group}"), 30, what="CRD widgets Established")

        def widget(name: str, spec: dict) -> str:
            return json.dumps({"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})

        kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=widget("good", {"size": 2}))
        with pytest.raises(KubeCommandError) as refused:
            kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=widget("bad", {"size": "two"}))
        assert "spec.size" in str(refused.value)
        with pytest.raises(KubeCommandError, match="spec.size"):
            kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=widget("empty", {}))
        assert exists(kube_cluster, f"widgets.{group}", "good", "-n", k8s_namespace)
        assert not exists(kube_cluster, f"widgets.{group}", "bad", "-n", k8s_namespace)
    finally:
        kube_cluster.kubectl("delete", "crd", f"widgets.{group}", "--ignore-not-found", check=False)


def test_owner_deletion_cascades_through_the_garbage_collector(kube_cluster, k8s_namespace):
    kube_cluster.kubectl("create", "configmap", "owner", "-n", k8s_namespace)
    uid = get_json(kube_cluster, "configmap", "owner", "-n", k8s_namespace)["metadata"]["uid"]
    child = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "child", "ownerReferences": [
                 {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}}
    kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=json.dumps(child))
    kube_cluster.kubectl("delete", "configmap", "owner", "-n", k8s_namespace, "--cascade=background")
    wait_until(lambda: not exists(kube_cluster, "configmap", "child", "-n", k8s_namespace),
               60, interval=0.3, what="garbage collection of the owned configmap")


def test_namespace_deletion_removes_its_contents(kube_cluster):
    name = f"t-gone-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    try:
        kube_cluster.kubectl("create", "configmap", "inside", "-n", name)
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false")
        wait_until(lambda: not exists(kube_cluster, "namespace", name), 60, interval=0.3,
                   what=f"namespace {name} to be deleted by the namespace controller")
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


def test_service_account_tokens_authenticate(kube_cluster, k8s_namespace):
    token = kube_cluster.kubectl("create", "token", "default", "-n", k8s_namespace).stdout.strip()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    status = json.loads(kube_cluster.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{k8s_namespace}:default"


def test_helm_installs_and_uninstalls_a_chart(kube_cluster, k8s_namespace, tmp_path):
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\nreplicas: 2\n")
    (chart / "templates" / "configmap.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-greeting
        data:
          greeting: {{ .Values.greeting | quote }}
        """))
    (chart / "templates" / "deployment.yaml").write_text(
        json.dumps(deployment("{{ .Release.Name }}-web", 2)).replace('"replicas": 2', '"replicas": {{ .Values.replicas }}'))
    kube_cluster.helm("install", "smoke", str(chart), "-n", k8s_namespace, "--set", "greeting=hi",
                      "--wait", "--timeout", "90s")
    config = get_json(kube_cluster, "configmap", "smoke-greeting", "-n", k8s_namespace)
    assert config["data"]["greeting"] == "hi"
    assert get_json(kube_cluster, "deployment", "smoke-web", "-n", k8s_namespace)["status"]["readyReplicas"] == 2
    assert "smoke" in kube_cluster.helm("list", "-n", k8s_namespace, "-q").stdout.split()

    kube_cluster.helm("uninstall", "smoke", "-n", k8s_namespace, "--wait", "--timeout", "60s")
    assert not exists(kube_cluster, "configmap", "smoke-greeting", "-n", k8s_namespace)
    assert kube_cluster.helm("list", "-n", k8s_namespace, "-q").stdout.split() == []
