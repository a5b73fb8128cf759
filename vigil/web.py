"""Vigil's HTTP service: event ingest, health, readiness and Prometheus metrics.

It runs beside the faust app in the same worker (a `mode.Service`), so it is up as soon as the
process is, while `/readyz` only turns 200 once the broker answers and agents hold partitions.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import msgspec
from aiohttp import web
from faust.exceptions import ConsumerNotStarted
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.context import AgentContext
from streams.codec import DecodeError, decode
from streams.topics import BY_TYPE
from vigil import console
from vigil.broker import EmbeddedBroker
from vigil.settings import Settings

log = logging.getLogger(__name__)


class _Head(msgspec.Struct):
    """Just enough of an event to route it: its `type`."""

    type: str


_HEAD = msgspec.json.Decoder(_Head)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


class IngestError(Exception):
    """A rejected request: HTTP status and a JSON body with per-event errors."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def split_events(body: bytes) -> tuple[list[bytes], bool]:
    """One event or a JSON array of events → raw event documents (and whether it was an array)."""
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            return [bytes(raw) for raw in _RAW_LIST.decode(body)], True
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise IngestError(400, {"error": f"not valid JSON: {exc}"}) from None
    return [body], False


def route(raw: bytes) -> tuple[Any, Any]:
    """(topic spec, decoded event) for one raw event, or `DecodeError` with the reason."""
    try:
        head = _HEAD.decode(raw)
    except msgspec.ValidationError as exc:
        raise DecodeError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not valid JSON: invalid UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise DecodeError("not valid JSON: nested too deeply") from None
    spec = BY_TYPE.get(head.type)
    if spec is None or not spec.input:
        raise DecodeError(f"unknown event type {head.type!r} - at `$.type`")
    return spec, decode(spec, raw)


def broker_memory_warning(rss_bytes: int, limit_mb: int) -> str | None:
    """The warning to log when the embedded broker's memory passes `limit_mb`, else None."""
    if rss_bytes <= limit_mb * 1024 * 1024:
        return None
    return (
        f"embedded broker uses {rss_bytes // 2**20} MiB (> VIGIL_EMBEDDED_BROKER_MAX_RSS_MB="
        f"{limit_mb}): it keeps every record in memory and never frees it; restart it (losing "
        "its topics) or move to Apache Kafka with VIGIL_BROKER (see README)"
    )


class WebService(Service):
    """aiohttp server on `VIGIL_WEB_HOST:VIGIL_WEB_PORT`."""

    def __init__(
        self,
        settings: Settings,
        ctx: AgentContext,
        broker: EmbeddedBroker | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.ctx = ctx
        self.broker = broker
        self._runner: web.AppRunner | None = None
        self.port: int = settings.web_port
        self._rss_warned = False

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.ingest_max_bytes)
        app.router.add_post("/v1/events", self.ingest)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        console.mount(app, self.settings, self.ctx)  # /console/ and /status (docs/console.md)
        return app

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.web_host, self.settings.web_port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # noqa: SLF001 - real port for :0
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.warning("HTTP on http://%s:%d", self.settings.web_host, self.port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @Service.timer(5.0)
    async def _watch_broker(self) -> None:
        """Export the embedded broker's memory and warn once when it passes the bound."""
        if self.broker is None:
            return
        rss = self.broker.rss_bytes()
        self.ctx.metrics.broker_rss.set(rss)
        warning = broker_memory_warning(rss, self.settings.embedded_broker_max_rss_mb)
        if warning and not self._rss_warned:
            self._rss_warned = True
            log.warning("%s", warning)

    # ------------------------------------------------------------------ handlers

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def readiness(self) -> dict[str, bool]:
        """Each readiness check by name."""
        app = self.ctx.app
        return {
            "app_started": bool(app.started),
            "broker_connected": bool(app.started and app.producer.started),
            "not_rebalancing": not app.rebalancing,
            "partitions_assigned": self._joined(),
        }

    def _joined(self) -> bool:
        """Every consumer of this worker has its share: faust's (when a faust agent runs
        here) has partitions, and every plain consume loop joined its group."""
        app = self.ctx.app
        if not app.started:
            return False
        if len(app.agents):
            try:
                if not app.consumer.assignment():
                    return False
            except ConsumerNotStarted:
                return False
        return all(loop.assigned.is_set() for loop in self.ctx.loops)

    async def readyz(self, request: web.Request) -> web.Response:
        checks = self.readiness()
        ok = all(checks.values())
        return web.json_response(
            {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
        )

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.ctx.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def ingest_authorized(self, header: str) -> bool:
        """True when ingest is open, or `header` is `Bearer <one of VIGIL_INGEST_TOKENS>`."""
        if self.settings.ingest_tokens is None:
            return True
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = token.strip().encode()
        # Check every token (no early exit) in constant time per comparison.
        return any([
            hmac.compare_digest(presented, accepted.strip().encode())
            for accepted in self.settings.ingest_tokens.get_secret_value().split(",")
            if accepted.strip()
        ])

    async def ingest(self, request: web.Request) -> web.Response:
        """`POST /v1/events`: validate every event, produce all or none, answer with ids."""
        metrics = self.ctx.metrics
        try:
            if not self.ingest_authorized(request.headers.get("Authorization", "")):
                raise IngestError(401, {"error": "missing or wrong bearer token"})
            if (request.content_length or 0) > self.settings.ingest_max_bytes:
                raise IngestError(413, {"error": "request body too large",
                                        "limit_bytes": self.settings.ingest_max_bytes})
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise IngestError(413, {"error": "request body too large",
                                        "limit_bytes": self.settings.ingest_max_bytes}) from None
            raws, _ = split_events(body)
            if not raws:
                raise IngestError(400, {"error": "no events"})
            routed, errors = [], []
            for index, raw in enumerate(raws):
                try:
                    routed.append((raw, *route(raw)))
                except DecodeError as exc:
                    errors.append({"index": index, "error": exc.reason})
            if errors:
                raise IngestError(400, {"error": "invalid events; none were accepted",
                                        "errors": errors})
            if not self.ctx.app.started:
                raise IngestError(503, {"error": "not ready"})
            futures = []
            for raw, spec, event in routed:
                key = spec.key(event.data)
                futures.append(await self.ctx.topic(spec).send(
                    key=key.encode() if key is not None else None, value=raw))
            await asyncio.gather(*futures)  # 202 means the broker has them
        except IngestError as exc:
            metrics.ingest_requests.labels(str(exc.status)).inc()
            return web.json_response(exc.body, status=exc.status)
        metrics.ingest_requests.labels("202").inc()
        return web.json_response(
            {"accepted": len(routed), "ids": [event.id for _, _, event in routed]}, status=202
        )
