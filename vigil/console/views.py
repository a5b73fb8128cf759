"""The console's HTTP handlers (aiohttp, server-rendered Jinja2, plain HTML forms).

Every `/console/*` page needs a session; unauthenticated HTML requests are redirected to the
login page and `/console/api/*` requests get 401. Every POST checks the session's CSRF token.
Review actions are one form each and produce a `safety.reviews.v1` event through `publish`;
they, and every un-blur, are written to the audit log. `/status` and `/status.json` are public.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import msgspec
from aiohttp import web

from agents.policy import PolicyStore
from streams.events import ImageData, PostData, ReviewData
from streams.topics import IMAGES, POSTS
from vigil.console import evidence, incidents, thumbs
from vigil.console.vault import EvidenceVault, Retention
from vigil.console.auth import (
    ROLES,
    RateLimiter,
    Users,
    csrf_ok,
    load_secret,
    role_at_least,
    sign_sid,
    unsign_sid,
)
from vigil.console.store import SEVERITY_RANK, ConsoleStore, Item, Session, age, content_key, iso

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "vigil_console"
Publish = Callable[[ReviewData], Awaitable[None]]
Fetch = Callable[[str, int, int], Awaitable[bytes | None]]
OUTCOMES = ("confirm", "restore", "escalate")
_IMAGE_DECODER = msgspec.json.Decoder(dict)

_CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATUS_HEADERS = {  # embeddable by any forum page
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors *",
    "X-Content-Type-Options": "nosniff",
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "max-age=30",
}


class ConsoleConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The settings the console reads (copied from `vigil.settings.Settings`)."""

    data_dir: Path
    users_file: Path
    session_secret: bytes
    session_ttl_s: float = 720 * 60
    cookie_secure: bool = False
    claim_s: float = 15 * 60
    sla_s: float = 60 * 60
    unblur_s: float = 5 * 60
    volunteers_can_unblur: bool = False
    login_max_failures: int = 10
    on_call: str = ""
    on_call_unstaffed: str = ""
    support_links: dict[str, str] = {}
    status_guidance: str = ""
    policy: Path | None = None
    evidence_retention: Retention = "off"

    @classmethod
    def from_settings(cls, settings: Any) -> ConsoleConfig:
        secret = settings.console_session_secret
        return cls(
            data_dir=settings.data_dir,
            users_file=settings.console_users_file or settings.data_dir / "console-users.json",
            session_secret=load_secret(secret.get_secret_value() if secret else None,
                                       settings.console_session_secret_file, settings.data_dir),
            session_ttl_s=settings.console_session_ttl_minutes * 60,
            cookie_secure=settings.console_cookie_secure,
            claim_s=settings.console_claim_minutes * 60,
            sla_s=settings.console_sla_minutes * 60,
            unblur_s=settings.console_unblur_minutes * 60,
            volunteers_can_unblur=settings.console_volunteers_can_unblur,
            login_max_failures=settings.console_login_max_failures,
            on_call=settings.console_on_call,
            on_call_unstaffed=settings.console_on_call_unstaffed,
            support_links=dict(settings.console_support_links),
            status_guidance=settings.console_status_guidance,
            policy=settings.policy,
            evidence_retention=settings.console_evidence_retention,
        )


