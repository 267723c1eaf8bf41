"""Draw the Grafana dashboard's panel layout (charts/cachedmodel-operator/dashboards/cachedmodel.json) as a
picture, without Grafana: each panel at its grid position with its title, kind, unit and the series it
plots (their legends and the PromQL). No data: it shows what the dashboard has, not a live reading.

    .venv/bin/python scripts/render_dashboard.py            # writes docs/dashboard.png
    .venv/bin/python scripts/render_dashboard.py -o x.png

matplotlib (the dev environment has it) with the Agg backend: no display needed.
"""
from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts/cachedmodel-operator/dashboards/cachedmodel.json"
OUTPUT = ROOT / "docs/dashboard.png"
COLUMNS = 24  # Grafana's grid width
ROW_INCHES, COLUMN_INCHES = 0.42, 0.62
KIND_COLOURS = {"stat": "#eaf3ea", "timeseries": "#eaf0f8"}


def short_query(expr: str, width: int) -> str:
    expr = " ".join(expr.split())
    for noise in ('{namespace=~"$namespace", model=~"$model"}', '{namespace=~"$namespace", route=~".*/prediction"}',
                  '{namespace=~"$namespace"}', "[$__rate_interval]", "[$__range]"):
        expr = expr.replace(noise, "")
    return textwrap.shorten(expr, width, placeholder=" …")


def render(dashboard: dict, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(COLUMNS * COLUMN_INCHES, rows * ROW_INCHES + 1.2), dpi=110)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, COLUMNS)
    axes.set_ylim(rows + 2.2, 0)
    axes.axis("off")
    variables = ", ".join(f"${v['name']}" for v in dashboard["templating"]["list"])
    axes.text(0.25, 0.8, dashboard["title"], fontsize=17, fontweight="bold", va="center")
    axes.text(0.25, 1.7, f"variables: {variables} · refresh {dashboard.get('refresh', '')} · panel layout "
              f"rendered from {DASHBOARD.relative_to(ROOT)} (no data)", fontsize=9, color="#555", va="center")
    top = 2.2
    for panel in panels:
        grid = panel["gridPos"]
        x, y, w, h = grid["x"] + 0.12, grid["y"] + top + 0.12, grid["w"] - 0.24, grid["h"] - 0.24
        axes.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.2",
                                      facecolor=KIND_COLOURS.get(panel["type"], "#f4f4f4"), edgecolor="#8a94a6"))
        unit = (panel.get("fieldConfig", {}).get("defaults", {}) or {}).get("unit", "")
        axes.text(x + 0.25, y + 0.55, panel["title"], fontsize=10.5, fontweight="bold", va="center")
        axes.text(x + w - 0.25, y + h - 0.4, f"{panel['type']} · {unit}", fontsize=8, color="#666", va="center",
                  ha="right")
        width = int(w * 9)
        lines = []
        for target in panel["targets"]:
            legend = target.get("legendFormat", "")
            lines.append((f"▪ {legend}", "#1f3b73", 8.5))
            if h >= 6:
                lines.append((f"   {short_query(target['expr'], width)}", "#444", 7.2))
        room = int((h - 1.2) / 0.48)
        for index, (text, colour, size) in enumerate(lines[:room]):
            axes.text(x + 0.3, y + 1.25 + index * 0.48, textwrap.shorten(text, width + 4, placeholder=" …"),
                      fontsize=size, color=colour, va="center", family="monospace" if text.startswith("   ") else None)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    print(render(json.loads(args.dashboard.read_text()), args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
