"""Every Prometheus series the docs name is one the model service exports, as /metrics spells it (a counter with
its _total, e.g. cachedmodel_redis_evicted_keys_total; a histogram by its family name or a _bucket/_sum/_count
series). The names are read from the library's collectors (tests/support/promql_names.py), never listed here."""
from __future__ import annotations

import re
from pathlib import Path

from tests.support.promql_names import exported_series

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "operator" / "README.md",
             ROOT / "charts" / "cachedmodel-operator" / "README.md"]
SERIES = re.compile(r"\b(?:cachedmodel|http)_[a-z0-9_]+\*?")
NOT_SERIES = ("cachedmodel_operator",)  # the operator's Python package


def allowed() -> set[str]:
    names, _ = exported_series()
    return names | {name.removesuffix("_bucket") for name in names if name.endswith("_bucket")}


def named_series(text: str) -> set[str]:
    """Series names in a text; `cachedmodel_redis_*` style wildcards are families, not names."""
    found = {match.group(0) for match in SERIES.finditer(text)
             if not text.startswith(".py", match.end())}  # a module's file name (http_metrics.py) is no series
    return {name for name in found if not name.endswith(("*", "_")) and not name.startswith(NOT_SERIES)}


def test_every_series_the_docs_name_is_exported():
    known = allowed()
    wrong = [f"{path.relative_to(ROOT)}: {name}" for path in DOCUMENTS
             for name in sorted(named_series(path.read_text(encoding="utf-8")) - known)]
    assert not wrong, "the docs name series nobody exports:\n" + "\n".join(wrong)


def test_the_check_knows_counters_by_their_total():
    known = allowed()
    assert "cachedmodel_redis_evicted_keys_total" in known and "cachedmodel_redis_evicted_keys" not in known
    assert "cachedmodel_cache_lookup_seconds" in known  # a histogram's family name
    assert named_series("watch `cachedmodel_redis_evicted_keys` and the `cachedmodel_redis_*` series of "
                        "cachedmodel_operator") == {"cachedmodel_redis_evicted_keys"}


def test_module_file_names_are_not_series_but_misspelt_series_still_are():
    assert named_series("see `http_metrics.py` and tests/support/cachedmodel_samples.py") == set()
    assert named_series("watch cachedmodel_cache_hit_total") == {"cachedmodel_cache_hit_total"}
