"""The model-service image's entrypoint, run as a local process exactly as its Dockerfile says.

No Docker engine here, so the Dockerfile's final stage is read (ENV, CMD, HEALTHCHECK, USER, the
config COPY) and its CMD is started with that environment from the dev venv: if the CMD or the
environment contract drifts, this test runs the drifted command and fails.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cachedmodel.testing.model_service import REPO, ModelService

pytestmark = pytest.mark.integration

DOCKERFILE = REPO / "images" / "model-service" / "Dockerfile"
RUNTIME_DOCKERFILE = REPO / "images" / "model-runtime" / "Dockerfile"
BODY = {"age": 30, "sex": "male", "bmi": 22.1, "children": 0, "smoker": False, "region": "southwest"}


def final_stage(text: str) -> dict:
    """Pure: the final stage's ENV (dict), CMD and HEALTHCHECK CMD (lists), USER and COPY pairs."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    stage = {"env": {}, "cmd": None, "healthcheck": None, "user": None, "copies": []}
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stage = {"env": {}, "cmd": None, "healthcheck": None, "user": None, "copies": []}
        elif instruction == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stage["env"][key] = value
        elif instruction == "CMD":
            stage["cmd"] = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            stage["healthcheck"] = json.loads(rest[rest.index("CMD") + 3:])
        elif instruction == "USER":
            stage["user"] = rest.strip()
        elif instruction == "COPY" and "--from" not in rest:
            *sources, destination = rest.split()
            stage["copies"].extend((source, destination) for source in sources)
    return stage


def image_contract(dockerfile: Path) -> dict:
    """A model image's final stage on top of the runtime's (`FROM ${RUNTIME_IMAGE}`): the runtime's ENV,
    CMD, HEALTHCHECK and USER unless the model image sets its own, and both stages' COPYs."""
    text = dockerfile.read_text()
    stage = final_stage(text)
    if "FROM ${RUNTIME_IMAGE}" not in text:
        return stage
    base = final_stage(RUNTIME_DOCKERFILE.read_text())
    return {"env": {**base["env"], **stage["env"]}, "cmd": stage["cmd"] or base["cmd"],
            "healthcheck": stage["healthcheck"] or base["healthcheck"], "user": stage["user"] or base["user"],
            "copies": base["copies"] + stage["copies"]}


def local_command(command: list[str]) -> list[str]:
    """The image's `python` is the venv's; here it is this interpreter."""
    return [sys.executable if part == "python" else part for part in command]


def test_dockerfile_contract():
    stage = image_contract(DOCKERFILE)
    assert stage["user"] == "10001:10001"
    assert stage["env"]["PORT"] == "8000" and stage["env"]["HOST"] == "0.0.0.0"
    assert stage["env"]["REST_CONFIG"] == "/etc/cachedmodel/rest_config.yaml"
    assert ("examples/rest_config.yaml", "/etc/cachedmodel/rest_config.yaml") in stage["copies"]
    assert stage["env"]["PYTHONDONTWRITEBYTECODE"] == "1"  # nothing written on a read-only root filesystem
    assert stage["cmd"] and stage["healthcheck"]


def test_entrypoint_serves_probes_and_predictions_like_the_container(redis_server, tmp_path):
    stage = image_contract(DOCKERFILE)
    config_source = dict((dest, src) for src, dest in stage["copies"])[stage["env"]["REST_CONFIG"]]
    service = ModelService(config=REPO / config_source, command=local_command(stage["cmd"]))
    env = {k: v for k, v in stage["env"].items() if k != "PATH"}
    # in the pod: HOST 0.0.0.0 and PORT 8000; here loopback and a free port
    service.env = {**env, "REST_CONFIG": str(REPO / config_source), "HOST": "127.0.0.1", "PORT": str(service.port),
                   "REDIS_URL": redis_server.url, "HOME": str(tmp_path)}
    workdir_before = set(os.listdir(REPO))
    try:
        service.start()
        with httpx.Client(base_url=service.url, timeout=10.0) as http:
            for probe in ("/api/health", "/api/health/ready", "/api/health/startup"):
                assert http.get(probe).status_code == 200, probe
            first = http.post("/api/models/insurance_charges_model/prediction", json=BODY)
            second = http.post("/api/models/insurance_charges_model/prediction", json=BODY)
            assert first.status_code == 200 and first.json()["charges"] > 0
            assert second.headers["x-cache"] == "hit" and second.json() == first.json()
            assert http.get("/metrics").status_code == 200
        healthcheck = subprocess.run(local_command(stage["healthcheck"]), env={**os.environ, **service.env},
                                     capture_output=True, text=True, timeout=30)
        assert healthcheck.returncode == 0, healthcheck.stderr
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.cleanup()
    assert set(os.listdir(REPO)) == workdir_before  # wrote nothing where it runs
    assert not any(Path(tmp_path).iterdir())          # nor in HOME


def test_healthcheck_fails_when_nothing_listens(tmp_path):
    stage = image_contract(DOCKERFILE)
    from cachedmodel.testing.redis_server import free_port
    result = subprocess.run(local_command(stage["healthcheck"]), env={**os.environ, "PORT": str(free_port())},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "probe:" in result.stderr
