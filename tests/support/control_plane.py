"""pytest plugin: the local Kubernetes control plane (cachedmodel_operator.testing) as fixtures."""
from __future__ import annotations

import os
import uuid

import pytest

from cachedmodel_operator.testing.control_plane import (CLIENT_BINARIES, LOCAL_BINARIES, ControlPlane,
                                                        default_bin_dir, missing_binaries)
from cachedmodel_operator.testing.processes import wait_until

# ------------------------------------------------------------------ pytest fixtures

_started: list[ControlPlane] = []


def _unavailable(reason: str) -> None:
    if os.environ.get("CACHEDMODEL_REQUIRE_K8S") == "1":
        pytest.fail(f"CACHEDMODEL_REQUIRE_K8S=1 but {reason}: run `make tools` (or set "
                    "CACHEDMODEL_K8S_BIN_DIR / CACHEDMODEL_KUBECONFIG)", pytrace=False)
    pytest.skip(f"{reason}: run `make tools`")


@pytest.fixture(scope="session")
def kube_cluster():
    """The session's cluster: CACHEDMODEL_KUBECONFIG's, or a local control plane started here."""
    bin_dir = default_bin_dir()
    existing = os.environ.get("CACHEDMODEL_KUBECONFIG") or None
    missing = missing_binaries(bin_dir, CLIENT_BINARIES if existing else LOCAL_BINARIES)
    if missing:
        _unavailable(f"Kubernetes binaries {', '.join(missing)} not found in {bin_dir}")
    cluster = ControlPlane(bin_dir, kubeconfig=existing)
    try:
        cluster.start()
        _started.append(cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def k8s_namespace(kube_cluster: ControlPlane):
    """A fresh namespace (with its default service account ready); deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_cluster.kubectl("create", "namespace", name)
    try:
        wait_until(lambda: kube_cluster.kubectl("get", "serviceaccount", "default", "-n", name,
                                                check=False).returncode == 0,
                   30, interval=0.2, what=f"service account default in namespace {name}")
        yield name
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def pytest_terminal_summary(terminalreporter):
    for cluster in _started:
        if cluster.startup_seconds is not None:
            terminalreporter.write_line(
                f"local Kubernetes control plane ({cluster.server}) started in {cluster.startup_seconds:.1f}s")
