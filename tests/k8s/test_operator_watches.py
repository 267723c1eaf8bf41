"""The operator asks the API server for its own children only: every child watch carries a label selector.

kopf's handler `labels=` filter is applied client-side, after the API server has streamed every
ConfigMap, Service, Deployment ... of the cluster to the operator. To see what the operator really asks
for, it talks to the cluster through `kubectl proxy -v=6`, which logs the URL of every request it
forwards (the watch URLs included), so the test reads the selectors off the wire.
"""
from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from cachedmodel_operator import schema
from cachedmodel_operator.controller import CHILD_RESOURCES
from cachedmodel_operator.resource import LABEL_MANAGED_BY, MANAGER
from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd
from cachedmodel_operator.testing.processes import free_port, wait_until

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(180)]

URL = re.compile(r"https?://[^\s\"']+")
CHILD_PLURALS = {plural for _, _, plural in CHILD_RESOURCES} | {"pods"}


def watch_requests(log_text: str) -> dict[str, list[dict[str, list[str]]]]:
    """plural -> query of each watch request in the proxy's log."""
    found: dict[str, list[dict[str, list[str]]]] = {}
    for url in URL.findall(log_text):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if query.get("watch") == ["true"]:
            found.setdefault(parts.path.rstrip("/").rsplit("/", 1)[-1], []).append(query)
    return found


@pytest.fixture
def proxy_kubeconfig(kube_cluster, tmp_path):
    """A kubeconfig for `kubectl proxy -v=6` in front of the cluster (plain HTTP on loopback, no credentials)."""
    port = free_port()
    log_path = tmp_path / "proxy.log"
    with open(log_path, "w") as log:
        proxy = subprocess.Popen([str(Path(kube_cluster.bin_dir) / "kubectl"), "proxy", "--address=127.0.0.1",
                                  f"--port={port}", "-v=6"], env=kube_cluster.env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def answering() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return response.status == 200
        wait_until(answering, 30, interval=0.1, what="kubectl proxy")
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "proxy",
                  "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                  "users": [{"name": "proxy", "user": {}}],
                  "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}]}
        path = tmp_path / "proxy.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        yield path, log_path
    finally:
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait(5)


def test_every_child_kind_is_watched_with_the_operators_label_selector(kube_cluster, k8s_namespace,
                                                                        proxy_kubeconfig):
    install_crd(kube_cluster)
    kubeconfig, proxy_log = proxy_kubeconfig
    selector = f"{LABEL_MANAGED_BY}={MANAGER}"
    with OperatorProcess(str(kubeconfig), resync_seconds=5) as operator:
        operator.wait(lambda: CHILD_PLURALS | {schema.PLURAL} <= set(watch_requests(proxy_log.read_text())), 60,
                      "a watch request for every child kind and for CachedModels")
        # it still works through the proxy: a CachedModel gets its children
        body = {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": "watched"},
                "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                                   "classPath": "insurance_charges_model.model.InsuranceChargesModel"}}}
        kube_cluster.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=json.dumps(body))
        operator.wait(lambda: kube_cluster.kubectl("get", "deployment", "watched", "-n", k8s_namespace,
                                                   check=False).returncode == 0, 60, "the Deployment of watched")
    watches = watch_requests(proxy_log.read_text())
    unfiltered = {plural: [q.get("labelSelector") for q in queries]
                  for plural, queries in watches.items()
                  if plural in CHILD_PLURALS and any(q.get("labelSelector") != [selector] for q in queries)}
    assert not unfiltered, f"watches without the server-side selector {selector!r}: {unfiltered}"
    assert all("labelSelector" not in q for q in watches[schema.PLURAL]), "every CachedModel must be seen"


def test_a_child_that_loses_the_label_is_repaired_at_once(kube_cluster, k8s_namespace):
    """A label-selected watch reports an object that stops matching as DELETED (the object as it was, label
    included), so the operator repairs it at once. With kopf's client-side filter alone the MODIFIED event
    (no label) was dropped and the repair waited for the resync (here 10 minutes)."""
    install_crd(kube_cluster)
    ns = k8s_namespace
    body = {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": "unlabelled"},
            "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                               "classPath": "insurance_charges_model.model.InsuranceChargesModel"}}}

    def managed_by() -> str | None:
        result = kube_cluster.kubectl("get", "configmap", "unlabelled-config", "-n", ns, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)["metadata"].get("labels", {}).get(LABEL_MANAGED_BY)

    with OperatorProcess(kube_cluster.kubeconfig, namespaces=[ns], resync_seconds=600) as operator:
        kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
        operator.wait(lambda: managed_by() == MANAGER, 60, "ConfigMap unlabelled-config")
        kube_cluster.kubectl("label", "configmap", "unlabelled-config", "-n", ns, f"{LABEL_MANAGED_BY}-")
        operator.wait(lambda: managed_by() == MANAGER, 20, "the label put back by the operator")
