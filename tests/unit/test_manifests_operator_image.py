"""The operator image's recipe: pinned base, pinned dependencies that match the dev environment,
non-root user, and the CMD the chart and the e2e suite rely on.

images/operator/requirements.txt is the operator's dependency closure with the versions installed in
.venv (which requirements-dev.txt pins), so the image runs what the tests ran. When the operator's
dependencies change, regenerate it:

    .venv/bin/python -m tests.unit.test_manifests_operator_image > images/operator/requirements.txt
"""
from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "operator" / "Dockerfile"
REQUIREMENTS = ROOT / "images" / "operator" / "requirements.txt"
HEADER = ("# Pinned runtime dependencies of the operator image (the closure of operator/pyproject.toml's\n"
          "# dependencies at the versions of the dev venv). Regenerate:\n"
          "#   .venv/bin/python -m tests.unit.test_manifests_operator_image > images/operator/requirements.txt\n")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure() -> dict[str, str]:
    """name -> installed version for the operator's declared dependencies and everything they need."""
    declared = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())["project"]["dependencies"]
    pins: dict[str, str] = {}
    pending = [Requirement(r) for r in declared]
    while pending:
        requirement = pending.pop()
        name = _normal(requirement.name)
        if name in pins:
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError as error:
            raise AssertionError(f"{requirement.name} is needed by the operator but not installed in .venv") from error
        pins[name] = dist.version
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                pending.append(sub)
    return pins


def render_requirements() -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(dependency_closure().items()))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def test_requirements_are_the_pinned_closure_of_the_operator_dependencies():
    assert REQUIREMENTS.read_text() == render_requirements(), (
        "images/operator/requirements.txt is out of date; regenerate it with "
        "`.venv/bin/python -m tests.unit.test_manifests_operator_image > images/operator/requirements.txt`")


def test_requirements_agree_with_requirements_dev_pins():
    dev_pins = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            dev_pins[_normal(name.split("[")[0])] = version.strip()
    image_pins = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines()
                      if line and not line.startswith("#"))
    for name, version in image_pins.items():
        if name in dev_pins:
            assert dev_pins[name] == version, f"{name}: image pins {version}, requirements-dev.txt pins {dev_pins[name]}"


def test_base_image_is_pinned_and_shared_by_both_stages():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    froms = [a for i, a in instructions if i == "FROM"]
    assert len(froms) == 2, "multi-stage: a builder and a final stage"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)


def test_runs_as_uid_10001_with_the_operator_run_command():
    instructions = dockerfile_instructions()
    users = [a for i, a in instructions if i == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    cmd = [a for i, a in instructions if i == "CMD"]
    assert json.loads(cmd[-1]) == ["cachedmodel-operator", "run"]
    assert not [a for i, a in instructions if i == "ENTRYPOINT"], "the chart relies on CMD alone"
    assert "8080" in [a for i, a in instructions if i == "EXPOSE"]


def test_final_stage_copies_only_the_venv_from_the_builder():
    instructions = dockerfile_instructions()
    final_start = max(n for n, (i, _) in enumerate(instructions) if i == "FROM")
    copies = [a for i, a in instructions[final_start:] if i == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


if __name__ == "__main__":
    print(render_requirements(), end="")
