"""The operator image's recipe: pinned base, non-root user, and the CMD the chart and the e2e suite
rely on (its dependencies come from requirements/operator.lock: tests/unit/test_lock.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "operator" / "Dockerfile"


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


