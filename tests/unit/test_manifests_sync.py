"""manifests/ must be exactly what `make manifests` renders from the chart today.

Renders with scripts/render-manifests.sh into a temp dir (helm from `make tools`) and compares file by
file, so a chart change without `make manifests` fails here with the diff.
"""
from __future__ import annotations

import difflib
import subprocess

from tests.e2e.helpers import MANIFESTS_DIR, ROOT, helm_binary, helm_env


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifests_are_in_sync_with_the_chart(tmp_path):
    out = tmp_path / "manifests"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "render-manifests.sh"), str(out)], cwd=ROOT,
                            capture_output=True, text=True, env={**helm_env(), "HELM": helm_binary()}, timeout=120)
    assert result.returncode == 0, result.stderr
    rendered, committed = _files(out), _files(MANIFESTS_DIR)
    assert sorted(rendered) == sorted(committed), "manifests/ files differ from a fresh render: run `make manifests`"
    diffs = []
    for name, text in rendered.items():
        if committed[name] != text:
            diffs += difflib.unified_diff(committed[name].splitlines(), text.splitlines(),
                                          f"manifests/{name}", f"rendered/{name}", lineterm="", n=1)
    assert not diffs, "manifests/ is out of date: run `make manifests`\n" + "\n".join(diffs[:80])


def test_render_script_fails_clearly_without_helm(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "render-manifests.sh"), str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={**helm_env(), "HELM": str(tmp_path / "no-such-helm")})
    assert result.returncode != 0
    assert not (tmp_path / "out").exists(), "a failed render must not leave partial output"
