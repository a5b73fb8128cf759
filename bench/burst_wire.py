"""The evaluation's input as a forum puts it on the wire, and the sentinels that end it.

Both modes of `bench.burst_eval` consume these bytes: the pipeline mode produces them to the
broker, the in-process mode decodes them itself. Sharing the bytes (not the Python objects)
is what makes the two comparable: event times and account ages go through the same RFC 3339
round trip (microseconds) in both.

Sentinels: a burst pipeline gives no "done" signal, and the embedded broker's end offsets
trail (DESIGN §1), so the input ends with one small, certain incident per detector group a
day after the simulated traffic (a report surge, a thread raid that is also a text brigade,
an image spray). With one partition per topic, seeing the sentinels' alerts proves every
earlier event was processed; their first event also moves each watermark a day on, which
resolves every real incident. Sentinel alerts are left out of every score.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from streams.codec import encode
from streams.events import Account, AlertData, PostData, ReportData, SignalData
from streams.topics import POSTS, REPORTS, SIGNALS, TopicSpec

SENTINEL = "sentinel"
SOURCE = "forum/sim"
_SPEC: dict[type, TopicSpec] = {PostData: POSTS, ReportData: REPORTS, SignalData: SIGNALS}


@dataclass(frozen=True)
class Message:
    """One input event: the topic it goes to, its Kafka key and its CloudEvent bytes."""

    spec: TopicSpec
    key: bytes | None
    value: bytes


def to_wire(events: list[tuple[float, int, Any]]) -> list[Message]:
    """(event time, sequence, payload) in order → messages with ids `sim-<sequence>`."""
    out = []
    for at, seq, data in events:
        spec = _SPEC[type(data)]
        key, value = encode(spec, data, source=SOURCE, event_id=f"sim-{seq}",
                            time=datetime.fromtimestamp(at, timezone.utc))
        out.append(Message(spec, key, value))
    return out


def sentinels(at: float) -> list[tuple[float, int, Any]]:
    """One certain incident per detector group, starting at `at` (staffed or not: each clears
    the stricter staffed threshold too)."""
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    two_days_old = datetime.fromtimestamp(at - 2 * 86_400, timezone.utc)
    events: list[tuple[float, int, Any]] = []

    def emit(offset: float, data: Any) -> None:
        events.append((at + offset, 10**9 + len(events), data))  # above any simulated seq

    for i in range(6):  # report_surge: six established reporters
        emit(i, ReportData(report_id=f"{SENTINEL}-r{i}", target_type="post",
                           target_id=f"{SENTINEL}-post",
                           reporter=Account(id=f"{SENTINEL}-old{i}", created_at=old)))
    body = "the sentinel marks the end of the simulated week of forum traffic"
    for i in range(24):  # thread_raid (young authors) and text_brigade (same text) at once
        emit(i, PostData(post_id=f"{SENTINEL}-p{i}", thread_id=f"{SENTINEL}-thread",
                         board=SENTINEL, body=body,
                         author=Account(id=f"{SENTINEL}-young{i % 8}", created_at=two_days_old)))
    for i in range(4):  # image_spray: one image from four accounts
        emit(i, SignalData(detector="pdq", detector_version="pdq-1", content_type="image",
                           content_id=f"{SENTINEL}-i{i}", author_id=f"{SENTINEL}-old{i}",
                           evidence={"pdq": "f0" * 32}))
    return sorted(events, key=lambda e: (e[0], e[1]))


#: what the sentinels raise: (kind, key it contains); the run is complete when all are seen
SENTINEL_KINDS = ("report_surge", "thread_raid", "text_brigade", "image_spray")


def is_sentinel(alert: AlertData) -> bool:
    return SENTINEL in (alert.dedup_key or "")


def sentinels_seen(alerts: list[AlertData]) -> bool:
    kinds = {a.kind for a in alerts if is_sentinel(a)}
    return all(kind in kinds for kind in SENTINEL_KINDS)
