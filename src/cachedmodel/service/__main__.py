"""`python -m cachedmodel.service`: the container's command. Serves cachedmodel.service.app:app with uvicorn.

Environment (the container contract):
  PORT (8000), HOST (0.0.0.0), REST_CONFIG (the service YAML), REDIS_URL / REDIS_PASSWORD (read by
  the example config), LOG_LEVEL (info), ACCESS_LOG (off; "1"/"true" to log every request),
  EXIT_ON_LOAD_FAILURE (on),
  CACHEDMODEL_MAX_BODY_BYTES (1048576 = 1 MiB): larger request bodies are answered 413 Content Too
    Large, unread when Content-Length says so,
  CACHEDMODEL_BODY_TIMEOUT_SECONDS (10): a body not fully received this long after its request's
    headers is answered 408 Request Timeout, so slow senders cannot hold connections forever,
  CACHEDMODEL_HEADER_TIMEOUT_SECONDS (10): the same for the request line and headers, counted from the
    connection (or, on a keep-alive connection, from the next request's first bytes); a connection
    that sends nothing at all is closed after it too,
  CACHEDMODEL_KEY_TRACE (off): a file to append each served prediction's cache key to, one per line
    (digests only), for `cachedmodel-advise --keys`; CACHEDMODEL_KEY_TRACE_MAX_BYTES (104857600 =
    100 MiB) bounds it (tracing stops, with one warning, when full).
A bad value stops the service at once with exit code 2 and a message naming the variable.
One worker per process: scale with replicas. Writes nothing to disk (but the key trace, when asked).

When the models or decorators fail to load (say a `hashing_fields` name the model does not have), the
process exits with code 3 after the traceback is logged, so Kubernetes reports the error at once as
the container's termination message instead of after liveness-probe restarts.
EXIT_ON_LOAD_FAILURE=0 keeps rest-model-service's behaviour: stay up and answer 503.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Mapping

from cachedmodel.keytrace import KeyTraceSettingsError, key_trace_settings
from cachedmodel.service.limits import SettingsError, request_limits

APP = "cachedmodel.service.app:app"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
LOAD_FAILURE_EXIT_CODE = 3


__all__ = ["SettingsError", "main", "server_options"]


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
        limits = request_limits(environ)  # the app reads them again at import; fail here with one clear line
        key_trace_settings(environ)
    except (SettingsError, KeyTraceSettingsError) as error:
        print(f"cachedmodel.service: {error}", file=sys.stderr)
        return 2
    from cachedmodel.service.config import ConfigurationFileError, load_configuration
    try:
        load_configuration()  # fail with one clear line, before uvicorn prints an import traceback
    except ConfigurationFileError as error:
        print(f"cachedmodel.service: {error}", file=sys.stderr)
        return 2
    import uvicorn

    from cachedmodel.service import header_timeout

    class DrainingServer(uvicorn.Server):
        """On the first SIGTERM/SIGINT keep serving for drain_seconds, closing each connection after its
        answer (`connection: close`: keep-alive clients reconnect, to pods that stay), then shut down as
        uvicorn does (in-flight requests finish). A second signal stops at once."""

        def handle_exit(self, sig, frame) -> None:
            if limits.drain_seconds and not header_timeout.DRAINING and not self.should_exit:
                header_timeout.start_draining()
                threading.Timer(limits.drain_seconds, super().handle_exit, (sig, frame)).start()
                return
            super().handle_exit(sig, frame)

    server = DrainingServer(uvicorn.Config(
        APP, http=header_timeout.header_timeout_protocol(limits.header_timeout_seconds), **options))
    failed = threading.Event()
    if (environ.get("EXIT_ON_LOAD_FAILURE") or "1").lower() not in FALSE:
        threading.Thread(target=_stop_if_loading_fails, args=(server, failed), daemon=True).start()
    server.run()
    if failed.is_set():
        print(f"cachedmodel.service: the models failed to load (traceback above); exiting with code "
              f"{LOAD_FAILURE_EXIT_CODE}", file=sys.stderr, flush=True)
        return LOAD_FAILURE_EXIT_CODE
    return 0


def _stop_if_loading_fails(server, failed: threading.Event, interval: float = 0.1) -> None:
    """Watch rest-model-service's status while its background thread builds the models; on failure ask
    uvicorn to shut down (it finishes in-flight requests) and remember why."""
    from rest_model_service.schemas import HealthStatus, StartupStatus
    from rest_model_service.status_manager import StatusManager

    while not server.should_exit:
        status = StatusManager()
        if status.get_startup_status() == StartupStatus.STARTED:
            if status.get_health_status() != HealthStatus.HEALTHY:
                failed.set()
                server.should_exit = True
            return
        time.sleep(interval)


if __name__ == "__main__":
    raise SystemExit(main())
