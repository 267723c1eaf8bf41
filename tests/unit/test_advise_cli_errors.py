"""cachedmodel-advise fails early and plainly (issue 19, item 6): an --out that is a file and a missing
redis-server are refused before any work (exit 2, one line, no traceback); a size that holds no entries is
warned about by name; the chart draws measured points as markers only, every series visible, and says
what was replayed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cachedmodel.advise import cli, report
from cachedmodel.advise.replay import Cell

ZIPF = ["--zipf", "1", "--distinct", "50", "--requests", "200", "--sizes", "2mb", "--no-progress"]


@pytest.fixture
def no_work(monkeypatch):
    """Any trace generation or replay fails the test: the error must come before them."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the argument error was reported")
    monkeypatch.setattr(cli, "load_trace", forbidden)
    monkeypatch.setattr(cli, "replay", forbidden)


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_out_that_is_a_file_exits_2_before_any_work(tmp_path, capsys, no_work, where):
    existing = tmp_path / "advice.txt"
    existing.write_text("keep me\n")
    out = existing if where == "file" else existing / "advice"
    assert cli.main(ZIPF + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"--out {out}: {existing} is a file" in err
    assert existing.read_text() == "keep me\n"


def test_an_out_that_is_a_directory_or_missing_is_fine(tmp_path):
    assert cli.out_error(tmp_path) is None
    assert cli.out_error(tmp_path / "new" / "advice") is None


def test_a_missing_redis_server_exits_2_before_the_trace_with_install_advice(tmp_path, capsys, monkeypatch, no_work):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no redis-server
    assert cli.main(ZIPF + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "redis-server not found on PATH" in err
    assert "apt-get install redis-server" in err and "brew install redis" in err and "make setup" not in err
    assert not (tmp_path / "out").exists()


def test_a_missing_redis_server_in_a_real_run_of_the_cli(tmp_path):
    """The console entry point as a pip user runs it, PATH without redis-server: exit 2, one line."""
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "cachedmodel.advise.cli", *ZIPF, "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("cachedmodel-advise: redis-server not found on PATH") and \
        result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- sizes that hold nothing
def _cell(maxmemory, keys, evicted, baseline=930_000, policy="allkeys-lru", ratio=0.0):
    return Cell(policy, maxmemory, 5, 1000, int(ratio * 1000), ratio, evicted, 0, 0, keys, baseline, baseline, 1, 0.1)


def test_a_size_at_or_below_the_empty_redis_memory_is_warned_about_by_name():
    warning = cli.baseline_warning(_cell(512 * 1024, keys=0, evicted=900))
    assert warning.startswith("maxmemory 512kb (524,288 bytes) leaves no room for entries")
    assert "930,000 bytes" in warning and "hit ratio 0" in warning
    # above the baseline but not even one entry fits: the same zero row
    assert cli.baseline_warning(_cell(940_000, keys=0, evicted=900)).startswith("maxmemory 940000 ")
    assert cli.baseline_warning(_cell(2 << 20, keys=500, evicted=400, ratio=0.5)) is None
    assert cli.baseline_warning(_cell(2 << 20, keys=0, evicted=0)) is None  # nothing was asked for


def _result(cells, warnings=()):
    return {"trace": {"source": "zipf(s=0.9, 5,000 keys, seed 0)", "requests": 20_000, "distinct_keys": 5_000,
                      "notes": []},
            "value_bytes": 150, "value_bytes_measured": False, "ttl_seconds": None, "model_latency_seconds": None,
            "compulsory_miss_bound": 0.75, "bytes_per_entry": 300.0,
            "cells": [{**c.as_dict(), "maxmemory_text": str(c.maxmemory), "exact_lru_hit_ratio": c.hit_ratio,
                       "exact_lfu_hit_ratio": c.hit_ratio} for c in cells],
            "recommendation": report.recommend(cells, 0.5), "warnings": list(warnings)}


def test_the_advice_shows_the_warning_and_explains_the_zero_row():
    cells = [_cell(512 * 1024, 0, 900), _cell(8 << 20, 5000, 0, ratio=0.75)]
    warning = cli.baseline_warning(cells[0])
    markdown = report.markdown(_result(cells, [warning]))
    assert f"**Warning:** {warning}" in markdown
    assert "a size at or below that baseline holds no entries" in markdown


def test_the_chart_draws_markers_only_keeps_every_series_visible_and_names_the_workload():
    from matplotlib import pyplot

    sizes = (512 * 1024, 2 << 20, 8 << 20)
    # both policies measure exactly the same everywhere: the second series lies on the first
    cells = [_cell(size, 100, 0, policy=policy, ratio=ratio) for policy in ("allkeys-lru", "allkeys-lfu")
             for size, ratio in zip(sizes, (0.0, 0.6, 0.75))]
    figure = report.figure(_result(cells))
    try:
        (axes,) = figure.axes
        lines = [line for line in axes.get_lines() if line.get_label() != "compulsory-miss bound"]
        assert len(lines) == 4  # two policies + exact LRU + exact LFU
        for line in lines:
            assert line.get_linestyle() == "None", f"{line.get_label()} joins measured sizes with a line"
            assert line.get_marker() not in (None, "None", "", " ")
            assert len(line.get_xdata()) == len(sizes)
        assert len({(line.get_marker(), line.get_markerfacecolor() == "none") for line in lines}) == len(lines)
        lru, lfu = (next(line for line in lines if line.get_label() == name) for name in ("allkeys-lru", "allkeys-lfu"))
        assert list(lru.get_ydata()) == list(lfu.get_ydata())
        assert all(a != b for a, b in zip(lru.get_xdata(), lfu.get_xdata())), "identical series on top of each other"
        for line in lines:  # each marker stays near its measured size (log axis: within 10 %)
            assert all(abs(x / size - 1) < 0.1 for x, size in zip(line.get_xdata(), sizes))
        legend = [text.get_text() for text in axes.get_legend().get_texts()]
        assert {"allkeys-lru", "allkeys-lfu", "exact LRU (simulated)", "exact LFU (simulated)",
                "compulsory-miss bound"} <= set(legend)
        title = axes.get_title()
        assert "20,000 requests" in title and "150-byte values" in title and "zipf(s=0.9" in title
    finally:
        pyplot.close(figure)
