"""e2e tier (each module sets pytestmark = e2e), on a cluster whose pods really run.

`kube_cluster` here is the e2e tier's own: CACHEDMODEL_KUBECONFIG's cluster when set (kind, a user's
cluster: CACHEDMODEL_REAL_PODS=1 says it runs containers, CACHEDMODEL_REDIS_IMAGE names the Redis image
its CachedModels use), else a real-pods cluster started on this
machine (cachedmodel_operator.testing.pods: the local control plane on a pod bridge plus a real
node, the images of `make images` imported). The k8s tier keeps the kwok control plane.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cachedmodel_operator.testing.control_plane import CLIENT_BINARIES, ControlPlane, default_bin_dir, missing_binaries
from tests.e2e.helpers import REAL_PODS, REAL_PODS_REASON

HERE = Path(__file__).parent


def _unavailable(reason: str) -> None:
    if os.environ.get("CACHEDMODEL_REQUIRE_K8S") == "1":
        pytest.fail(f"CACHEDMODEL_REQUIRE_K8S=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kube_cluster():
    bin_dir = default_bin_dir()
    existing = os.environ.get("CACHEDMODEL_KUBECONFIG") or None
    if existing:
        missing = missing_binaries(bin_dir, CLIENT_BINARIES)
        if missing:
            _unavailable(f"{', '.join(missing)} not found in {bin_dir}: run `make tools`")
        cluster = ControlPlane(bin_dir, kubeconfig=existing)
        # the Redis image CachedModels in that cluster use (an air-gapped cluster's mirror, a kind node's
        # loaded image); unset: the example's own spec.redis.image
        cluster.redis_image = os.environ.get("CACHEDMODEL_REDIS_IMAGE") or None
        yield cluster.start()
        return
    from cachedmodel_operator.testing.images import ImagesNotBuilt, archives, image_ref, images_manifest
    from cachedmodel_operator.testing.pods import PodsCluster, missing_prerequisites

    missing = missing_binaries(bin_dir, ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                         *CLIENT_BINARIES]) + missing_prerequisites(bin_dir)
    try:
        manifest = images_manifest()
    except ImagesNotBuilt as error:
        missing.append(str(error))
    if missing:
        _unavailable(f"a real-pods cluster needs {', '.join(missing)} (`make test-pods` installs and builds them)")
    cluster = PodsCluster(bin_dir, images={image_ref(name, manifest): path for name, path in archives(manifest).items()},
                          sandbox_image=image_ref("pause", manifest), redis_image=image_ref("redis", manifest))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE not in Path(item.path).parents:
            continue
        if item.get_closest_marker("needs_real_pods") and not REAL_PODS:
            item.add_marker(pytest.mark.skip(reason=REAL_PODS_REASON))


def pytest_terminal_summary(terminalreporter):
    from cachedmodel_operator.testing import pods

    for cluster in pods.STARTED:
        terminalreporter.write_line(f"real-pods cluster ({cluster.server}) started in {cluster.startup_seconds:.1f}s: "
                                    f"{cluster.timings}")
