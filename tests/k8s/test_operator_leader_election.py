"""Two operator replicas with leader election (a coordination.k8s.io Lease) against the real API server:
one leads, the other waits as a healthy standby; when the leader's pod goes (SIGTERM: it releases the Lease)
or dies (SIGKILL: the Lease expires), the standby takes over and a spec change converges; the two never
run their handlers at the same time (the old one released before the new one acquired)."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest

from cachedmodel_operator import schema
from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

LEASE_SECONDS = 6
CONVERGE_SECONDS = 15


def manifest(name: str, replicas: int) -> dict:
    return {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": name},
            "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0", "replicas": replicas,
                               "classPath": "insurance_charges_model.model.InsuranceChargesModel"}}}


def log_time(operator: OperatorProcess, pattern: str) -> float | None:
    """When the operator's log first said `pattern` (its lines start with asctime), else None."""
    for line in operator.log_path.read_text(errors="replace").splitlines():
        if re.search(pattern, line):
            stamp = line[:23]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def test_one_leader_a_standby_takes_over_on_sigterm_and_on_sigkill(kube_cluster, k8s_namespace, tmp_path):
    install_crd(kube_cluster)
    lease = f"cm-op-{k8s_namespace}"[:63]

    def replica(name: str) -> OperatorProcess:
        return OperatorProcess(kube_cluster.kubeconfig, namespaces=[k8s_namespace], log_dir=tmp_path / name,
                               extra_env={"CACHEDMODEL_LEADER_ELECTION": lease, "POD_NAMESPACE": k8s_namespace,
                                          "POD_NAME": name, "CACHEDMODEL_LEASE_SECONDS": str(LEASE_SECONDS)})

    def holder() -> str:
        result = kube_cluster.kubectl("get", "lease", lease, "-n", k8s_namespace, "-o",
                                      "jsonpath={.spec.holderIdentity}", check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    def replicas() -> int | None:
        result = kube_cluster.kubectl("get", "deployment", "web", "-n", k8s_namespace, "-o",
                                      "jsonpath={.spec.replicas}", check=False)
        return int(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def scale_and_time(count: int) -> float:
        started = time.monotonic()
        kube_cluster.kubectl("patch", "cachedmodel", "web", "-n", k8s_namespace, "--type", "merge",
                             "-p", json.dumps({"spec": {"model": {"replicas": count}}}))
        a.wait(lambda: replicas() == count, 60, f"Deployment web at {count} replicas")
        return time.monotonic() - started

    a, b = replica("a"), replica("b")
    a.start()
    try:
        a.wait(lambda: holder().startswith("a_"), 30, "replica a holds the Lease")
        b.start()  # healthy (its standby answers the liveness probe) but not leading
        kube_cluster.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=json.dumps(manifest("web", 1)))
        a.wait(lambda: replicas() == 1, 60, "the leader made the Deployment")
        assert holder().startswith("a_")
        assert log_time(b, "is a standby") is not None and log_time(b, "acquired Lease") is None, b.tail()

        a.stop()  # SIGTERM, as when its pod is deleted: handlers stop, then the Lease is released
        seconds = scale_and_time(2)
        assert seconds < CONVERGE_SECONDS, f"converged after {seconds:.1f} s"
        assert holder().startswith("b_")
        released, acquired = log_time(a, "released Lease"), log_time(b, "acquired Lease")
        assert released is not None and acquired is not None and released <= acquired, (a.tail(), b.tail())

        a.start()  # back as a standby
        b.kill()  # SIGKILL, as when its node dies: the Lease expires after LEASE_SECONDS
        seconds = scale_and_time(3)
        assert seconds < LEASE_SECONDS + CONVERGE_SECONDS, f"converged after {seconds:.1f} s"
        assert holder().startswith("a_")
        print(f"\n[leader election] SIGTERM: converged in < {CONVERGE_SECONDS} s; SIGKILL: {seconds:.1f} s "
              f"(Lease {LEASE_SECONDS} s)")
    finally:
        a.stop()
        b.stop()
