"""The decorator options table (docs/decorator.md, "Options") names every option the decorator takes, and no
other; the README links to it instead of keeping a copy."""
import re
from pathlib import Path

from cachedmodel.options import CacheOptions

ROOT = Path(__file__).resolve().parents[2]
OPTIONS_DOC = ROOT / "docs" / "decorator.md"
HEADER = "| Option | Default | Meaning |"


def documented_options(text: str) -> set[str]:
    table = text[text.index(HEADER):]
    table = table[:table.index("\n\n")]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def test_every_option_is_documented_and_nothing_else():
    assert documented_options(OPTIONS_DOC.read_text(encoding="utf-8")) == set(CacheOptions.model_fields)


def test_the_readme_links_to_the_options_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/decorator.md#options)" in readme
    assert HEADER not in readme  # one table, in one place


def test_a_missing_option_is_caught():
    text = OPTIONS_DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `ttl_seconds` |"))
    assert set(CacheOptions.model_fields) - documented_options(text.replace(row + "\n", "")) == {"ttl_seconds"}
