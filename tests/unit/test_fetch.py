"""agents.fetch: URL images only from allow-listed hosts, never to internal addresses.

A local aiohttp server on 127.0.0.1 plays the image host. Loopback is refused by the production
address policy, so the happy-path tests inject a resolver that maps test names to 127.0.0.1 and
a policy that allows exactly the test server's address; every refusal test uses the production
policy and fails before any connection is made. No test sends traffic beyond loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from agents.fetch import (
    FetchError,
    FetchLimits,
    ImageFetcher,
    host_allowed,
    public_addresses_only,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


def loopback_for_tests(address):  # type: ignore[no-untyped-def]
    """Test policy: the local test server, and otherwise exactly the production policy."""
    return None if str(address) == "127.0.0.1" else public_addresses_only(address)


def fake_dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        answers = table[host]
        return [answers.pop(0)] if len(answers) > 1 else list(answers)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.fixture
async def server() -> AsyncIterator[int]:
    app = web.Application()

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def big(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(_)
        for _i in range(20):
            await response.write(b"\x00" * 1024)
        return response

    def redirect(to: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            raise web.HTTPFound(to.replace("PORT", str(request.url.port)))
        return handler

    app.router.add_get("/x.png", image)
    app.router.add_get("/page", html)
    app.router.add_get("/big.png", big)
    app.router.add_get("/same-host", redirect("/x.png"))
    app.router.add_get("/other-host", redirect("http://evil.test:PORT/x.png"))
    app.router.add_get("/to-metadata", redirect("http://169.254.169.254/latest/meta-data"))
    app.router.add_get("/to-loopback", redirect("http://127.0.0.1:PORT/x.png"))
    app.router.add_get("/loop", redirect("/loop"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


def make_fetcher(**overrides):  # type: ignore[no-untyped-def]
    options = dict(allow_http=True, resolver=fake_dns({"images.test": ["127.0.0.1"]}),
                   address_policy=loopback_for_tests)
    options.update(overrides)
    return ImageFetcher(["images.test"], **options)


async def test_happy_path_fetches_the_bytes(server: int) -> None:
    fetcher = make_fetcher()
    try:
        assert await fetcher.fetch(f"http://images.test:{server}/x.png") == PNG
        assert await fetcher.fetch(f"http://images.test:{server}/same-host") == PNG
    finally:
        await fetcher.close()


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/page", "not an image"),
        ("/other-host", "another host"),
        ("/to-metadata", "another host"),
        ("/to-loopback", "another host"),
        ("/loop", "redirects"),
        ("/missing.png", "HTTP 404"),
    ],
)
async def test_refusals_from_the_server(server: int, path: str, words: str) -> None:
    fetcher = make_fetcher()
    try:
        with pytest.raises(FetchError, match=words):
            await fetcher.fetch(f"http://images.test:{server}{path}")
    finally:
        await fetcher.close()


async def test_size_cap_while_streaming(server: int) -> None:
    fetcher = make_fetcher(limits=FetchLimits(max_bytes=4096))
    try:
        with pytest.raises(FetchError) as info:
            await fetcher.fetch(f"http://images.test:{server}/big.png")
        assert info.value.kind == "too_large"
    finally:
        await fetcher.close()


@pytest.mark.parametrize("address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "192.168.1.1",
                                     "172.16.0.9", "::1", "fe80::1", "::ffff:127.0.0.1",
                                     "0.0.0.0", "224.0.0.1", "100.64.0.1"])
async def test_internal_addresses_are_refused_before_connecting(address: str) -> None:
    dns = fake_dns({"images.test": [address]})
    fetcher = ImageFetcher(["images.test"], resolver=dns)  # production address policy
    try:
        with pytest.raises(FetchError) as info:
            await fetcher.fetch("https://images.test/x.png")
        assert info.value.kind == "refused", str(info.value)
        assert dns.calls == ["images.test"]  # type: ignore[attr-defined]
    finally:
        await fetcher.close()


async def test_dns_rebinding_between_requests_is_refused(server: int) -> None:
    """First answer is the (test-allowed) server, then the name rebinds to metadata."""
    dns = fake_dns({"images.test": ["127.0.0.1", "169.254.169.254"]})
    fetcher = make_fetcher(resolver=dns)
    try:
        with pytest.raises(FetchError, match="refused"):
            await fetcher.fetch(f"http://images.test:{server}/same-host")
        assert len(dns.calls) == 2  # type: ignore[attr-defined]  # re-resolved for the redirect
    finally:
        await fetcher.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://elsewhere.test/x.png", "allow-list"),
        ("http://images.test/x.png", "scheme"),
        ("ftp://images.test/x.png", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:pw@images.test/x.png", "credentials"),
        ("https://127.0.0.1/x.png", "allow-list"),
    ],
)
async def test_urls_refused_without_any_lookup(url: str, words: str) -> None:
    dns = fake_dns({})
    fetcher = ImageFetcher(["images.test"], resolver=dns)
    with pytest.raises(FetchError, match=words):
        await fetcher.fetch(url)
    assert dns.calls == []  # type: ignore[attr-defined]
    await fetcher.close()


async def test_ip_literal_on_the_allow_list_is_still_checked() -> None:
    fetcher = ImageFetcher(["169.254.169.254"])
    with pytest.raises(FetchError, match="link-local"):
        await fetcher.fetch("https://169.254.169.254/latest")
    await fetcher.close()


async def test_empty_allow_list_fetches_nothing() -> None:
    fetcher = ImageFetcher([])
    with pytest.raises(FetchError, match="ALLOWLIST is empty"):
        await fetcher.fetch("https://images.test/x.png")


def test_allow_list_matching() -> None:
    assert host_allowed("img.example.com", ["img.example.com"])
    assert host_allowed("IMG.example.com.", ["img.example.com"])
    assert not host_allowed("evil-img.example.com", ["img.example.com"])
    assert host_allowed("a.cdn.example", [".cdn.example"]) and host_allowed("cdn.example",
                                                                          ["*.cdn.example"])
    assert not host_allowed("cdn.example.evil", [".cdn.example"])


def test_public_policy() -> None:
    assert public_addresses_only(ipaddress.ip_address("93.184.216.34")) is None
    assert public_addresses_only(ipaddress.ip_address("2606:4700::1111")) is None
    assert public_addresses_only(ipaddress.ip_address("::ffff:10.0.0.1")) is not None
