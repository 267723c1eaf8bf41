"""`python -m cachedmodel.service.probe [ready|startup|health]`: exit 0 when the local service's probe
answers 200 — the image's HEALTHCHECK (Kubernetes uses the HTTP probes directly)."""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PATHS = {"ready": "/api/health/ready", "startup": "/api/health/startup", "health": "/api/health"}


def probe_url(kind: str, port: str) -> str:
    return f"http://127.0.0.1:{port}{PATHS[kind]}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "ready"
    if kind not in PATHS:
        print(f"probe: unknown probe {kind!r}; use one of {', '.join(PATHS)}", file=sys.stderr)
        return 2
    url = probe_url(kind, os.environ.get("PORT") or "8000")
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"probe: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
