"""Hashing agent: hashes every uploaded image and looks it up in the hash banks.

Thin by design: it iterates `forum.images.v1` in batches, fetches URL images through the
allow-listed `ImageFetcher` (I/O, on the event loop, concurrently), then runs the pure detectors
— `ExactHashDetector` (sha256, md5 of the bytes) and `PerceptualHashDetector` (PDQ with its 8
rotations/mirrors, pHash/dHash as evidence) — on worker threads, and sends one signal per
signal name per image to `safety.signals.v1`. Hashing is CPU work; each image of a batch is a
task on a pool of one thread per core (Pillow's decoders and resizers release the GIL: 2 threads
≈ 1.5× one on 2 cores; a process pool measured ≈ 1.2× threads but would need the bank index
per process, bench/hashing.py), and the event loop keeps heartbeating meanwhile. Nothing an image
does can raise out of here: every failure is an `unchecked` signal (held by decide).

The banks folder is re-read on a timer; a new index is built on a worker thread and swapped in
whole (`agents.banks.BankStore`): matching never pauses for a reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import msgspec

from agents.bank_flood import FloodGuard
from agents.banks import BankIndex, BankStore
from agents.context import AgentContext, decode_events
from agents.detectors.exact_hash import ExactHashDetector
from agents.detectors.image_hash import PerceptualHashDetector
from agents.fetch import Fetched, image_source_from_settings
from agents.imaging import DecodeLimits, ImageRejected
from agents.metrics import Metrics
from agents.recent_hashes import RecentImages
from streams.codec import encode
from streams.events import AlertData, SignalData
from streams.topics import ALERTS, IMAGES, SIGNALS

NAME = "hashing"
log = logging.getLogger(__name__)


class ImageHasher:
    """All signals of one image, from its bytes: pure (no I/O), safe to run on any thread."""

    def __init__(self, index: Any, limits: DecodeLimits, *, recent: RecentImages | None = None,
                 flood: FloodGuard | None = None) -> None:
        self.exact = ExactHashDetector(index)
        self.perceptual = PerceptualHashDetector(index, limits, recent=recent, flood=flood)

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self.exact.signal_names + self.perceptual.signal_names

    def signals(self, item: Fetched) -> list[SignalData]:
        image = item.event.data
        if item.data is None:
            reason = str(item.problem) if item.problem else "no image bytes"
            kind = f"fetch_{item.problem.kind}" if item.problem else "other"
            pdq = self.perceptual.unchecked(image, reason, kind)
            exact = [msgspec.structs.replace(pdq, detector=name,
                                             detector_version=f"{name}-1", threshold=0.0)
                     for name in self.exact.signal_names]
            return [*exact, pdq]
        inline = item.inline()
        at = item.event.time.timestamp() if item.event.time is not None else None
        return [*self.exact.detect(inline), self.perceptual.detect_bytes(image, item.data, at)]

    def retroactive(self, old: BankIndex, new: BankIndex,
                    now: float | None = None) -> tuple[list[SignalData], dict[str, int]]:
        """`match` signals (evidence `retroactive: true`) for recent images that rows added
        between `old` and `new` now match, and the count per bank (for the summary alert).

        Images whose own check already matched are skipped (decide acted on them then).
        """
        recent = self.perceptual.recent
        if recent is None or not len(recent):
            return [], {}
        rows = new.added_pdq_rows(old)
        if not len(rows):
            return [], {}
        words, thresholds = new.pdq_rows(rows)
        signals: list[SignalData] = []
        per_bank: dict[str, int] = {}
        for item in recent.candidates(words, thresholds, now):
            if item.matched:
                continue
            signal = self.perceptual.retro_signal(item, now)
            if signal is not None:
                signals.append(signal)
                bank = signal.evidence.get("bank", "?")
                per_bank[bank] = per_bank.get(bank, 0) + 1
                recent.add(item.image_id, item.post_id, item.thread_id, item.author_id,
                           item.queries, item.origin, matched=True, at=item.at)
        return signals, per_bank


def register(ctx: AgentContext) -> None:
    """Register the hashing agent and its bank-reload timer on `ctx.app`."""
    settings: Any = ctx.settings
    store = BankStore(settings.banks_path)
    limits = DecodeLimits(
        max_bytes=settings.image_max_bytes,
        max_pixels=settings.image_max_pixels,
        max_frames=settings.image_max_frames,
        max_side=settings.image_hash_max_side,
    )
    recent = RecentImages(settings.hash_retro_horizon_hours * 3600,
                          settings.hash_retro_max_images)
    flood = FloodGuard(window_s=settings.bank_flood_window_seconds,
                       min_images=settings.bank_flood_min_images,
                       factor=settings.bank_flood_factor,
                       quarantine_s=settings.bank_flood_quarantine_hours * 3600)
    hasher = ImageHasher(lambda: store.index, limits, recent=recent, flood=flood)
    source = image_source_from_settings(settings, ctx.metrics)
    metrics = ctx.metrics
    threads = max(1, min(4, os.cpu_count() or 1))

    def reload_banks() -> tuple[list[SignalData], list[AlertData]]:
        started = time.perf_counter()
        old = store.index
        if not store.reload_if_changed():
            return [], []
        metrics.bank_reload_seconds.observe(time.perf_counter() - started)
        report_bank_sizes(metrics, store.index)
        # counts only: bank contents are never logged
        log.warning("banks loaded from %s: %d entries in %.2f s", store.folder,
                    sum(store.index.sizes().values()), time.perf_counter() - started)
        signals, per_bank = hasher.retroactive(old, store.index)
        alerts = [retroactive_alert(bank, count) for bank, count in sorted(per_bank.items())]
        if signals:
            log.warning("retroactive matching: %d recent images now match %s", len(signals),
                        ", ".join(sorted(per_bank)))
        return signals, alerts + flood.drain_alerts()

    async def send_all(signals: Sequence[SignalData], alerts: Sequence[AlertData]) -> None:
        # One outbox per batch: every record is delivered (acked by the broker) before the
        # agent takes its next batch, so faust never commits an image whose signals are lost.
        async with ctx.outbox() as out:
            for signal in signals:
                count_signal(metrics, signal)
                retro = "-retro" if signal.evidence.get("retroactive") else ""
                out.add(SIGNALS, *encode(
                    SIGNALS, signal, source="vigil/hashing",
                    event_id=f"sig-{signal.detector}-image-{signal.content_id}{retro}",
                ))
            for alert in alerts:
                metrics.alerts.labels(alert.kind, alert.severity).inc()
                out.add(ALERTS, *encode(ALERTS, alert, source="vigil/hashing",
                                        event_id=alert.alert_id, time=alert.last_seen))

    reload_banks()  # before the first image, so nothing is checked against empty banks

    # One pool per worker, one task per image: a thread that finishes early takes the next
    # image instead of idling while a pre-split chunk's last image hashes (bench/hashing.py).
    pool = ThreadPoolExecutor(threads, thread_name_prefix="vigil-hashing")

    def hash_one(item: Fetched) -> list[SignalData]:
        started = time.perf_counter()
        out = hasher.signals(item)
        metrics.image_hash_seconds.observe(time.perf_counter() - started)
        return out

    batch_seconds = metrics.agent_batch_seconds.labels(NAME)
    batch_size = metrics.agent_batch_size.labels(NAME)

    async def match_image_hashes(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within):
            with batch_seconds.time():
                batch_size.observe(len(events))
                valid = [event for _, event, _ in decode_events(IMAGES, events)
                         if event is not None]
                items = await source.resolve_all(valid)
                loop = asyncio.get_running_loop()
                results = await asyncio.gather(
                    *(loop.run_in_executor(pool, hash_one, item) for item in items))
                await send_all([s for chunk in results for s in chunk], flood.drain_alerts())

    ctx.app.agent(ctx.topic(IMAGES), name="vigil.hashing.match_image_hashes")(match_image_hashes)

    async def reload_banks_timer() -> None:
        await send_all(*await asyncio.to_thread(reload_banks))

    ctx.app.timer(settings.banks_reload_seconds, name="vigil.hashing.reload_banks")(
        reload_banks_timer
    )


def retroactive_alert(bank: str, count: int) -> AlertData:
    """One alert per bank and reload: `count` recent images newly match what `bank` gained.

    Each image also gets a retroactive `pdq` match signal (decide's takedown and `hash_match`
    alert); this summary says that a bank update reached back in time, which pages on its own.
    """
    now = datetime.now(timezone.utc)
    return AlertData(
        alert_id=f"alr-retroactive_match-{bank}-{int(now.timestamp())}",
        kind="retroactive_match",
        severity="high",
        summary=f"bank {bank!r} gained hashes that match {count} recent image(s): "
                "retroactive takedowns requested",
        evidence={"bank": bank, "images": count},
        first_seen=now, last_seen=now, count=count,
        dedup_key=f"retroactive_match:{bank}:{int(now.timestamp())}",
        runbook_url="docs/hashing.md#retroactive-matching",
    )


def report_bank_sizes(metrics: Metrics, index: BankIndex) -> None:
    """Entry counts per (bank, signal type): counts only, never values."""
    metrics.bank_entries.clear()
    for (bank, signal_type), count in index.sizes().items():
        metrics.bank_entries.labels(bank, signal_type).set(count)


def count_signal(metrics: Metrics, signal: SignalData) -> None:
    """Per-signal metrics; reason classes are bounded (never the free-text reason)."""
    metrics.signals.labels(signal.detector, signal.status).inc()
    if signal.status == "match":
        metrics.bank_matches.labels(
            signal.evidence.get("bank", "?"), signal.evidence.get("label", "?")).inc()
    elif signal.status == "unchecked" and signal.detector == "pdq":
        metrics.image_unchecked.labels(signal.evidence.get("reason_kind", "other")).inc()


__all__ = ["Fetched", "ImageHasher", "ImageRejected", "NAME", "register"]
