"""Every link between the project's documents resolves: README.md and docs/*.md link only to files that exist,
and every `#anchor` names a heading of the target document (GitHub's slugs). A renamed heading or a moved file
fails here instead of leaving a dead link for the reader."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[^\n]*\n.*?^\1\2[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def prose(text: str) -> str:
    """The text without fenced code blocks and HTML comments (links and headings in them are not links)."""
    return FENCE.sub("", COMMENT.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text, lower case, punctuation removed except '-' and '_',
    each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)
    text = "".join(ch for ch in text.lower() if ch.isalnum() or ch in "-_ ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = prose(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for _, heading in HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", prose(path.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def problems(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: ({target})"
        if not destination.exists():
            found.append(f"{where}: no file {file_part}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            found.append(f"{where}: {destination.relative_to(root)} has no heading #{anchor}")
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_every_link_and_anchor_resolves(path):
    assert problems(path) == []


@pytest.mark.parametrize("heading, anchor", [
    ("Sizing the cache: `spec.redis.maxmemory` and `maxmemoryPolicy`",
     "sizing-the-cache-specredismaxmemory-and-maxmemorypolicy"),
    ("Real pods: `make test-pods`", "real-pods-make-test-pods"),
    ("Seeing the cache work: `status.cache`, Prometheus, Grafana",
     "seeing-the-cache-work-statuscache-prometheus-grafana"),
    ("Use it", "use-it"),
    ("a_b -- c.d (e)", "a_b----cd-e"),
])
def test_slug_follows_githubs_rules(heading, anchor):
    assert slug(heading) == anchor


def test_the_checker_finds_a_dead_anchor_and_a_missing_file(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Part two\n\n[ok](#part-two) [ok](b.md#b) [bad](#part-2)\n"
                                   "[gone](missing.md) `[not a link](#nope)`\n\n```\n[code](#nope)\n```\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert problems(tmp_path / "a.md", root=tmp_path) == ["a.md: (#part-2): a.md has no heading #part-2",
                                                          "a.md: (missing.md): no file missing.md"]
