"""Series and label names: what the project exports (read from the library's own collectors) and what a
PromQL expression uses (the dashboard's panels, the chart's alert rules)."""
from __future__ import annotations

import re

# labels Prometheus itself attaches to every scraped series (the Prometheus Operator's ServiceMonitor and
# PodMonitor add namespace, pod, service, container, endpoint), and the histogram bucket label
TARGET_LABELS = {"namespace", "pod", "service", "container", "endpoint", "job", "instance", "le"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
            "unless", "inf", "nan"}
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def exported_series() -> tuple[set[str], set[str]]:
    """(sample names, label names) the model service exports: the cache collectors, the Redis INFO
    collector and the HTTP middleware's, as prometheus_client writes them (counters get _total, histograms
    _bucket/_sum/_count). Read from the collectors in the default registry, never from a list kept here."""
    import cachedmodel.metrics  # noqa: F401 - registers the cache collectors
    import cachedmodel.redis_info  # noqa: F401 - registers the Redis INFO collector
    import cachedmodel.service.http_metrics  # noqa: F401 - registers the HTTP collectors
    import cachedmodel.service.warnings_log  # noqa: F401 - registers cachedmodel_warnings_total
    from prometheus_client import REGISTRY

    names, labels = set(), set()
    collectors = list(REGISTRY._collector_to_names)  # every registered collector, labelled ones included
    for collector in collectors:
        describe = getattr(collector, "describe", None)
        families = list(describe()) if describe else []
        if not families:
            families = list(collector.collect())
        for family in families:
            if not (family.name.startswith(("cachedmodel_", "http_"))):
                continue
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                        "summary": ["_sum", "_count", ""]}.get(family.type, [""])
            names |= {family.name + suffix for suffix in suffixes}
            # a Counter/Histogram knows its label names; a custom collector's families (Redis INFO) carry them
            labels |= set(getattr(collector, "_labelnames", ()) or getattr(family, "_labelnames", ()) or ())
    return names, labels


def _strip(expr: str) -> tuple[str, set[str]]:
    """The expression without strings, label matchers, ranges and grouping clauses; plus the label names
    those named."""
    labels: set[str] = set()
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    for inside in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", inside))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in clause.split(",") if name.strip()}
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    return expr, labels


def used_series(expr: str) -> tuple[set[str], set[str]]:
    """(series names, label names) one PromQL expression reads (functions and keywords left out)."""
    stripped, labels = _strip(expr)
    names = set()
    for match in IDENTIFIER.finditer(stripped):
        name = match.group(0)
        after = stripped[match.end():].lstrip()
        if after.startswith("(") or name.lower() in KEYWORDS:
            continue
        before = stripped[:match.start()]
        if before.endswith("$") or re.search(r"\d$", before):  # $variables, 1e3 and the like
            continue
        names.add(name)
    return names, labels
