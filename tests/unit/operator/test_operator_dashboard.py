"""The Grafana dashboard (charts/cachedmodel-operator/dashboards/cachedmodel.json): every query reads only
series the project exports (names read from the library's collectors), and it covers what issue 12 asks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.promql_names import TARGET_LABELS, exported_series, used_series

DASHBOARD = Path(__file__).resolve().parents[3] / "charts/cachedmodel-operator/dashboards/cachedmodel.json"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(board: dict) -> list[tuple[str, str]]:
    found = [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            inner = query[len("label_values("):-1].rsplit(",", 1)[0]  # label_values(<selector>, <label>)
            found.append((f"variable {variable['name']}", inner))
    return found


def test_the_exported_names_are_read_from_the_library():
    names, labels = exported_series()
    assert {"cachedmodel_cache_requests_total", "cachedmodel_cache_hits_total", "cachedmodel_redis_used_memory_bytes",
            "cachedmodel_redis_evicted_keys_total", "http_request_duration_seconds_bucket"} <= names
    assert "cachedmodel_cache_requests" not in names  # a counter is exposed with _total
    assert {"model", "tier", "reason", "kind", "route", "status"} <= labels


def test_every_query_reads_only_exported_series_and_labels():
    names, labels = exported_series()
    problems = []
    for title, expr in queries(dashboard()):
        used, used_labels = used_series(expr)
        assert used, f"{title}: no series found in {expr!r}"
        problems += [f"{title}: series {name}" for name in sorted(used - names)]
        problems += [f"{title}: label {name}" for name in sorted(used_labels - labels - TARGET_LABELS)]
    assert not problems, "the dashboard reads what nobody exports:\n" + "\n".join(problems)


@pytest.mark.parametrize("expr, series", [
    ('sum by (tier) (rate(cachedmodel_cache_hits_total{model=~"$model"}[$__rate_interval]))',
     {"cachedmodel_cache_hits_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) / on (pod) y offset 1h", {"x_bucket", "y"}),
    ('time() - max(cachedmodel_redis_sampled_timestamp_seconds{route=~".*/prediction"}) > 1e3', 
     {"cachedmodel_redis_sampled_timestamp_seconds"}),
])
def test_the_series_finder_itself(expr, series):
    assert used_series(expr)[0] == series


def test_the_series_check_would_catch_a_series_nobody_exports():
    names, _ = exported_series()
    used, _ = used_series("sum(rate(cachedmodel_model_latency_seconds_sum[5m]))")
    assert used - names == {"cachedmodel_model_latency_seconds_sum"}


def test_the_panels_cover_the_issue_and_fit_the_grid():
    board = dashboard()
    titles = " / ".join(panel["title"].lower() for panel in board["panels"])
    for topic in ("hit ratio", "latency by tier", "model calls saved", "model time saved", "redis memory vs maxmemory",
                  "evictions",
                  "circuit breaker", "errors by kind"):
        assert topic in titles, topic
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
    assert board["uid"] and all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])


def test_the_panel_picture_renders_from_the_json(tmp_path):
    """scripts/render_dashboard.py (docs/dashboard.png's documented command) draws every panel's title."""
    pytest.importorskip("matplotlib")
    from scripts import render_dashboard

    board = dashboard()
    out = render_dashboard.render(board, tmp_path / "board.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    assert (DASHBOARD.parents[3] / "docs" / "dashboard.png").is_file(), "the committed picture is missing"
