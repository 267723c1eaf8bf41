"""The CachedModel fields reference (docs/cachedmodel-reference.md) is the table generated from the CRD schema,
and the README links to it instead of carrying a copy."""
from pathlib import Path

from cachedmodel_operator import docs, schema

ROOT = Path(__file__).resolve().parents[3]
REFERENCE = ROOT / docs.DOCUMENT
STALE = f"stale: run `.venv/bin/python -m cachedmodel_operator.docs --write {docs.DOCUMENT}`"


def generated_block(text: str) -> str:
    start, end = text.index(docs.BEGIN), text.index(docs.END) + len(docs.END)
    return text[start:end]


def test_reference_table_matches_the_crd():
    assert generated_block(REFERENCE.read_text(encoding="utf-8")) == docs.fields_table(), f"{docs.DOCUMENT} is {STALE}"


def test_the_readme_links_to_the_reference_and_holds_no_copy():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"]({docs.DOCUMENT})" in readme
    assert "cachedmodel-fields:begin" not in readme


def test_a_stale_table_is_caught_and_rewritten(tmp_path):
    """What the first test relies on: a block that differs from the CRD is not equal, and --write mends it."""
    stale = REFERENCE.read_text(encoding="utf-8").replace("| `spec.cache.ttlSeconds` |", "| `spec.cache.ttl` |")
    path = tmp_path / "reference.md"
    path.write_text(stale, encoding="utf-8")
    assert generated_block(stale) != docs.fields_table()
    docs.update_document(str(path))
    assert path.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")


def test_table_lists_every_schema_field():
    listed = {row[0] for row in docs.rows()}
    spec = schema.openapi_schema()["properties"]["spec"]
    for section in ("model", "cache", "redis"):
        for name in spec["properties"][section]["properties"]:
            assert f"spec.{section}.{name}" in listed
    assert "spec.redis.external.passwordSecretRef.key" in listed
