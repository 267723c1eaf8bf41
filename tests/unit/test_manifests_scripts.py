"""The shipping scripts and the kind config, checked without Docker: they parse, shellcheck is clean
(when installed), kind-e2e.sh refuses clearly before touching anything when its tools are missing, and
kind-config.yaml pins a node image by digest."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.e2e.helpers import ROOT

SCRIPTS = [ROOT / "scripts" / "kind-e2e.sh", ROOT / "scripts" / "render-manifests.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_shellcheck_clean(script):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install shellcheck)")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
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
    assert "--config kind-config.yaml" in script
    assert 'CACHEDMODEL_REAL_PODS=1' in script and "-m pytest tests/e2e" in script, "kind runs the shared e2e suite"
