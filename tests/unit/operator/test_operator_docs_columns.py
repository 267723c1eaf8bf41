"""What the docs show of `kubectl get cmodel` is what kubectl prints: every header line in README.md and docs/*.md
has the CRD's printer columns in the CRD's order (the priority-1 ones only under `-o wide`), and every row shown
belongs to a CachedModel the same document applies (`kubectl apply -f manifests/examples/...`), with the values its
spec gives (name, desired replicas, maxmemory, policy, Redis mode)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cachedmodel_operator import docs, schema
from cachedmodel_operator.cache_metrics import quantity
from cachedmodel_operator.resource import CachedModel

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def cachedmodels(text: str) -> dict[str, CachedModel]:
    """The CachedModels in a YAML text, by name, with the defaults the operator applies."""
    found = {}
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError:  # not YAML at all (a template, say): no CachedModel to compare with
        return found
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "CachedModel":
            found[document["metadata"]["name"]] = CachedModel.from_body(schema.validate(document))
    return found


def applied_examples(document: str) -> dict[str, CachedModel]:
    """The CachedModels a document applies: the repository files of its `kubectl apply -f` lines (a directory
    means its *.yaml), which win over the CachedModels written out in its yaml blocks (a walkthrough that
    applies the file it just showed)."""
    found = {}
    for block in re.findall(r"^```ya?ml\n(.*?)^```", document, re.MULTILINE | re.DOTALL):
        if "kind: CachedModel" in block:
            found.update(cachedmodels(block))
    for target in re.findall(r"kubectl apply\b[^\n`]*?-f\s+(\S+)", document):
        path = ROOT / target.rstrip("/")
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path] if path.is_file() else []
        for file in files:
            found.update(cachedmodels(file.read_text(encoding="utf-8")))
    return found


def redis_bytes(text: str) -> int:
    """redis.conf memory units: k/m/g are powers of 1000, kb/mb/gb powers of 1024."""
    number, unit = re.fullmatch(r"(\d+)([a-z]*)", text.lower()).groups()
    factor = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}
    return int(number) * factor[unit]


def tables(text: str) -> list[tuple[bool, list[str], list[list[str]]]]:
    """(wide, header cells, row cells) of each `kubectl get cmodel` output in the fenced blocks of a document."""
    found = []
    for block in FENCE.findall(text):
        lines = block.splitlines()
        for index, line in enumerate(lines):
            if not re.match(r"NAME\s{2,}READY\b", line):
                continue
            commands = [previous for previous in lines[:index] if "kubectl" in previous]
            wide = bool(commands) and "-o wide" in commands[-1]
            rows = []
            for row in lines[index + 1:]:
                if not row.strip() or row.startswith(("$", "#", "kubectl")):
                    break
                rows.append(re.split(r"\s{2,}", row.strip()))
            found.append((wide, re.split(r"\s{2,}", line.strip()), rows))
    return found


def shown() -> list[tuple[str, bool, list[str], list[list[str]]]]:
    return [(str(path.relative_to(ROOT)), *table) for path in DOCUMENTS
            for table in tables(path.read_text(encoding="utf-8"))]


def test_the_readme_applies_the_example_whose_row_it_shows():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    applied = re.findall(r"kubectl apply -n \S+ -f (manifests/examples/\S+\.yaml)", readme)
    assert applied, "the README no longer applies an example from manifests/examples/"
    names = {name for path in applied for name in cachedmodels((ROOT / path).read_text(encoding="utf-8"))}
    assert {row[0] for where, _, _, rows in shown() if where == "README.md" for row in rows} <= names


@pytest.mark.parametrize("where, wide, header, rows", shown())
def test_header_is_the_crds_columns_in_order(where, wide, header, rows):
    assert header == docs.header(wide), f"{where}: columns differ from the CRD's additionalPrinterColumns"


@pytest.mark.parametrize("where, wide, header, rows", shown())
def test_rows_agree_with_the_applied_example(where, wide, header, rows):
    examples = applied_examples((ROOT / where).read_text(encoding="utf-8"))
    for cells in rows:
        assert len(cells) == len(header), f"{where}: {cells}"
        row = dict(zip(header, cells))
        assert row["NAME"] in examples, f"{where}: {row['NAME']} is no CachedModel the docs apply"
        cm = examples[row["NAME"]]
        assert row["DESIRED"] == str(cm.model["replicas"])
        assert row["MAXMEMORY"] == cm.redis["maxmemory"]
        assert row["POLICY"] == cm.redis["maxmemoryPolicy"]
        assert row["REDIS"] == cm.redis["mode"]
        assert row["MEMORY"].endswith("/" + quantity(redis_bytes(cm.redis["maxmemory"])))


def test_a_reordered_header_is_caught():
    before = ("$ kubectl get cmodel\nNAME   READY   REPLICAS   DESIRED   MAXMEMORY   POLICY   HIT RATIO   MEMORY   "
              "REDIS   AGE\n")
    ((wide, header, _),) = tables(f"```\n{before}```\n")
    assert not wide and header != docs.header() and sorted(header) == sorted(docs.header())
    ((wide, header, _),) = tables("```\n$ kubectl get cmodel -o wide\n" + "   ".join(docs.header(True)) + "\n```\n")
    assert wide and header == docs.header(True)
