"""Every topic of the contract, declared once (DESIGN §3–4).

Agents import these specs and never spell a topic name. The name on the broker is
`prefix + spec.name`; the prefix is empty in production and unique per test, so parallel tests
on one broker never share a topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.events import (
    AlertData,
    Data,
    DeadLetterData,
    ImageData,
    PostData,
    ReportData,
    ReviewData,
    SignalData,
    TakedownData,
    VerdictData,
)


@dataclass(frozen=True)
class TopicSpec:
    """One contract topic: its name, what keys a message, which event types and payload it holds.

    `key` maps a payload to the Kafka message key (DESIGN §3–4 "key" column); messages with the
    same key stay in order on one partition. `signed` topics carry an HMAC signature.
    """

    name: str
    model: type[Data]
    types: tuple[str, ...]
    key: Callable[[Any], str | None]
    partitions: int | None = None  # None: the configured default (VIGIL_TOPIC_PARTITIONS)
    signed: bool = False
    input: bool = False
    doc: str = ""
    config: dict[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str = "") -> str:
        """The topic's name on the broker."""
        return prefix + self.name


POSTS = TopicSpec(
    "forum.posts.v1",
    PostData,
    ("forum.post.created", "forum.post.edited"),
    key=lambda d: d.thread_id,
    input=True,
    doc="New and edited posts from the forum.",
)
IMAGES = TopicSpec(
    "forum.images.v1",
    ImageData,
    ("forum.image.uploaded",),
    key=lambda d: d.post_id or d.image_id,
    input=True,
    doc="Uploaded images, inline (data_b64) or by URL.",
)
REPORTS = TopicSpec(
    "forum.reports.v1",
    ReportData,
    ("forum.report.created",),
    key=lambda d: d.target_id,
    input=True,
    doc="Member reports against posts, images and accounts.",
)
REVIEWS = TopicSpec(
    "safety.reviews.v1",
    ReviewData,
    ("safety.review",),
    key=lambda d: d.content_id or d.decision_id,
    input=True,
    doc="Moderators' decisions on takedowns (from the console or the forum).",
)
SIGNALS = TopicSpec(
    "safety.signals.v1",
    SignalData,
    ("safety.signal",),
    key=lambda d: d.content_id,
    doc="Detector facts; internal but documented.",
)
VERDICTS = TopicSpec(
    "safety.verdicts.v1",
    VerdictData,
    ("safety.verdict",),
    key=lambda d: d.content_id,
    signed=True,
    doc="allow / hold / block for every image and post.",
)
TAKEDOWNS = TopicSpec(
    "safety.takedowns.v1",
    TakedownData,
    ("safety.takedown",),
    key=lambda d: d.target.id,
    signed=True,
    doc="hide / hold_for_review / block / restore actions.",
)
ALERTS = TopicSpec(
    "safety.alerts.v1",
    AlertData,
    ("safety.alert",),
    key=lambda d: d.dedup_key or d.alert_id,
    doc="Incidents for the pager, one per dedup key.",
)
DEADLETTER = TopicSpec(
    "safety.deadletter.v1",
    DeadLetterData,
    ("safety.deadletter",),
    key=lambda d: None,
    partitions=1,
    doc="Inputs Vigil could not read, with the reason and the original bytes.",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    POSTS,
    IMAGES,
    REPORTS,
    REVIEWS,
    SIGNALS,
    VERDICTS,
    TAKEDOWNS,
    ALERTS,
    DEADLETTER,
)
INPUT_TOPICS: tuple[TopicSpec, ...] = tuple(t for t in ALL_TOPICS if t.input)
BY_NAME: dict[str, TopicSpec] = {t.name: t for t in ALL_TOPICS}
BY_TYPE: dict[str, TopicSpec] = {ty: t for t in ALL_TOPICS for ty in t.types}
