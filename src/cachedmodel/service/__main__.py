"""`python -m cachedmodel.service`: the container's command. Serves cachedmodel.service.app:app with uvicorn.

Environment (the container contract):
  PORT (8000), HOST (0.0.0.0), REST_CONFIG (the service YAML), REDIS_URL / REDIS_PASSWORD (read by
  the example config), LOG_LEVEL (info), ACCESS_LOG (off; "1"/"true" to log every request).
One worker per process: scale with replicas. Writes nothing to disk.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping

APP = "cachedmodel.service.app:app"
TRUE = ("1", "true", "yes", "on")


class SettingsError(ValueError):
    """A bad environment variable; the message names it."""


def server_options(environ: Mapping[str, str]) -> dict:
    """Pure: environment -> uvicorn.run keyword arguments."""
    port_text = environ.get("PORT", "8000") or "8000"
    try:
        port = int(port_text)
    except ValueError:
        raise SettingsError(f"PORT must be a TCP port number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise SettingsError(f"PORT must be between 1 and 65535, got {port}")
    level = (environ.get("LOG_LEVEL") or "info").lower()
    if level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise SettingsError(f"LOG_LEVEL must be one of critical, error, warning, info, debug, trace; got {level!r}")
    return {"host": environ.get("HOST") or "0.0.0.0", "port": port, "workers": 1, "log_level": level,
            "access_log": (environ.get("ACCESS_LOG") or "").lower() in TRUE, "timeout_graceful_shutdown": 10,
            "server_header": False}


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        options = server_options(environ)
    except SettingsError as error:
        print(f"cachedmodel.service: {error}", file=sys.stderr)
        return 2
    from cachedmodel.service.config import ConfigurationFileError, load_configuration
    try:
        load_configuration()  # fail with one clear line, before uvicorn prints an import traceback
    except ConfigurationFileError as error:
        print(f"cachedmodel.service: {error}", file=sys.stderr)
        return 2
    import uvicorn
    uvicorn.run(APP, **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
