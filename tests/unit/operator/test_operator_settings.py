"""The operator's CACHEDMODEL_* settings (issue 19, item 6): a value that is not a number, or out of range,
stops `cachedmodel-operator run` with exit 2 and one line naming the variable, before kopf starts; never a
traceback at import."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cachedmodel_operator import settings
from cachedmodel_operator.scraper import Scraper

VARIABLES = ("CACHEDMODEL_RESYNC_SECONDS", "CACHEDMODEL_SCRAPE_SECONDS", "CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS",
             "CACHEDMODEL_SCRAPE_CONCURRENCY", "CACHEDMODEL_METRICS_URL")


def clean_env(**values: str) -> dict:
    """This environment without any CACHEDMODEL_* setting or cluster, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDMODEL_")}
    return {**env, "KUBECONFIG": "/nonexistent/kubeconfig", **values}


def run_operator(**values: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cachedmodel_operator.cli", "run", "--liveness", ""],
                          env=clean_env(**values), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name, value", [
    ("CACHEDMODEL_RESYNC_SECONDS", "thirty"), ("CACHEDMODEL_RESYNC_SECONDS", "-5"), ("CACHEDMODEL_RESYNC_SECONDS", "0"),
    ("CACHEDMODEL_RESYNC_SECONDS", "nan"), ("CACHEDMODEL_RESYNC_SECONDS", "inf"), ("CACHEDMODEL_RESYNC_SECONDS", "30s"),
    ("CACHEDMODEL_SCRAPE_SECONDS", "often"), ("CACHEDMODEL_SCRAPE_SECONDS", "-1"), ("CACHEDMODEL_SCRAPE_SECONDS", "NaN"),
    ("CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS", "0"), ("CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS", "1e400"),
    ("CACHEDMODEL_SCRAPE_CONCURRENCY", "2.5"), ("CACHEDMODEL_SCRAPE_CONCURRENCY", "0"),
    ("CACHEDMODEL_SCRAPE_CONCURRENCY", "many"),
    ("CACHEDMODEL_METRICS_URL", "http://{addr}/metrics"), ("CACHEDMODEL_METRICS_URL", "ftp://{address}/metrics"),
])
def test_a_bad_setting_stops_the_operator_with_one_line_naming_it(name, value):
    result = run_operator(**{name: value})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: {name} must be ") and repr(value) in result.stderr, result.stderr


def test_importing_the_controller_with_a_bad_setting_is_no_traceback():
    result = subprocess.run([sys.executable, "-c", "import cachedmodel_operator.controller as c; print(c.RESYNC_SECONDS)"],
                            env=clean_env(CACHEDMODEL_RESYNC_SECONDS="soon"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.strip() == str(settings.DEFAULT_RESYNC_SECONDS)


def test_defaults_and_good_values():
    assert settings.from_env({}) == settings.Settings()
    assert settings.from_env({name: "" for name in VARIABLES}) == settings.Settings()  # empty: the default
    parsed = settings.from_env({"CACHEDMODEL_RESYNC_SECONDS": " 1.5 ", "CACHEDMODEL_SCRAPE_SECONDS": "0",
                                "CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS": "1e1", "CACHEDMODEL_SCRAPE_CONCURRENCY": "3",
                                "CACHEDMODEL_METRICS_URL": "https://proxy/{namespace}/{pod}:{port}/metrics"})
    assert parsed == settings.Settings(1.5, 0.0, 10.0, 3, "https://proxy/{namespace}/{pod}:{port}/metrics")
    scraper = Scraper.from_env({"CACHEDMODEL_SCRAPE_SECONDS": "0"})
    assert not scraper.enabled and scraper.timeout == 2 and scraper.concurrency == 8


def test_the_scraper_names_a_bad_variable_too():
    with pytest.raises(settings.SettingsError, match="CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS must be a number of seconds"):
        Scraper.from_env({"CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS": "-.5"})


def test_every_cachedmodel_variable_the_operator_reads_goes_through_settings():
    """A CACHEDMODEL_* read straight from the environment elsewhere would escape these checks: there is none."""
    import re
    from pathlib import Path

    import cachedmodel_operator
    package = Path(cachedmodel_operator.__file__).parent
    direct = re.compile(r"""(?:environ|env|getenv)(?:\.get)?[\[(]\s*["']CACHEDMODEL_""")
    readers = [str(path.relative_to(package)) for path in package.rglob("*.py")
               if "testing" not in path.parts and path.name != "settings.py" and direct.search(path.read_text())]
    assert readers == [], readers
    assert direct.search('os.environ.get("CACHEDMODEL_RESYNC_SECONDS", "30")')  # the read this replaced
