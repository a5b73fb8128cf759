"""Dead-letter events: what could not be read, where it came from, why, and the exact bytes."""

from __future__ import annotations

import hashlib

from streams.codec import encode
from streams.events import DeadLetterData
from streams.topics import DEADLETTER


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    original: bytes | None,
    key: bytes | None = None,
    source: str = "vigil/intake",
) -> tuple[bytes | None, bytes]:
    """Encode a `safety.deadletter.v1` event for one unreadable input message.

    The event id is derived from topic/partition/offset so a redelivered bad message produces
    the same dead-letter id (consumers dedup by `id`).
    """
    data = DeadLetterData(
        topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        original=original or b"",
        key=key,
    )
    digest = hashlib.sha256(f"{topic}/{partition}/{offset}".encode()).hexdigest()[:24]
    return encode(DEADLETTER, data, source=source, event_id=f"dlq-{digest}")
