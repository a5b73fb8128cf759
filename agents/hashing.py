"""Hashing agent: hashes every uploaded image and looks it up in the hash banks.

Thin by design: it iterates `forum.images.v1` in batches, runs the pure `ExactHashDetector` on a
worker thread (hashing is CPU work; the event loop keeps heartbeating), and sends one signal per
hash type per image to `safety.signals.v1`. The banks folder is re-read on a timer and swapped in
whole (`agents.banks.BankStore`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from agents.banks import BankStore
from agents.context import AgentContext, decode_events
from agents.detectors.exact_hash import ExactHashDetector
from streams.codec import encode
from streams.events import CloudEvent, SignalData
from streams.topics import IMAGES, SIGNALS

NAME = "hashing"
log = logging.getLogger(__name__)


def register(ctx: AgentContext) -> None:
    """Register the hashing agent and its bank-reload timer on `ctx.app`."""
    store = BankStore(ctx.settings.banks_path)
    detector = ExactHashDetector(lambda: store.index)
    metrics = ctx.metrics

    def reload_banks() -> None:
        started = time.perf_counter()
        if store.reload_if_changed():
            metrics.bank_reload_seconds.observe(time.perf_counter() - started)
            metrics.bank_entries.clear()
            for (bank, signal_type), count in store.index.sizes().items():
                metrics.bank_entries.labels(bank, signal_type).set(count)
            log.warning("banks loaded from %s: %d entries",
                        store.folder, sum(store.index.sizes().values()))

    reload_banks()  # before the first image, so nothing is checked against empty banks

    def detect_batch(batch: list[CloudEvent[Any]]) -> list[SignalData]:
        return [signal for event in batch for signal in detector.detect(event)]

    batch_seconds = metrics.agent_batch_seconds.labels(NAME)
    batch_size = metrics.agent_batch_size.labels(NAME)

    async def match_image_hashes(stream: Any) -> None:
        async for events in stream.take_events(ctx.settings.batch_size, ctx.settings.batch_within):
            with batch_seconds.time():
                batch_size.observe(len(events))
                valid = [event for _, event, error in decode_events(IMAGES, events)
                         if event is not None]
                signals = await asyncio.to_thread(detect_batch, valid)
                for signal in signals:
                    metrics.signals.labels(signal.detector, signal.status).inc()
                    if signal.status == "match":
                        metrics.bank_matches.labels(
                            signal.evidence.get("bank", "?"), signal.evidence.get("label", "?")
                        ).inc()
                    await ctx.send(SIGNALS, *encode(
                        SIGNALS, signal, source="vigil/hashing",
                        event_id=f"sig-{signal.detector}-image-{signal.content_id}",
                    ))

    ctx.app.agent(ctx.topic(IMAGES), name="vigil.hashing.match_image_hashes")(match_image_hashes)

    async def reload_banks_timer() -> None:
        await asyncio.to_thread(reload_banks)

    ctx.app.timer(ctx.settings.banks_reload_seconds, name="vigil.hashing.reload_banks")(
        reload_banks_timer
    )
