"""Smoke test of the operator image's entrypoint without Docker: run the Dockerfile's CMD the way the
container would (the final stage's ENV, WORKDIR, the venv's bin first on PATH like /opt/venv/bin),
against the local control plane; its liveness endpoint (what the chart probes) must answer, it must
really operate (the example CachedModel gets a status from it), and SIGTERM (what the kubelet sends)
must stop it promptly.

One deviation from the container: LIVENESS_ENDPOINT moves the endpoint to a free loopback port,
because 8080 may be taken on a shared machine (tests/unit/test_manifests_content.py checks that the
chart probes the operator's default port).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.helpers import CRD_NAME, EXAMPLE_FILE, ROOT, get_json
from cachedmodel_operator.testing.operator_process import install_crd
from cachedmodel.testing.redis_server import free_port, wait_until
from tests.unit.test_manifests_operator_image import dockerfile_instructions

pytestmark = pytest.mark.k8s


def final_stage() -> tuple[list[str], dict[str, str], str]:
    """(CMD, ENV, WORKDIR) of the Dockerfile's last stage."""
    instructions = dockerfile_instructions()
    start = max(n for n, (i, _) in enumerate(instructions) if i == "FROM")
    env, workdir, cmd = {}, "/", []
    for instruction, args in instructions[start:]:
        if instruction == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                env[key] = value
        elif instruction == "WORKDIR":
            workdir = args
        elif instruction == "CMD":
            cmd = json.loads(args)
    return cmd, env, workdir


@pytest.fixture
def crd_installed(kube_cluster):
    existed = get_json(kube_cluster, "crd", CRD_NAME) is not None
    install_crd(kube_cluster)
    yield
    if not existed:
        kube_cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", check=False, timeout=120)


def test_dockerfile_cmd_starts_a_working_operator(kube_cluster, k8s_namespace, crd_installed, tmp_path):
    cmd, image_env, workdir = final_stage()
    assert cmd == ["cachedmodel-operator", "run"]
    venv_bin = Path(sys.executable).parent  # plays /opt/venv/bin
    path = image_env.pop("PATH", "$PATH").replace("/opt/venv/bin", str(venv_bin)).replace("$PATH", os.environ["PATH"])
    port = free_port()
    env = {**os.environ, **image_env, "PATH": path, "KUBECONFIG": kube_cluster.kubeconfig,
           "WATCH_NAMESPACES": k8s_namespace, "LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz",
           # kwok pods' addresses are nobody's: no status.cache scraping from the host
           "CACHEDMODEL_SCRAPE_SECONDS": "0"}
    log = tmp_path / "operator.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"operator exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(healthy, 60, interval=0.2, what="the operator's liveness endpoint")
        kube_cluster.kubectl("apply", "-n", k8s_namespace, "-f", str(EXAMPLE_FILE))

        def reconciled() -> bool:
            healthy()
            found = get_json(kube_cluster, "cachedmodel", "insurance-charges", "-n", k8s_namespace)
            return bool((found or {}).get("status", {}).get("conditions"))

        try:
            wait_until(reconciled, 60, interval=0.3, what="the operator writing the example's status")
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{log.read_text()[-3000:]}") from None
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_dockerfile_installs_what_the_cmd_needs():
    """The builder stage installs the operator package and smoke-runs its console script."""
    text = (ROOT / "images" / "operator" / "Dockerfile").read_text()
    assert "COPY operator/ /src/operator/" in text
    assert "pip install --require-virtualenv --no-deps --no-build-isolation /src/operator" in text
    assert "cachedmodel-operator --help" in text
    assert "cachedmodel-operator = \"cachedmodel_operator.cli:main\"" in (ROOT / "operator" / "pyproject.toml").read_text()
