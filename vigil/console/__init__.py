"""The moderator console (`/console/`) and the public status page (`/status`).

- `store`: the queue, alerts, sessions, claims and audit log in SQLite (real and in-memory);
- `feed`: the consumer that keeps the store in step with the pipeline's topics;
- `auth`: accounts (scrypt), signed sessions, CSRF, roles, login rate limit;
- `thumbs`: blurred thumbnails (never for csam-bank matches);
- `incidents`: open incidents and active mitigations as the page shows them;
- `evidence` and `vault`: evidence packages, and the (opt-in) encrypted image retention;
- `views`: the aiohttp handlers and Jinja2 templates (plain forms; one small same-origin
  script, `static/live.js`, keeps the incidents current and is optional).

`mount(app, settings, ctx)` is all the web service calls. See docs/console.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from streams.codec import encode
from streams.events import ReviewData
from streams.topics import REVIEWS

log = logging.getLogger(__name__)
SOURCE = "vigil/console"


def review_event(review: ReviewData) -> tuple[bytes | None, bytes]:
    """(key, value) of a review on safety.reviews.v1 (unsigned topic)."""
    return encode(REVIEWS, review, source=SOURCE)


RETAIN_EVERY_S = 30.0


def _vault(settings: Any) -> Any:
    """The evidence vault when retention is on (a missing key or package stops start-up)."""
    if settings.console_evidence_retention == "off":
        return None
    from vigil.console.vault import EvidenceVault, load_key

    secret = settings.console_evidence_key
    key = load_key(secret.get_secret_value() if secret else None,
                   settings.console_evidence_key_file)
    return EvidenceVault(settings.data_dir / "evidence", key,
                         settings.console_evidence_retention_days * 86400)


async def _retain_forever(console: Any) -> None:
    while True:
        try:
            await console.retainer.run_once()
        except Exception:  # noqa: BLE001 - retried next round; never logs image bytes
            log.exception("evidence retention round failed")
        await asyncio.sleep(RETAIN_EVERY_S)


def mount(app: web.Application, settings: Any, ctx: Any) -> None:
    """Add the console and /status to `app`; its feed runs while the app does.

    Does nothing when `console_enabled` is off (detector-only workers).
    """
    if not getattr(settings, "console_enabled", False):
        return
    from vigil.console.feed import Feed, RecordFetcher
    from vigil.console.store import SqliteStore
    from vigil.console.views import Console, ConsoleConfig

    store = SqliteStore(settings.data_dir / "console.sqlite3")
    bootstrap = settings.bootstrap_servers
    feed = Feed(store, bootstrap, settings.topic_prefix)
    fetcher = RecordFetcher(bootstrap)

    async def publish(review: ReviewData) -> None:
        if not ctx.app.started:
            raise web.HTTPServiceUnavailable(text="not connected to the broker yet")
        key, value = review_event(review)
        future = await ctx.topic(REVIEWS).send(key=key, value=value)
        await future  # one click = the review is on the broker

    config = ConsoleConfig.from_settings(settings)
    console = Console(config, store, publish, fetcher.fetch, prefix=settings.topic_prefix,
                      feed_healthy=lambda: feed.healthy, vault=_vault(settings))
    console.routes(app)
    tasks: list[asyncio.Task[None]] = []

    async def start(_: web.Application) -> None:
        await feed.start()
        if console.retainer.vault is not None:
            tasks.append(asyncio.create_task(_retain_forever(console), name="console.retain"))

    async def stop(_: web.Application) -> None:
        for task in tasks:
            task.cancel()
        await feed.stop()
        await fetcher.close()
        store.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app["vigil.console"] = console
