"""The Python environment is locked: every package, transitive ones included, pinned with hashes.

requirements/dev.lock is what `make setup` installs (hash-checked) and what the tests run on; the
images install requirements/{model-service,operator}.lock, subsets of it. `make lock` rewrites all
three (scripts/lock.sh). These checks read only the lock files, the pyprojects and the installed
venv — never what the registry serves today — so they hold on any machine until the lock changes.
"""
from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import distribution, distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
IMAGE_LOCKS = {"model-service": LOCKS / "model-service.lock", "operator": LOCKS / "operator.lock"}
DEMO_LOCK = LOCKS / "demo.lock"
PROJECT_PACKAGES = {"cachedmodel", "cachedmodel-operator", "insurance-charges-model", "iris-model"}


def read_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, sha256 hashes) of a `uv pip compile --generate-hashes` file."""
    entries: dict[str, tuple[str, frozenset[str]]] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split(" --hash=")
        name, _, version = requirement.strip().partition("==")
        assert version, f"{path.name}: {requirement!r} is not pinned with =="
        hashes = frozenset(option.strip() for option in options)
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{path.name}: {name} has no sha256 hash"
        entries[canonicalize_name(name.split("[")[0])] = (version.strip(), hashes)
    return entries


DEV = read_lock(LOCKS / "dev.lock")


def test_dev_lock_pins_every_direct_dev_requirement_at_its_pin():
    for line in (LOCKS / "dev.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in DEV, f"{name} (requirements/dev.in) is missing from dev.lock: run `make lock`"
        assert requirement.specifier.contains(DEV[name][0], prereleases=True), \
            f"{name}: dev.lock has {DEV[name][0]}, dev.in asks {requirement.specifier}: run `make lock`"


@pytest.mark.parametrize("image", [*sorted(IMAGE_LOCKS), "demo"])
def test_image_and_demo_locks_are_subsets_of_the_dev_lock(image):
    """Same version and the same files: an image (and the demo) runs exactly what the tests ran."""
    for name, (version, hashes) in read_lock(IMAGE_LOCKS.get(image, DEMO_LOCK)).items():
        assert name in DEV, f"{image}.lock has {name}, which the dev environment never tested"
        assert (version, hashes) == DEV[name], f"{image}.lock pins {name} differently from dev.lock"


# scripts/lock.sh resolves for any Python 3.11 (Debian's 3.11.2 in the images, 3.11.x here).
LOCKED_FOR = {"python_version": "3.11", "python_full_version": "3.11.0"}


def _closure(requirements: list[str], extras: set[str]) -> set[str]:
    """Names of `requirements` and everything they need, read from the installed (locked) metadata."""
    seen: set[str] = set()
    pending = [(Requirement(r), extras) for r in requirements]
    while pending:
        requirement, active = pending.pop()
        if requirement.marker and not any(requirement.marker.evaluate({**LOCKED_FOR, "extra": e})
                                          for e in active | {""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for raw in distribution(name).requires or []:
            pending.append((Requirement(raw), set(requirement.extras)))
    return seen


def _project_dependencies(pyproject: Path, extra: str | None = None) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])


def _build_closure() -> set[str]:
    return _closure(["setuptools", "wheel"], set())  # requirements/build.in


def test_model_service_lock_is_exactly_the_runtime_closure():
    needed = _closure(_project_dependencies(ROOT / "pyproject.toml", "service")
                      + _project_dependencies(ROOT / "examples" / "pyproject.toml"), set())
    assert set(read_lock(IMAGE_LOCKS["model-service"])) == needed | _build_closure(), "run `make lock`"


def test_demo_lock_is_the_service_runtime_plus_its_http_client():
    needed = _closure(_project_dependencies(ROOT / "pyproject.toml", "service")
                      + _project_dependencies(ROOT / "examples" / "pyproject.toml") + ["httpx"], set())
    assert set(read_lock(DEMO_LOCK)) == needed | _build_closure(), "run `make lock`"
    assert not {"pytest", "kopf", "kubernetes", "hypothesis"} & set(read_lock(DEMO_LOCK))


def test_operator_lock_is_exactly_the_runtime_closure():
    needed = _closure(_project_dependencies(ROOT / "operator" / "pyproject.toml"), set())
    assert set(read_lock(IMAGE_LOCKS["operator"])) == needed | _build_closure(), "run `make lock`"


def test_the_venv_is_exactly_the_dev_lock():
    """What the tests run on is what the lock says: nothing missing, nothing extra, no other version."""
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    for name in PROJECT_PACKAGES | {"pip"}:
        installed.pop(name, None)
    assert installed == {name: version for name, (version, _) in DEV.items()}, \
        f"{sys.prefix} differs from requirements/dev.lock: run `make setup`"


@pytest.mark.parametrize("image", sorted(IMAGE_LOCKS))
def test_dockerfile_installs_its_lock_with_hash_checking(image):
    dockerfile = (ROOT / "images" / image / "Dockerfile").read_text()
    installs = [line for line in re.sub(r"\\\n", " ", dockerfile).splitlines() if "pip install" in line]
    assert any(f"-r /src/requirements/{image}.lock" in line and "--require-hashes" in line and "--no-deps" in line
               for line in installs), installs
    assert all("--no-build-isolation" in line or "--require-hashes" in line for line in installs), \
        "a build with isolation would fetch an unpinned setuptools"
    ignore = (ROOT / "images" / image / "Dockerfile.dockerignore").read_text()
    assert f"!requirements/{image}.lock" in ignore.splitlines()
