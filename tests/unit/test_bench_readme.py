"""The published benchmark figures are the committed results files, copied by `make bench`."""
from bench import readme


def test_benchmarks_doc_has_a_block_for_every_benchmark():
    names = readme.names_in(readme.BENCHMARKS_DOC.read_text(encoding="utf-8"))
    assert names == ["decorator", "service", "faults", "topologies", "batches", "operator", "pods"]


def test_benchmarks_doc_blocks_equal_the_results_files():
    text = readme.BENCHMARKS_DOC.read_text(encoding="utf-8")
    assert readme.render(text) == text, "docs/benchmarks.md blocks are stale: run `.venv/bin/python -m bench.readme`"


def test_readme_summary_equals_the_results_files():
    text = readme.README.read_text(encoding="utf-8")
    assert readme.names_in(text) == ["summary"]
    assert readme.render(text) == text, "README benchmark summary is stale: run `.venv/bin/python -m bench.readme`"


def test_block_drops_the_title_and_demotes_headings(tmp_path):
    (tmp_path / "x.md").write_text("# x\n\n## Part\n\n| a |\n|---|\n| 1 |\n", encoding="utf-8")
    begin, end = readme.markers("x")
    assert readme.block("x", tmp_path) == f"{begin}\n#### Part\n\n| a |\n|---|\n| 1 |\n{end}"
    stale = f"before\n{begin}\nold\n{end}\nafter"
    assert readme.render(stale, results_dir=tmp_path) == f"before\n{readme.block('x', tmp_path)}\nafter"
