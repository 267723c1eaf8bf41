"""Reading Prometheus figures in tests: from a /metrics page (another process) or the default registry."""
from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def page_metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`, on a Prometheus text page (0 if none)."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def registry_metric(name: str, **labels: str) -> float:
    """One sample of this process's default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
