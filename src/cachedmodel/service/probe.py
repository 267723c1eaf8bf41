"""The image's HEALTHCHECK: exit 0 when the local service's probe answers 200, 1 otherwise
(Kubernetes uses the HTTP probes directly; this is for `docker run` and compose).

    probe.py [ready|startup|health]      (default ready; port from $PORT, default 8000)

It runs every 10 seconds, so it must cost next to nothing: it imports only `os`, `sys` and `socket`
(no urllib: that loads ssl and email) and is run as a file, never as `cachedmodel.service.probe`,
because importing the package would first import cachedmodel and cachedmodel.service (redis,
pydantic, FastAPI, rest-model-service: ~0.5 s CPU and ~55 MB each time). HEALTHCHECK_COMMAND is the
exact Dockerfile command: it finds this file with importlib.util.find_spec('cachedmodel'), which
locates the package without importing it, and runs it with runpy; -I keeps the working directory and
PYTHON* variables out, -B writes no bytecode (what PYTHONDONTWRITEBYTECODE does for the service).
"""
import os
import socket
import sys

PATHS = {"ready": "/api/health/ready", "startup": "/api/health/startup", "health": "/api/health"}
TIMEOUT_SECONDS = 3.0

HEALTHCHECK_COMMAND = [
    "python", "-I", "-B", "-c",
    "import importlib.util as u, runpy; runpy.run_path(u.find_spec('cachedmodel').submodule_search_locations[0]"
    " + '/service/probe.py', run_name='__main__')",
    "ready"]


def probe_url(kind: str, port: str) -> str:
    return f"http://127.0.0.1:{port}{PATHS[kind]}"


def status_of(port: int, path: str, timeout: float = TIMEOUT_SECONDS) -> int:
    """GET path on 127.0.0.1:port over HTTP/1.0 and return the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii"))
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP response: {head[:80]!r}")
    return int(parts[1])


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "ready"
    if kind not in PATHS:
        print(f"probe: unknown probe {kind!r}; use one of {', '.join(PATHS)}", file=sys.stderr)
        return 2
    port_text = os.environ.get("PORT") or "8000"
    url = probe_url(kind, port_text)
    try:
        status = status_of(int(port_text), PATHS[kind])
    except (OSError, ValueError) as error:
        print(f"probe: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"probe: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
