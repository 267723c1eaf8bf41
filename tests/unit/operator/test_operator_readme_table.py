"""The README's CachedModel fields table is the one generated from the CRD schema."""
from pathlib import Path

from cachedmodel_operator import docs, schema

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_table_matches_the_crd():
    text = README.read_text()
    start, end = text.index(docs.BEGIN), text.index(docs.END) + len(docs.END)
    assert text[start:end] == docs.fields_table(), \
        "README 'Configuration reference' is stale: run `python -m cachedmodel_operator.docs --write README.md`"


def test_table_lists_every_schema_field():
    listed = {row[0] for row in docs.rows()}
    spec = schema.openapi_schema()["properties"]["spec"]
    for section in ("model", "cache", "redis"):
        for name in spec["properties"][section]["properties"]:
            assert f"spec.{section}.{name}" in listed
    assert "spec.redis.external.passwordSecretRef.key" in listed
