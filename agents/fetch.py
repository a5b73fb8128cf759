"""Fetching URL images (the claim-check path of `forum.images.v1`) without becoming an SSRF proxy.

A forum may send `url` instead of inline bytes. Fetching an attacker-chosen URL from inside the
pipeline's network is the classic server-side request forgery: cloud metadata
(169.254.169.254), the broker, admin ports on loopback. So `ImageFetcher`:

- fetches only from allow-listed hosts (`VIGIL_IMAGE_URL_ALLOWLIST`: exact host names, or
  `.example.com` for the domain and its subdomains); an empty allow-list fetches nothing;
- only over https, plus http when `VIGIL_IMAGE_URL_ALLOW_HTTP` says so;
- resolves the host itself and refuses the request if *any* address is loopback, private,
  link-local, multicast, reserved, unspecified or otherwise not globally routable (IPv4-mapped
  IPv6 unwrapped), then connects to exactly the addresses it checked — aiohttp asks our resolver
  and no other, and the DNS cache and keep-alive are off, so a DNS answer that changes between
  check and connect (rebinding) has nothing to change;
- follows at most a few redirects, only to the same host, re-checking scheme and addresses at
  every hop;
- bounds time (connect and total) and size (Content-Length checked first, then the streamed body
  is cut at the cap), and refuses content types that are not images.

Any refusal or failure is a `FetchError` with a human reason; the agent turns it into an
`unchecked` signal (the image is held). The resolver and the address policy are injected so
tests can point a name at a local test server without weakening the production default.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from agents.metrics import Metrics
from streams.events import CloudEvent, ImageData

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: (host, port) → IP address strings. The default asks the system resolver.
Resolver = Callable[[str, int], Awaitable[list[str]]]
#: An address → None if it may be contacted, else the reason it may not.
AddressPolicy = Callable[[IPAddress], str | None]

_REDIRECTS = (301, 302, 303, 307, 308)
_IMAGE_TYPES = ("image/", "application/octet-stream")


class FetchError(Exception):
    """The image could not be fetched; `str()` is the reason, `kind` a bounded class for metrics
    (refused, failed, timeout, too_large)."""

    def __init__(self, reason: str, kind: str = "failed") -> None:
        super().__init__(reason)
        self.kind = kind


def public_addresses_only(address: IPAddress) -> str | None:
    """The production policy: only globally routable unicast addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for attribute, what in (
        ("is_loopback", "loopback"),
        ("is_unspecified", "unspecified"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, attribute):
            return f"{what} address {address}"
    if not address.is_global:
        return f"non-global address {address}"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def host_allowed(host: str, allowlist: Sequence[str]) -> bool:
    """`host` is listed exactly, or under a `.domain` entry (which also covers `domain`)."""
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if entry.startswith("*."):
            entry = entry[1:]
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one fetch (settings VIGIL_IMAGE_FETCH_*, VIGIL_IMAGE_MAX_BYTES)."""

    max_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 3.0
    total_timeout: float = 10.0
    max_redirects: int = 3


class _CheckedResolver(AbstractResolver):
    """aiohttp's only way to addresses: resolve, refuse if any address fails the policy."""

    def __init__(self, resolve: Resolver, policy: AddressPolicy) -> None:
        self._resolve = resolve
        self._policy = policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise FetchError(f"{host} does not resolve", "failed")
        results: list[ResolveResult] = []
        for text in addresses:
            address = ipaddress.ip_address(text)
            refusal = self._policy(address)
            if refusal is not None:
                raise FetchError(f"{host} resolves to a refused {refusal}", "refused")
            results.append({
                "hostname": host, "host": str(address), "port": port,
                "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                "proto": 0, "flags": socket.AI_NUMERICHOST,
            })
        return results

    async def close(self) -> None:
        return None


class ImageFetcher:
    """Fetches allow-listed image URLs safely; one instance per process (it owns a session)."""

    def __init__(
        self,
        allowlist: Sequence[str],
        *,
        allow_http: bool = False,
        limits: FetchLimits | None = None,
        resolver: Resolver = system_resolver,
        address_policy: AddressPolicy = public_addresses_only,
    ) -> None:
        self.allowlist = tuple(h.strip() for h in allowlist if h.strip())
        self.allow_http = allow_http
        self.limits = limits or FetchLimits()
        self._resolver = resolver
        self._policy = address_policy
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_CheckedResolver(self._resolver, self._policy),
                use_dns_cache=False,  # every connection re-resolves and re-checks
                force_close=True,  # no keep-alive: no connection outlives its check
                limit=32,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # never route through an environment proxy
                timeout=aiohttp.ClientTimeout(total=self.limits.total_timeout,
                                              connect=self.limits.connect_timeout),
                headers={"User-Agent": "vigil-image-fetcher/1", "Accept": "image/*",
                         "Accept-Encoding": "identity"},
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (on shutdown)."""
        if self._session is not None:
            await self._session.close()

    def check_url(self, url: URL, *, origin_host: str | None = None) -> None:
        """Refuse (FetchError) a URL the policy does not allow, before any network traffic."""
        if url.scheme not in ("https", "http") or (url.scheme == "http" and not self.allow_http):
            allowed = "https or http" if self.allow_http else "https"
            raise FetchError(f"scheme {url.scheme or '(none)'!r} refused (only {allowed})",
                             "refused")
        host = (url.host or "").lower()
        if not host:
            raise FetchError("url has no host", "refused")
        if url.user or url.password:
            raise FetchError("urls with credentials are refused", "refused")
        if origin_host is not None and host != origin_host:
            raise FetchError(f"redirect to another host ({host}) refused", "refused")
        if not self.allowlist:
            raise FetchError("url images are not fetched: VIGIL_IMAGE_URL_ALLOWLIST is empty",
                             "refused")
        if not host_allowed(host, self.allowlist):
            raise FetchError(f"host {host} is not on the image url allow-list", "refused")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            # aiohttp does not resolve IP literals, so our resolver would never see them.
            refusal = self._policy(literal)
            if refusal is not None:
                raise FetchError(f"{refusal} refused", "refused")

    async def fetch(self, url: str) -> bytes:
        """The image bytes at `url`, or `FetchError` with the reason."""
        try:
            current = URL(url)
        except (ValueError, TypeError):
            raise FetchError("malformed url", "refused") from None
        origin_host: str | None = None
        try:
            for _ in range(self.limits.max_redirects + 1):
                self.check_url(current, origin_host=origin_host)
                origin_host = (current.host or "").lower()
                async with self._client().get(current, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"HTTP {response.status} without Location")
                        current = current.join(URL(location))
                        continue
                    return await self._body(response)
            raise FetchError(f"more than {self.limits.max_redirects} redirects", "refused")
        except FetchError:
            raise
        except asyncio.TimeoutError:
            raise FetchError("timed out", "timeout") from None
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, FetchError):
                raise cause from None
            raise FetchError(f"fetch failed ({type(exc).__name__})") from None
        except (OSError, ValueError) as exc:
            raise FetchError(f"fetch failed ({type(exc).__name__})") from None

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        if response.status != 200:
            raise FetchError(f"HTTP {response.status}")
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type and not content_type.startswith(_IMAGE_TYPES):
            raise FetchError(f"content type {content_type!r} is not an image", "refused")
        cap = self.limits.max_bytes
        if response.content_length is not None and response.content_length > cap:
            raise FetchError(f"image is {response.content_length} bytes, over the {cap} limit",
                             "too_large")
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise FetchError(f"image is over the {cap} byte limit", "too_large")
        return bytes(body)


def fetcher_from_settings(settings: Any) -> ImageFetcher:
    """The production fetcher for a `Settings` object (public addresses only)."""
    return ImageFetcher(
        [h for h in str(settings.image_url_allowlist or "").split(",") if h.strip()],
        allow_http=settings.image_url_allow_http,
        limits=FetchLimits(
            max_bytes=settings.image_max_bytes,
            connect_timeout=settings.image_fetch_connect_timeout,
            total_timeout=settings.image_fetch_timeout,
            max_redirects=settings.image_fetch_max_redirects,
        ),
    )


@dataclass(frozen=True)
class Fetched:
    """An image event with its bytes, or why there are none (URL fetch refused or failed)."""

    event: CloudEvent[ImageData]
    data: bytes | None
    problem: FetchError | None = None

    def inline(self) -> CloudEvent[ImageData]:
        """The event with the bytes inline and no URL: what the pure detectors take."""
        image = self.event.data
        if image.data_b64 is not None or self.data is None:
            return self.event
        return msgspec.structs.replace(
            self.event, data=msgspec.structs.replace(image, data_b64=self.data, url=None))


class ImageSource:
    """Bytes for image events, shared by every role that looks at pixels (hashing, classify):
    inline bytes as they are, URL images through the allow-listed `ImageFetcher` with bounded
    concurrency; every outcome counted in `vigil_image_fetches_total`."""

    def __init__(self, fetcher: ImageFetcher, concurrency: int, metrics: Metrics) -> None:
        self.fetcher = fetcher
        self._slots = asyncio.Semaphore(concurrency)
        self._metrics = metrics

    async def resolve(self, event: CloudEvent[ImageData]) -> Fetched:
        """The event's bytes (never raises: a failure is in `Fetched.problem`)."""
        image = event.data
        if image.data_b64 is not None:
            return Fetched(event, image.data_b64)
        async with self._slots:
            try:
                data = await self.fetcher.fetch(image.url or "")
            except FetchError as exc:
                self._metrics.image_fetches.labels(exc.kind).inc()
                return Fetched(event, None, exc)
        self._metrics.image_fetches.labels("ok").inc()
        return Fetched(event, data)

    async def resolve_all(self, events: Sequence[CloudEvent[ImageData]]) -> list[Fetched]:
        """`resolve` for a batch, concurrently, in order."""
        return list(await asyncio.gather(*(self.resolve(e) for e in events)))


def image_source_from_settings(settings: Any, metrics: Metrics) -> ImageSource:
    """The production `ImageSource` for a `Settings` object."""
    return ImageSource(fetcher_from_settings(settings), settings.image_fetch_concurrency, metrics)
