"""The operator rides out an API server outage: no worker dies, and a spec change made afterwards converges.

The kube-apiserver of the local control plane is stopped under a running operator (etcd keeps the state)
and started again on the same port and certificates, so the client sees what a real outage looks like:
connection refused, i.e. urllib3's MaxRetryError rather than an ApiException.
"""
from __future__ import annotations

import json
import re

import pytest

from cachedmodel_operator import schema
from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]


def cached_model(name: str) -> dict:
    return {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": name},
            "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                               "classPath": "insurance_charges_model.model.InsuranceChargesModel", "replicas": 2}}}


def test_a_spec_change_after_an_api_server_outage_converges(kube_cluster, k8s_namespace):
    if kube_cluster.external:
        pytest.skip("needs the local control plane: an existing cluster's API server is not ours to stop")
    install_crd(kube_cluster)
    ns = k8s_namespace

    def get(kind: str, name: str) -> dict | None:
        result = kube_cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def ready() -> bool:
        body = get("cachedmodel", "outage") or {}
        status = body.get("status") or {}
        return (status.get("observedGeneration") == body["metadata"]["generation"] and
                any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []))

    # resync every second: the worker certainly reconciles (and fails) while the API server is away
    with OperatorProcess(kube_cluster.kubeconfig, namespaces=[ns], resync_seconds=1) as operator:
        kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(cached_model("outage")))
        operator.wait(ready, 60, "CachedModel outage Ready before the outage")
        failed = re.compile(rf"{re.escape(ns)}/outage (reconcile failed|: unexpected worker error)")
        mark = len(operator.log_path.read_text())

        kube_cluster.stop_apiserver()
        try:
            operator.wait(lambda: failed.search(operator.log_path.read_text()[mark:]), 30,
                          "a reconcile failing while the API server is down")
        finally:
            kube_cluster.start_apiserver()

        kube_cluster.kubectl("patch", "cmodel", "outage", "-n", ns, "--type", "merge",
                             "-p", json.dumps({"spec": {"model": {"replicas": 3}}}))
        operator.wait(lambda: (get("deployment", "outage") or {}).get("spec", {}).get("replicas") == 3, 60,
                      "the spec change made after the outage reaching the Deployment")
        operator.wait(ready, 60, "CachedModel outage Ready after the outage")
        assert operator.healthy()
