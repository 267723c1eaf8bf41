"""Leader election on a coordination.k8s.io/v1 Lease, so that several operator replicas run one at a time.

kopf handles each resource in one process (two would race), so of `replicaCount` operator pods only the
holder of the Lease runs the handlers; the others wait, ready to take over. It is client-go's scheme:
the holder renews the Lease every `retry` seconds; a Lease not renewed for `duration` seconds is free; a
write that lost the race (409: the resourceVersion moved) loses. A holder that cannot renew for `renew`
seconds (< duration) stops its handlers before anyone may take over, so two never act at once. On a
clean stop (SIGTERM: a deleted pod, a rollout) the holder releases the Lease and a standby takes over at
its next try instead of after `duration`.

`decide` is pure; `LeaseElector` does the I/O through the operator's Kube.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


@dataclass(frozen=True)
class Timing:
    duration: float = 15.0  # a Lease not renewed for this long is free
    renew: float = 10.0  # the holder gives up (stops its handlers) after failing to renew for this long
    retry: float = 2.0  # how often the holder renews and a standby tries


def _micro_time(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def decide(lease: dict | None, me: str, now: float) -> str:
    """What `me` may do with the Lease as read at `now`: "create" (none yet), "take" (free: released or
    not renewed within its duration), "renew" (ours), or "wait" (another holder's, still valid). Pure."""
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == me:
        return "renew"
    renewed = _seconds(spec.get("renewTime")) or _seconds(spec.get("acquireTime")) or 0.0
    if not holder or now - renewed >= float(spec.get("leaseDurationSeconds") or 0):
        return "take"
    return "wait"


def lease_body(name: str, namespace: str, me: str, now: float, duration: float, old: dict | None,
               release: bool = False) -> dict:
    """The Lease `me` writes: a new one, a take-over (acquireTime, transitions + 1) or a renewal; `release`
    empties the holder so that a standby takes over at once. Pure."""
    spec = dict((old or {}).get("spec") or {})
    taking = spec.get("holderIdentity") != me
    spec.update(holderIdentity="" if release else me, leaseDurationSeconds=max(1, int(round(duration))),
                renewTime=_micro_time(now))
    if taking and not release:
        spec["acquireTime"] = _micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if old else 0)
    metadata = {"name": name, "namespace": namespace}
    if old:
        metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class LeaseElector:
    """Acquire, hold and release one Lease. `lost` is set when the Lease can no longer be held."""

    def __init__(self, kube, name: str, namespace: str, identity: str, timing: Timing = Timing(),
                 clock=time.time):
        self.kube, self.name, self.namespace, self.identity = kube, name, namespace, identity
        self.timing, self.clock = timing, clock
        self.lost = threading.Event()
        self._held_at: float | None = None  # last successful write as holder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _path(self, name: str | None = None) -> str:
        return LEASE_PATH.format(namespace=self.namespace) + (f"/{name}" if name else "")

    def _read(self) -> dict | None:
        try:
            return self.kube._call("GET", self._path(self.name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def try_once(self) -> bool:
        """One attempt to acquire or renew; True when we hold the Lease now."""
        lease = self._read()
        now = self.clock()
        action = decide(lease, self.identity, now)
        if action == "wait":
            return False
        body = lease_body(self.name, self.namespace, self.identity, now, self.timing.duration, lease)
        try:
            if action == "create":
                self.kube._call("POST", self._path(), body=body)
            else:
                self.kube._call("PUT", self._path(self.name), body=body)
        except ApiException as error:
            if error.status in (409, 422):  # another replica wrote first (or created it meanwhile)
                return False
            raise
        if action != "renew":
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or "nobody"
            log.info("leader election: %s acquired Lease %s/%s (previous holder: %s)", self.identity,
                     self.namespace, self.name, holder)
        self._held_at = now
        return True

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until we hold the Lease (True) or `stop` is set (False)."""
        stop = stop or threading.Event()
        waiting_logged = False
        while not stop.is_set():
            try:
                if self.try_once():
                    return True
            except Exception as error:  # noqa: BLE001 - the API server is away: keep trying
                log.warning("leader election: %s could not read or write Lease %s/%s: %s", self.identity,
                            self.namespace, self.name, error)
            if not waiting_logged:
                log.info("leader election: %s is a standby; waiting for Lease %s/%s", self.identity, self.namespace,
                         self.name)
                waiting_logged = True
            stop.wait(self.timing.retry)
        return False

    def hold(self) -> None:
        """Renew in a background thread; set `lost` when a renewal has not succeeded for `renew` seconds."""
        def loop() -> None:
            while not self._stop.wait(self.timing.retry):
                try:
                    if self.try_once():
                        continue
                except Exception as error:  # noqa: BLE001
                    log.warning("leader election: renewing Lease %s/%s failed: %s", self.namespace, self.name, error)
                if self._held_at is None or self.clock() - self._held_at >= self.timing.renew:
                    log.error("leader election: %s lost Lease %s/%s: stopping", self.identity, self.namespace,
                              self.name)
                    self.lost.set()
                    return
        self._thread = threading.Thread(target=loop, name="lease-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and hand the Lease back (best effort) so that a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timing.retry + 5)
        if self.lost.is_set():
            return
        try:
            lease = self._read()
            if decide(lease, self.identity, self.clock()) == "renew":
                body = lease_body(self.name, self.namespace, self.identity, self.clock(), self.timing.duration,
                                  lease, release=True)
                self.kube._call("PUT", self._path(self.name), body=body)
                log.info("leader election: %s released Lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as error:  # noqa: BLE001 - the Lease then expires after its duration
            log.warning("leader election: releasing Lease %s/%s failed: %s", self.namespace, self.name, error)


def _standby_health(liveness: str | None):
    """While waiting as a standby, answer the liveness endpoint's path with 200 (kopf serves it once this
    replica leads), so that the kubelet does not restart a healthy standby. Returns the server or None."""
    import http.server
    from urllib.parse import urlsplit

    if not liveness:
        return None
    parts = urlsplit(liveness)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            self.send_response(200 if self.path.split("?")[0] == (parts.path or "/") else 404)
            self.end_headers()

        def log_message(self, *args):  # probes every few seconds: not worth a log line
            pass

    server = http.server.ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), Health)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


def elect(config, liveness: str | None) -> LeaseElector | None:
    """Wait (as a healthy standby) until this process holds the Lease of `config`, then keep renewing it
    (its `lost` is set when it can no longer). None when SIGTERM/SIGINT came while waiting."""
    import os
    import signal
    import socket
    import uuid

    from cachedmodel_operator.kube import Kube, load_api_client

    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    duration = config.lease_seconds
    elector = LeaseElector(Kube(load_api_client()), config.lease_name, config.lease_namespace, identity,
                           Timing(duration=duration, renew=duration * 2 / 3, retry=duration / 7.5))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = _standby_health(liveness)
    try:
        if not elector.acquire(stop):
            return None
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    elector.hold()
    return elector


async def operate_while_leading(elector: LeaseElector, operator, **options) -> None:
    """Run kopf's `operator` coroutine until it stops (SIGTERM) or the Lease is lost. The loss is watched by
    a daemon thread that sets an asyncio stop flag: a threading.Event given to kopf as its stop_flag would
    be waited on in the loop's executor, whose thread then keeps the process from exiting."""
    import asyncio

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if elector.lost.wait(0.5):
                loop.call_soon_threadsafe(stop.set)
                return

    threading.Thread(target=watch, name="lease-watch", daemon=True).start()
    try:
        await operator(stop_flag=stop, **options)
    finally:
        finished.set()
