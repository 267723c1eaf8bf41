"""`helm test --logs` reads the test pod's logs after the test has run, so the pod must still be there:
with `hook-succeeded` in its delete policy Helm deleted it first (`pods "...-test-healthz" not found`,
seen on real pods). `before-hook-creation` alone keeps it until the next `helm test` replaces it.
Needs helm from `make tools` (no cluster)."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import helm_template, one

pytestmark = pytest.mark.k8s


def test_helm_test_pod_outlives_its_run_so_its_logs_can_be_read():
    pod = one(helm_template(), "Pod")
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    policies = [p.strip() for p in annotations.get("helm.sh/hook-delete-policy", "").split(",") if p.strip()]
    assert policies == ["before-hook-creation"], policies
