"""Reading the model pods' /metrics for status.cache: the operator's only traffic to pods.

Bounded on every side: one round per CachedModel every CACHEDMODEL_SCRAPE_SECONDS (default 30; 0 turns it
off), each request given CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS (default 2) and at most MAX_PAGE_BYTES, and at
most CACHEDMODEL_SCRAPE_CONCURRENCY (default 8) requests in flight for the whole operator. A refused, slow or
unparsable page becomes an entry of status.cache.scrapeErrors; nothing here can fail a reconcile (it runs
beside the reconciles, in its own task). Needs no privilege beyond the pod list the operator already has,
and network reach from the operator pod to the model pods' port (a default-deny NetworkPolicy must allow it).

CACHEDMODEL_METRICS_URL is the URL template, default `http://{address}/metrics` (address = pod IP:port); its
other fields are {namespace}, {pod} and {port}: a cluster that only lets the operator through a proxy can
point it there (the k8s tests point it at a local page, their kwok pods having no real address).
"""
from __future__ import annotations

import asyncio
import logging
import os

import aiohttp

from cachedmodel_operator import settings
from cachedmodel_operator.cache_metrics import MAX_PAGE_BYTES, ParseError, PodSample, parse_page

log = logging.getLogger(__name__)

DEFAULT_URL = settings.DEFAULT_METRICS_URL


def settings_from_env(env: dict | None = None) -> dict:
    """Scraper keyword arguments from CACHEDMODEL_SCRAPE_* and CACHEDMODEL_METRICS_URL (settings.SettingsError
    names a bad one)."""
    return settings.from_env(os.environ if env is None else env).scraper()


def describe(error: BaseException, timeout: float) -> str:
    """A short, stable message for status (no addresses of the operator's own side)."""
    if isinstance(error, asyncio.TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error.os_error.strerror or error.os_error}" if error.os_error else "cannot connect"
    return f"{type(error).__name__}: {error}"


class Scraper:
    def __init__(self, interval: float = 30, timeout: float = 2, concurrency: int = 8, url: str = DEFAULT_URL):
        self.interval, self.timeout, self.concurrency, self.url = interval, timeout, max(1, concurrency), url
        self._semaphore: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Scraper":
        return cls(**settings_from_env(env))

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def _client(self) -> tuple[asyncio.Semaphore, aiohttp.ClientSession]:
        if self._session is None or self._session.closed:
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.concurrency, force_close=True),
                headers={"Accept": "text/plain;version=0.0.4", "User-Agent": "cachedmodel-operator"})
        return self._semaphore, self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> str:
        """One page; the timeout counts from the request, not from the wait for a free slot."""
        semaphore, _ = self._client()
        async with semaphore:
            return await asyncio.wait_for(self._get(url), self.timeout)

    async def _get(self, url: str) -> str:
        _, session = self._client()
        async with session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise ScrapeError(f"HTTP {response.status} from /metrics")
            body = await response.content.read(MAX_PAGE_BYTES + 1)
            if len(body) > MAX_PAGE_BYTES:
                raise ScrapeError(f"/metrics page larger than {MAX_PAGE_BYTES} bytes: not read")
            return body.decode("utf-8", errors="replace")


    async def scrape(self, namespace: str, targets: list[tuple[str, str, str]], port: int
                     ) -> tuple[dict[str, PodSample], list[tuple[str, str]]]:
        """(pod uid -> sample, [(pod name, error)]) for (uid, name, address) targets, concurrently."""
        async def one(uid: str, name: str, address: str):
            url = self.url.format(address=address, namespace=namespace, pod=name, port=port)
            try:
                return uid, name, parse_page(await self.fetch(url)), None
            except asyncio.CancelledError:
                raise
            except (ScrapeError, ParseError) as error:
                return uid, name, None, str(error)
            except Exception as error:  # connection refused, reset, timeout, DNS ...: reported, never raised
                return uid, name, None, describe(error, self.timeout)

        samples, errors = {}, []
        for uid, name, sample, error in await asyncio.gather(*(one(*target) for target in targets)):
            if sample is not None:
                samples[uid] = sample
            else:
                errors.append((name, error))
        return samples, errors


class ScrapeError(Exception):
    """The pod answered, but not with a page we read."""
