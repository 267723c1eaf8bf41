"""docs/deploying.md "What one CachedModel makes" lists the children the operator really makes, by kind and name,
for each kind of CachedModel: the table is checked against the manifests `render` prints."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cachedmodel_operator.cli import render_text

DOC = Path(__file__).resolve().parents[3] / "docs" / "deploying.md"
NAME = "insurance-charges"
BASE = f"""apiVersion: cachedmodel.dev/v1alpha1
kind: CachedModel
metadata: {{name: {NAME}}}
spec:
  model:
    image: cachedmodel/insurance-charges-model:0.1.0
    classPath: insurance_charges_model.model.InsuranceChargesModel
"""
CASES = {
    "standalone": BASE,
    "sentinel": BASE + "  redis: {mode: sentinel}\n",
    "cluster": BASE + "  redis: {mode: cluster}\n",
    "external": BASE + "  redis: {external: {url: 'redis://cache.example:6379/0'}}\n",
    "disabled": BASE + "  cache: {enabled: false}\n",
    "autoscaling": BASE + "    resources: {requests: {cpu: 100m}}\n    autoscaling: {maxReplicas: 4}\n",
}
# "Made when" column of the table -> the cases it covers
WHEN = {"always": set(CASES), "managed Redis": {"standalone", "sentinel", "cluster", "autoscaling"},
        "standalone": {"standalone", "autoscaling"}, "sentinel": {"sentinel"}, "cluster": {"cluster"},
        "`spec.model.autoscaling`": {"autoscaling"}}


def documented(text: str | None = None) -> list[tuple[str, str, str]]:
    """(name, kind, made when) of each row of the table under "## What one CachedModel makes"."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    section = text[text.index("## What one CachedModel makes"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| `<name>")]
    assert rows, "no table of children in docs/deploying.md"
    found = []
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        found.append((re.fullmatch(r"`(<name>[-a-z]*)`", cells[0]).group(1), cells[1], cells[2]))
    return found


def rendered(case: str) -> set[tuple[str, str]]:
    return {(doc["metadata"]["name"], doc["kind"]) for doc in yaml.safe_load_all(render_text(CASES[case])) if doc}


def test_every_row_says_when_it_is_made():
    assert {when for _, _, when in documented()} <= set(WHEN)


@pytest.mark.parametrize("case", CASES)
def test_the_documented_children_are_the_rendered_ones(case):
    expected = {(name.replace("<name>", NAME), kind) for name, kind, when in documented() if case in WHEN[when]}
    assert expected == rendered(case)


def test_a_missing_or_misnamed_child_is_caught():
    text = DOC.read_text(encoding="utf-8")
    pdb = "| `<name>-redis-sentinel` | PodDisruptionBudget |"
    misnamed = text.replace(pdb, pdb.replace("-redis-sentinel", "-sentinel"))
    too_few = text.replace("| `<name>-config` | ConfigMap | always |", "| `<name>-config` | ConfigMap | standalone |")
    for wrong in (misnamed, too_few):
        assert wrong != text
        rows = documented(wrong)
        assert any({(n.replace("<name>", NAME), k) for n, k, w in rows if case in WHEN[w]} != rendered(case)
                   for case in CASES)
