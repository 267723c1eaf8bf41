"""The README's decorator options table names every option the decorator takes, and no other."""
import re
from pathlib import Path

from cachedmodel.options import CacheOptions

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_options() -> set[str]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| Option | Default | Meaning |"):]
    table = table[:table.index("\n\n")]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def test_every_option_is_documented_and_nothing_else():
    assert documented_options() == set(CacheOptions.model_fields)
