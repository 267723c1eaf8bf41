"""The operator's settings from its environment (the chart's ConfigMap), checked before anything starts.

Every CACHEDMODEL_* variable the operator reads is parsed here, once, into numbers within range. A value
that is not (a word, a negative time, nan, inf ...) is a SettingsError naming the variable: `cachedmodel-operator
run` prints it as one line and exits 2 before kopf starts, never a traceback at import or a handler
failing on every event. An unset or empty variable takes its default.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Mapping

DEFAULT_RESYNC_SECONDS = 30.0
DEFAULT_METRICS_URL = "http://{address}/metrics"
MAX_SECONDS = 365 * 24 * 3600.0  # a year: any interval or timeout beyond it is a mistake
MAX_CONCURRENCY = 1000
DEFAULT_LEASE_SECONDS = 15.0
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SettingsError(ValueError):
    """A CACHEDMODEL_* variable the operator cannot use; the message names it."""


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None or not value.strip() else value.strip()


def seconds(env: Mapping[str, str], name: str, default: float, zero_allowed: bool = False) -> float:
    """A finite number of seconds above 0 (or 0 when `zero_allowed`: "off"), at most a year."""
    text = _text(env, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    lowest = "0" if zero_allowed else "above 0"
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed) or value > MAX_SECONDS:
        raise SettingsError(f"{name} must be a number of seconds, {lowest} and at most {MAX_SECONDS:.0f}"
                            f"{' (0 = off)' if zero_allowed else ''}, got {text[:60]!r}")
    return value


def count(env: Mapping[str, str], name: str, default: int, highest: int) -> int:
    """A whole number from 1 to `highest`."""
    text = _text(env, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= highest:
        raise SettingsError(f"{name} must be a whole number from 1 to {highest}, got {text[:60]!r}")
    return value


def metrics_url(env: Mapping[str, str], name: str = "CACHEDMODEL_METRICS_URL") -> str:
    """The scrape URL template: http(s), with only the fields {address}, {namespace}, {pod} and {port}."""
    text = _text(env, name)
    if text is None:
        return DEFAULT_METRICS_URL
    try:
        example = text.format(address="10.0.0.1:8000", namespace="ns", pod="pod", port=8000)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        raise SettingsError(f"{name} must be a URL template with only the fields {{address}}, {{namespace}}, {{pod}} "
                            f"and {{port}}, got {text[:100]!r} ({type(error).__name__}: {error})") from None
    if not example.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// URL template, got {text[:100]!r}")
    return text


@dataclass(frozen=True)
class Settings:
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    scrape_seconds: float = 30.0
    scrape_timeout_seconds: float = 2.0
    scrape_concurrency: int = 8
    metrics_url: str = DEFAULT_METRICS_URL
    lease_name: str | None = None  # leader election on this Lease (several operator replicas); None = off
    lease_namespace: str | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def scraper(self) -> dict:
        """Keyword arguments of scraper.Scraper."""
        return {"interval": self.scrape_seconds, "timeout": self.scrape_timeout_seconds,
                "concurrency": self.scrape_concurrency, "url": self.metrics_url}


def lease(env: Mapping[str, str]) -> tuple[str | None, str | None, float]:
    """(Lease name, its namespace, duration) of leader election: CACHEDMODEL_LEADER_ELECTION names the Lease
    (unset = no election), in CACHEDMODEL_LEASE_NAMESPACE (the chart sets the release's), else POD_NAMESPACE."""
    name = _text(env, "CACHEDMODEL_LEADER_ELECTION")
    namespace = _text(env, "CACHEDMODEL_LEASE_NAMESPACE") or _text(env, "POD_NAMESPACE")
    duration = seconds(env, "CACHEDMODEL_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)
    if name is None:
        return None, None, duration
    for variable, value in (("CACHEDMODEL_LEADER_ELECTION", name), ("POD_NAMESPACE", namespace)):
        if value is None or len(value) > 253 or not _DNS_LABEL.match(value):
            raise SettingsError(f"{variable} must be a Kubernetes object name (lower case letters, digits, '-' and "
                                f"'.'){' (or CACHEDMODEL_LEASE_NAMESPACE) when CACHEDMODEL_LEADER_ELECTION is set' if variable == 'POD_NAMESPACE' else ''}"
                                f", got {(value or '')[:60]!r}")
    if duration < 3:
        raise SettingsError(f"CACHEDMODEL_LEASE_SECONDS must be at least 3 (the holder renews every duration/7.5 "
                            f"seconds), got {duration:g}")
    return name, namespace, duration


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Every CACHEDMODEL_* setting of the operator; raises SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    return Settings(resync_seconds=seconds(env, "CACHEDMODEL_RESYNC_SECONDS", DEFAULT_RESYNC_SECONDS),
                    scrape_seconds=seconds(env, "CACHEDMODEL_SCRAPE_SECONDS", 30.0, zero_allowed=True),
                    scrape_timeout_seconds=seconds(env, "CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS", 2.0),
                    scrape_concurrency=count(env, "CACHEDMODEL_SCRAPE_CONCURRENCY", 8, MAX_CONCURRENCY),
                    metrics_url=metrics_url(env), **dict(zip(("lease_name", "lease_namespace", "lease_seconds"),
                                                             lease(env))))
