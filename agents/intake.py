"""Intake: the one agent that reads every input, dead-letters what is unreadable, and opens a
decision for every post and image.

Detectors skip events they cannot decode; only intake dead-letters them, so each bad message is
dead-lettered once, with its reason and original bytes. For each valid post/image intake emits an
`intake` signal (keyed by content id) that starts the content's decision window in `decide`:
that also moves the content onto the signals topic's partitioning, so `decide` sees every signal
of one content on one partition without a separate repartition topic.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from agents.consumer import Batch
from agents.context import AgentContext
from streams.codec import DecodeError, decode, encode
from streams.deadletter import dead_letter
from streams.events import CloudEvent, ImageData, PostData, SignalData
from streams.topics import DEADLETTER, INPUT_TOPICS, SIGNALS

NAME = "intake"
VERSION = "intake-1"


def reason_class(reason: str) -> str:
    """A bounded label for metrics from a free-text reason."""
    if reason.startswith("not valid JSON"):
        return "invalid_json"
    if reason == "empty message value":
        return "empty"
    if "does not belong on" in reason:
        return "wrong_type"
    if "missing required field" in reason:
        return "missing_field"
    return "invalid_field"


def intake_signal(
    event: CloudEvent[Any], received_ms: int, record_time: float | None = None
) -> SignalData | None:
    """The `intake` signal that opens a decision for a post or image (None for other events).

    `event_time` is the event's `time`, else the Kafka record timestamp (`record_time`, epoch
    seconds), so windows and staffed-hours rules give the same result when the input is replayed.
    """
    data = event.data
    when = event.time
    if when is None and record_time:
        when = datetime.fromtimestamp(record_time, timezone.utc)
    evidence = {
        "event_id": event.id,
        "source": event.source,
        "received_ms": received_ms,
        "event_time": when.isoformat() if when else None,
    }
    if isinstance(data, (ImageData, PostData)):
        # What decide's mitigations need (young accounts, board): decide sees signals only.
        created = data.author.created_at
        evidence["author_created_at"] = created.isoformat() if created else None
        evidence["author_is_staff"] = data.author.is_staff
        evidence["board"] = data.board
    if isinstance(data, ImageData):
        return SignalData(
            detector=NAME, detector_version=VERSION, content_type="image",
            content_id=data.image_id, post_id=data.post_id, thread_id=data.thread_id,
            author_id=data.author.id, evidence=evidence,
        )
    if isinstance(data, PostData):
        return SignalData(
            detector=NAME, detector_version=VERSION, content_type="post",
            content_id=data.post_id, post_id=data.post_id, thread_id=data.thread_id,
            author_id=data.author.id, evidence=evidence,
        )
    return None


def register(ctx: AgentContext) -> None:
    """One consume loop over every input topic (agents/consumer.py: intake is on every
    input's hot path, so it skips faust's per-event stream machinery)."""
    metrics = ctx.metrics
    specs = {ctx.topic_name(spec): spec for spec in INPUT_TOPICS}
    batch_seconds = metrics.agent_batch_seconds.labels(NAME)
    events_in = {name: metrics.events_in.labels(spec.name) for name, spec in specs.items()}

    async def admit_events(batch: Batch) -> None:
        # One outbox per batch: signals and dead letters are delivered before the loop marks
        # the batch's offsets committable (at-least-once), in a few produce requests.
        with batch_seconds.time():
            async with ctx.outbox() as out:
                received_ms = int(time.time() * 1000)
                for record in batch.records:
                    spec = specs[record.topic]
                    events_in[record.topic].inc()
                    try:
                        event = decode(spec, record.value)
                    except DecodeError as error:
                        metrics.deadletters.labels(spec.name, reason_class(error.reason)).inc()
                        out.add(DEADLETTER, *dead_letter(
                            topic=spec.name, partition=record.partition, offset=record.offset,
                            reason=error.reason, original=record.value, key=record.key,
                        ))
                        continue
                    signal = intake_signal(event, received_ms,
                                           record.timestamp / 1000 if record.timestamp else None)
                    if signal is not None:
                        out.add(SIGNALS, *encode(
                            SIGNALS, signal, source="vigil/intake",
                            event_id=f"sig-intake-{signal.content_type}-{signal.content_id}",
                        ))

    ctx.consume(NAME, INPUT_TOPICS, admit_events, verdict_path=True)