class Console:
    """The console: routes, templates, auth, and the store and producer it acts through.

    `publish` sends a review to safety.reviews.v1; `fetch` reads a record back from the broker
    (image bytes of held items); `feed_healthy` says whether the feed is keeping up (for
    /status "watched by automation").
    """

    def __init__(self, config: ConsoleConfig, store: ConsoleStore, publish: Publish,
                 fetch: Fetch | None = None, *, prefix: str = "",
                 feed_healthy: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time,
                 vault: EvidenceVault | None = None) -> None:
        self.config = config
        self.store = store
        self.publish = publish
        self.fetch = fetch
        self.prefix = prefix
        self.feed_healthy = feed_healthy
        self.clock = clock
        self.retainer = evidence.Retainer(config.evidence_retention, vault, store,
                                          self._original_image, clock)
        self.users = Users(config.users_file)
        self.limiter = RateLimiter(config.login_max_failures, 900)
        self.policy = PolicyStore(config.policy)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(iso=iso, age=age, q=lambda s: quote(str(s), safe=""),
                                digest=lambda s: hashlib.sha256(str(s).encode()).hexdigest()[:16])
        self.env.globals.update(ROLES=ROLES)

    # ------------------------------------------------------------------ wiring

    def routes(self, app: web.Application) -> None:
        """Register every console and status route on `app`."""
        r = app.router
        r.add_get("/status", self.status_page)
        r.add_get("/status.json", self.status_json)
        r.add_get("/console", lambda _: web.HTTPFound("/console/"))
        r.add_get("/console/", self.page(self.queue_page))
        r.add_get("/console/login", self.login_form)
        r.add_post("/console/login", self.login)
        r.add_post("/console/logout", self.action(self.logout))
        r.add_static("/console/static/", HERE / "static", append_version=False)
        r.add_get("/console/items/{ctype}/{cid}", self.page(self.item_page))
        r.add_get("/console/items/{ctype}/{cid}/thumb", self.page(self.thumb))
        r.add_get("/console/items/{ctype}/{cid}/evidence.json",
                  self.page(self.evidence, "moderator"))
        r.add_post("/console/items/{ctype}/{cid}/claim", self.action(self.claim))
        r.add_post("/console/items/{ctype}/{cid}/release", self.action(self.release))
        r.add_post("/console/items/{ctype}/{cid}/review", self.action(self.review))
        r.add_post("/console/items/{ctype}/{cid}/unblur", self.action(self.unblur))
        r.add_post("/console/alerts/bulk", self.action(self.bulk, "moderator"))
        r.add_post("/console/alerts/hide", self.action(self.hide_all, "moderator"))
        r.add_post("/console/mitigations/lift", self.action(self.lift, "moderator"))
        r.add_get("/console/live", self.page(self.live_fragment))
        r.add_get("/console/api/alerts", self.page(self.alerts_json))
        r.add_post("/console/page", self.action(self.page_oncall))
        r.add_post("/console/prefs", self.action(self.prefs))
        r.add_get("/console/audit", self.page(self.audit_page, "admin"))
        r.add_get("/console/api/queue", self.page(self.queue_json))

    # ------------------------------------------------------------------ auth plumbing

    def current(self, request: web.Request) -> Session | None:
        sid = unsign_sid(self.config.session_secret, request.cookies.get(COOKIE))
        return self.store.session(sid, self.clock()) if sid else None

    def _refuse(self, request: web.Request, status: int = 401) -> web.StreamResponse:
        if request.path.startswith("/console/api/") or request.method != "GET":
            return web.json_response({"error": "login required" if status == 401
                                      else "forbidden"}, status=status)
        if status == 401:
            raise web.HTTPFound("/console/login?next=" + quote(request.path_qs, safe=""))
        return self.render("error.html", request, None, status=403,
                           message="Your role does not allow this.")

    def page(self, handler: Callable[..., Awaitable[web.StreamResponse]],
             role: str = "volunteer") -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A GET handler that needs a session with at least `role`."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = self.current(request)
            if session is None:
                return self._refuse(request, 401)
            if not role_at_least(session.role, role):
                return self._refuse(request, 403)
            return await handler(request, session)
        return wrapped

    def action(self, handler: Callable[..., Awaitable[web.StreamResponse]],
               role: str = "volunteer") -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A POST handler: session, role and the form's CSRF token."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = self.current(request)
            if session is None:
                return self._refuse(request, 401)
            form = await request.post()
            if not csrf_ok(session.csrf, str(form.get("csrf", ""))):
                return web.json_response({"error": "CSRF token missing or wrong"}, status=403)
            if not role_at_least(session.role, role):
                return self._refuse(request, 403)
            return await handler(request, session, form)
        return wrapped

    def render(self, template: str, request: web.Request, session: Session | None, *,
               status: int = 200, headers: dict[str, str] | None = None,
               **context: Any) -> web.Response:
        body = self.env.get_template(template).render(
            session=session, now=self.clock(), path=request.path, **context)
        return web.Response(text=body, status=status, content_type="text/html",
                            headers=headers or _CONSOLE_HEADERS)

    def _key(self, request: web.Request) -> str:
        ctype = request.match_info["ctype"]
        if ctype not in ("post", "image"):
            raise web.HTTPNotFound()
        return content_key(ctype, request.match_info["cid"])

    def _item(self, request: web.Request) -> Item:
        item = self.store.item(self._key(request))
        if item is None:
            raise web.HTTPNotFound()
        return item

    # ------------------------------------------------------------------ login

    async def login_form(self, request: web.Request) -> web.Response:
        return self.render("login.html", request, None, error=None,
                           next=request.query.get("next", "/console/"))

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        target = str(form.get("next", "/console/"))
        if not target.startswith("/console/") or target.startswith("//"):
            target = "/console/"
        peer = request.remote or "?"
        keys = (f"addr:{peer}", f"user:{name}")
        if any(self.limiter.blocked(k) for k in keys):
            return self.render("login.html", request, None, status=429, next=target,
                               error="Too many failed logins. Wait 15 minutes and try again.")
        user = await asyncio.to_thread(self.users.authenticate, name, password)
        if user is None:
            for k in keys:
                self.limiter.fail(k)
            return self.render("login.html", request, None, status=401, next=target,
                               error="Wrong user name or password.")
        for k in keys:
            self.limiter.reset(k)
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), user.name, user.role,
                          secrets.token_urlsafe(32), now + self.config.session_ttl_s, False)
        self.store.create_session(session)
        self.store.audit(user.name, "login", None, f"from {peer}", now)
        response = web.HTTPFound(target)
        response.set_cookie(COOKIE, sign_sid(self.config.session_secret, session.sid),
                            max_age=int(self.config.session_ttl_s), path="/console/",
                            httponly=True, samesite="Strict", secure=self.config.cookie_secure)
        raise response

    async def logout(self, request: web.Request, session: Session, form: Any) -> web.Response:
        self.store.delete_session(session.sid)
        response = web.HTTPFound("/console/login")
        response.del_cookie(COOKIE, path="/console/")
        raise response

    # ------------------------------------------------------------------ queue and items

    def oncall(self) -> dict[str, Any]:
        """Staffed now (policy's staffed hours, wall clock) and who is on call."""
        self.policy.reload_if_changed()
        hours = self.policy().staffed_hours
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        staffed = hours.covers(now)
        who = self.config.on_call if staffed else self.config.on_call_unstaffed
        window = ("around the clock" if hours.always else
                  f"{hours.start:%H:%M}–{hours.end:%H:%M} {hours.timezone}, "
                  f"{', '.join(hours.days)}")
        return {"staffed": staffed, "on_call": who.strip(), "hours": window}

    def live(self) -> dict[str, Any]:
        """What the live part of the queue page shows: on-call banner, incidents (with how
        many posts a bulk hide would cover) and active mitigations."""
        alerts, mitigations = incidents.split(self.store.open_alerts())
        return {"oncall": self.oncall(), "alerts": alerts, "mitigations": mitigations,
                "hideable": {a.dedup_key: len(self.store.content_of_alert(a)) for a in alerts}}

    async def queue_page(self, request: web.Request, session: Session) -> web.Response:
        now = self.clock()
        return self.render("queue.html", request, session, items=self.store.queue(now),
                           sla_s=self.config.sla_s, can_unblur=self.can_unblur(session),
                           message=request.query.get("msg"), **self.live())

    async def live_fragment(self, request: web.Request, session: Session) -> web.Response:
        """The banner and incidents alone, polled by live.js to update them in place."""
        return self.render("_live.html", request, session, **self.live())

    async def alerts_json(self, request: web.Request, session: Session) -> web.Response:
        live = self.live()
        now = self.clock()
        return web.json_response({
            "incidents": [{"dedup_key": a.dedup_key, "kind": a.kind, "severity": a.severity,
                           "summary": a.summary, "hideable": live["hideable"][a.dedup_key]}
                          for a in live["alerts"]],
            "mitigations": [{"dedup_key": m.dedup_key, "mitigation": m.what,
                             "scope": {"type": m.scope_type, "id": m.scope_id},
                             "decision_id": m.decision_id, "expires_in_s":
                             None if m.expires_at is None else round(m.expires_in(now))}
                            for m in live["mitigations"]],
        }, headers={"Cache-Control": "no-store"})

    async def queue_json(self, request: web.Request, session: Session) -> web.Response:
        now = self.clock()
        items = [{
            "key": i.key, "content_type": i.content_type, "content_id": i.content_id,
            "severity": i.severity, "action": i.action, "verdict": i.verdict,
            "decision_id": i.decision_id, "reports": i.report_count, "csam": i.csam,
            "age_s": round(now - i.first_seen), "claimed_by": i.claimed_by_other("", now),
            "alerts": [a.kind for a in i.alerts],
            # csam items never get a thumbnail URL
            "thumbnail": None if i.csam or i.content_type != "image" else
            f"/console/items/{i.content_type}/{quote(i.content_id, safe='')}/thumb",
        } for i in self.store.queue(now)]
        return web.json_response({"items": items}, headers={"Cache-Control": "no-store"})

    async def item_page(self, request: web.Request, session: Session) -> web.Response:
        item = self._item(request)
        now = self.clock()
        pointer = self.store.pointer(item.key)
        author_age = None
        if pointer and pointer.get("author_created_at"):
            created = datetime.fromisoformat(pointer["author_created_at"])
            author_age = age(now - created.timestamp())
        activity = (self.store.author_activity(item.author_id, now) if item.author_id else None)
        text = await self._post_text(item) if item.content_type == "post" else None
        return self.render(
            "item.html", request, session, item=item, reports=self.store.reports_of(item.key),
            trail=self.store.trail(item.key), author_age=author_age, activity=activity,
            text=text, sla_s=self.config.sla_s, can_unblur=self.can_unblur(session),
            unblurred=self.store.unblur_granted(session.sid, item.key, now),
            holder=item.claimed_by_other(session.user, now), message=request.query.get("msg"))

    async def _post_text(self, item: Item) -> str | None:
        pointer = self.store.pointer(item.key)
        if pointer is None or self.fetch is None:
            return None
        raw = await self.fetch(pointer["topic"], pointer["partition"], pointer["offset"])
        if raw is None:
            return None
        try:
            data = msgspec.json.decode(raw, type=dict)["data"]
            return str(msgspec.convert(data, PostData).body)
        except (msgspec.DecodeError, KeyError, TypeError):
            return None

    # ------------------------------------------------------------------ thumbnails

    def can_unblur(self, session: Session) -> bool:
        return (role_at_least(session.role, "moderator")
                or (session.role == "volunteer" and self.config.volunteers_can_unblur))

    async def _image_bytes(self, item: Item) -> bytes | None:
        """The held image's bytes, read back from the images topic. Never for csam items."""
        if item.csam:
            return None
        return await self._original_image(item)

    async def _original_image(self, item: Item) -> bytes | None:
        """The image's bytes from the images topic, csam or not: only `_image_bytes` (which
        refuses csam) and the evidence vault call this."""
        if item.content_type != "image" or self.fetch is None:
            return None
        pointer = self.store.pointer(item.key)
        if pointer is None or pointer["topic"] != IMAGES.full_name(self.prefix):
            return None
        raw = await self.fetch(pointer["topic"], pointer["partition"], pointer["offset"])
        if raw is None:
            return None
        try:
            data = msgspec.convert(msgspec.json.decode(raw, type=dict)["data"], ImageData)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError):
            return None
        return data.data_b64  # None for URL images: the console does not fetch URLs

    async def thumb(self, request: web.Request, session: Session) -> web.StreamResponse:
        item = self._item(request)
        if item.csam:  # never sent, not even blurred
            raise web.HTTPNotFound(text="withheld: csam bank match")
        clear = request.query.get("view") == "clear"
        now = self.clock()
        if clear and not (self.can_unblur(session)
                          and self.store.unblur_granted(session.sid, item.key, now)):
            return self._refuse(request, 403)
        body: bytes | None = None
        if clear:
            data = await self._image_bytes(item)
            body = await asyncio.to_thread(thumbs.clear_preview, data) if data else None
        else:
            body = self.store.thumb(item.key)
            if body is None:
                data = await self._image_bytes(item)
                if data is not None:
                    try:
                        body = await asyncio.to_thread(thumbs.blurred_thumbnail, data)
                    except thumbs.ImageRejected:
                        body = None
                    if body is not None and not self.store.put_thumb(item.key, body):
                        body = None  # became csam meanwhile
        if body is None:
            raise web.HTTPNotFound(text="no thumbnail")
        if session.greyscale:
            body = await asyncio.to_thread(thumbs.greyscale, body)
        return web.Response(body=body, content_type="image/jpeg",
                            headers={**_CONSOLE_HEADERS, "Cache-Control": "private, no-store"})

    async def unblur(self, request: web.Request, session: Session, form: Any) -> web.StreamResponse:
        item = self._item(request)
        now = self.clock()
        if item.csam:
            self.store.audit(session.user, "unblur_refused", item.key, "csam bank match", now)
            return web.json_response({"error": "csam bank matches are never shown"},
                                     status=403)
        if not self.can_unblur(session):
            self.store.audit(session.user, "unblur_refused", item.key, f"role {session.role}",
                             now)
            return self._refuse(request, 403)
        self.store.grant_unblur(session.sid, item.key, now + self.config.unblur_s)
        self.store.audit(session.user, "unblur", item.key, "", now)
        raise web.HTTPFound(self._item_url(item))

    async def prefs(self, request: web.Request, session: Session, form: Any) -> web.Response:
        self.store.set_greyscale(session.sid, form.get("greyscale") == "on")
        back = str(form.get("next", "/console/"))
        raise web.HTTPFound(back if back.startswith("/console/") else "/console/")

    # ------------------------------------------------------------------ actions

    @staticmethod
    def _item_url(item: Item) -> str:
        return f"/console/items/{item.content_type}/{quote(item.content_id, safe='')}"

    async def claim(self, request: web.Request, session: Session, form: Any) -> web.Response:
        item = self._item(request)
        holder = self.store.claim(item.key, session.user, self.clock(), self.config.claim_s)
        if holder is not None:
            return self.render("error.html", request, session, status=409,
                               message=f"{holder} is reviewing this item.")
        self.store.audit(session.user, "claim", item.key, "", self.clock())
        raise web.HTTPFound(self._item_url(item))

    async def release(self, request: web.Request, session: Session, form: Any) -> web.Response:
        item = self._item(request)
        self.store.release(item.key, session.user)
        raise web.HTTPFound("/console/")

    async def _review(self, item: Item, outcome: str, session: Session, note: str) -> None:
        review = ReviewData(decision_id=item.decision_id or f"console-{item.key}",
                            outcome=outcome,  # type: ignore[arg-type]
                            reviewer=session.user, note=note or None,
                            content_id=item.content_id)
        await self.publish(review)
        now = self.clock()
        self.store.mark_reviewed(item.key, outcome, session.user, now)
        self.store.audit(session.user, outcome, item.key,
                         json.dumps({"decision_id": review.decision_id, "note": note}), now)

    async def review(self, request: web.Request, session: Session, form: Any) -> web.Response:
        item = self._item(request)
        outcome = str(form.get("outcome", ""))
        if outcome not in OUTCOMES:
            raise web.HTTPBadRequest(text="outcome must be confirm, restore or escalate")
        if outcome == "restore" and item.csam and session.role != "admin":
            # undoing a known-csam block is for an admin (a wrong bank entry), never one click
            return self._refuse(request, 403)
        now = self.clock()
        holder = self.store.claim(item.key, session.user, now, self.config.claim_s)
        if holder is not None:  # someone else is on it
            return self.render("error.html", request, session, status=409,
                               message=f"{holder} is reviewing this item.")
        await self._review(item, outcome, session, str(form.get("note", ""))[:500])
        raise web.HTTPFound(f"/console/?msg={quote(f'{outcome}: {item.content_id}')}")

    async def bulk(self, request: web.Request, session: Session, form: Any) -> web.Response:
        """One outcome for every open item of an alert (e.g. confirm all posts of a raid)."""
        alert = self.store.alert(str(form.get("dedup_key", "")))
        outcome = str(form.get("outcome", ""))
        if alert is None or outcome not in ("confirm", "restore"):
            raise web.HTTPBadRequest(text="unknown alert or outcome")
        now = self.clock()
        done = 0
        for item in self.store.items_of_alert(alert):
            if item.claimed_by_other(session.user, now) or (outcome == "restore" and item.csam):
                continue
            await self._review(item, outcome, session, f"bulk for alert {alert.kind}")
            done += 1
        self.store.audit(session.user, f"bulk_{outcome}", None,
                         f"alert {alert.dedup_key}: {done} item(s)", now)
        raise web.HTTPFound(f"/console/?msg={quote(f'{outcome}: {done} item(s) of {alert.kind}')}")

    async def hide_all(self, request: web.Request, session: Session, form: Any) -> web.Response:
        """Hide every post of a raid: one `confirm` review per post or image of the incident,
        naming that content's own verdict decision, allowed ones included (decide answers a
        confirm of allowed content with a `hide` takedown)."""
        alert = self.store.alert(str(form.get("dedup_key", "")))
        if alert is None:
            raise web.HTTPBadRequest(text="unknown alert")
        note = f"bulk hide for alert {alert.kind} {alert.dedup_key}"
        contents = self.store.content_of_alert(alert, self.clock(), session.user)
        reviews = [ReviewData(decision_id=c.decision_id, outcome="confirm",
                              reviewer=session.user, note=note, content_id=c.content_id)
                   for c in contents]
        await asyncio.gather(*(self.publish(review) for review in reviews))
        now = self.clock()
        for content, review in zip(contents, reviews):
            self.store.mark_reviewed(content.key, "confirm", session.user, now)
            self.store.audit(session.user, "bulk_hide", content.key,
                             json.dumps({"decision_id": review.decision_id,
                                         "alert": alert.dedup_key}), now)
        self.store.audit(session.user, "bulk_hide", None,
                         f"alert {alert.dedup_key}: {len(reviews)} item(s)", now)
        raise web.HTTPFound("/console/?msg=" + quote(
            f"hide: {len(reviews)} post(s)/image(s) of {alert.kind}"))

    async def lift(self, request: web.Request, session: Session, form: Any) -> web.Response:
        """Lift a mitigation now: a `restore` review of its decision, keyed by its scope."""
        alert = self.store.alert(str(form.get("dedup_key", "")))
        found = incidents.mitigation(alert) if alert is not None and not alert.resolved else None
        if found is None:
            raise web.HTTPBadRequest(text="no such active mitigation")
        await self.publish(ReviewData(decision_id=found.decision_id, outcome="restore",
                                      reviewer=session.user, note="lifted from the console",
                                      content_id=found.scope_id))
        self.store.audit(session.user, "lift_mitigation", f"{found.scope_type}:{found.scope_id}",
                         json.dumps({"decision_id": found.decision_id, "mitigation": found.what,
                                     "alert": found.dedup_key}), self.clock())
        raise web.HTTPFound("/console/?msg=" + quote(
            f"Lift requested: {found.what} on {found.scope_type} {found.scope_id}."))

    async def page_oncall(self, request: web.Request, session: Session,
                          form: Any) -> web.Response:
        """Page the next escalation level: an `escalate` review, which decide turns into a
        `review_escalated` alert routed by the policy (pages at any hour)."""
        dedup = str(form.get("dedup_key", ""))
        alert = self.store.alert(dedup) if dedup else None
        note = str(form.get("note", ""))[:300] or "paged from the console"
        decision = (alert.evidence.get("decision_id") if alert else None) or \
            f"console-page-{uuid.uuid4().hex[:12]}"
        review = ReviewData(decision_id=str(decision), outcome="escalate",
                            reviewer=session.user, note=note,
                            content_id=alert.target_id if alert else None)
        await self.publish(review)
        self.store.audit(session.user, "page", None,
                         json.dumps({"alert": dedup or None, "decision_id": decision}),
                         self.clock())
        raise web.HTTPFound("/console/?msg=" + quote("Paged the next escalation level."))

    async def audit_page(self, request: web.Request, session: Session) -> web.Response:
        return self.render("audit.html", request, session, entries=self.store.audit_log())

    # ------------------------------------------------------------------ evidence

    async def evidence(self, request: web.Request, session: Session) -> web.Response:
        """An evidence package for the police or a hotline (`evidence.package`); the image
        itself only where the retention policy allows."""
        item = self._item(request)
        now = self.clock()
        image = await self.retainer.image_part(item, session.role)
        body = evidence.package(item, self.store.pointer(item.key) or {},
                                self.store.reports_of(item.key), self.store.trail(item.key),
                                image, user=session.user, now=now)
        # the audit says whether the image went out, never its bytes
        self.store.audit(session.user, "export_evidence", item.key,
                         "image included" if image["included"] else "", now)
        name = f"evidence-{item.content_type}-{item.content_id}.json"
        return web.json_response(body, dumps=lambda o: json.dumps(o, indent=2), headers={
            **_CONSOLE_HEADERS, "Content-Disposition": f'attachment; filename="{quote(name)}"'})

    # ------------------------------------------------------------------ public status

    def status(self) -> dict[str, Any]:
        now = self.clock()
        oncall = self.oncall()
        median = self.store.median_report_to_action(now)
        automated = bool(self.feed_healthy())
        return {
            "watched": automated or bool(oncall["on_call"]),
            "automated": automated,
            "on_call": bool(oncall["on_call"]),
            "staffed": oncall["staffed"],
            "staffed_hours": oncall["hours"],
            "median_report_to_action_seconds_24h": round(median, 1) if median is not None
            else None,
            "open_queue": len(self.store.queue(now)),
            "guidance": self.config.status_guidance,
            "support_links": [{"label": k, "url": v}
                              for k, v in self.config.support_links.items()],
            "generated_at": iso(now),
        }

    async def status_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.status(), headers=_STATUS_HEADERS)

    async def status_page(self, request: web.Request) -> web.Response:
        return self.render("status.html", request, None, headers=_STATUS_HEADERS,
                           status_=self.status(), embed=request.query.get("embed") == "1")


__all__ = ["SEVERITY_RANK", "Console", "ConsoleConfig", "POSTS"]
