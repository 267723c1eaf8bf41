"""Copy each benchmark's Markdown results into the README, so the README's figures are the committed ones.

The README holds one block per benchmark between `<!-- bench:<name>:begin -->` and
`<!-- bench:<name>:end -->`; the block is bench/results/<name>.md without its title, its headings
demoted under the README's own. `make bench` refreshes the blocks of the benchmarks it ran, and a unit
test fails when a block and its results file disagree.
"""
from __future__ import annotations

import re
from pathlib import Path

from bench.common import RESULTS_DIR

README = Path(__file__).resolve().parent.parent / "README.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin (generated from bench/results/{name}.md by `make bench`) -->", \
        f"<!-- bench:{name}:end -->"


def block(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The README block of one benchmark: its results Markdown, title dropped, headings demoted."""
    lines = (results_dir / f"{name}.md").read_text(encoding="utf-8").strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join("##" + line if re.match(r"^#{1,3} ", line) else line for line in lines).strip()
    begin, end = markers(name)
    return f"{begin}\n{body}\n{end}"


def names_in(text: str) -> list[str]:
    return re.findall(r"<!-- bench:([a-z_]+):begin", text)


def render(text: str, names: list[str] | None = None, results_dir: Path = RESULTS_DIR) -> str:
    """`text` with the blocks of `names` (default: every block it has) replaced from the results files."""
    for name in names or names_in(text):
        begin, end = markers(name)
        pattern = re.compile(re.escape(begin.split(" (")[0]) + r".*?" + re.escape(end), re.S)
        if (results_dir / f"{name}.md").exists() and pattern.search(text):
            text = pattern.sub(lambda _: block(name, results_dir), text, count=1)
    return text


def update(names: list[str] | None = None, readme: Path = README) -> None:
    readme.write_text(render(readme.read_text(encoding="utf-8"), names), encoding="utf-8")


if __name__ == "__main__":
    update()
