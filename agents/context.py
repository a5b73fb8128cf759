"""What the composition hands every agent: the faust app, topics, signer, metrics, settings.

Agents sit below the composition (`vigil/`) in the import layers, so they do not import its
settings class; `AgentSettings` is the part of it they read, as a protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import faust
from faust.types import EventT

from agents.metrics import Metrics
from streams.codec import DecodeError, decode
from streams.events import CloudEvent
from streams.signing import Signer
from streams.topics import TopicSpec


class AgentSettings(Protocol):
    """Settings agents read (the composition's `Settings` satisfies it)."""

    @property
    def topic_prefix(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def batch_within(self) -> float: ...
    @property
    def banks_path(self) -> Path: ...
    @property
    def banks_reload_seconds(self) -> float: ...
    @property
    def decide_deadline_ms(self) -> int: ...


@dataclass
class AgentContext:
    """Shared, per-process wiring for agents; built once by `vigil.app.build_app`."""

    app: faust.App
    settings: AgentSettings
    metrics: Metrics
    signer: Signer | None  # only roles in `agents.SIGNING_ROLES` get one
    _topics: dict[str, faust.TopicT] = field(default_factory=dict)

    def topic(self, spec: TopicSpec) -> faust.TopicT:
        """The faust topic for `spec` (raw bytes in and out: `streams.codec` does the rest)."""
        name = spec.full_name(self.settings.topic_prefix)
        if name not in self._topics:
            self._topics[name] = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=spec.partitions,
            )
        return self._topics[name]

    async def send(self, spec: TopicSpec, key: bytes | None, value: bytes) -> None:
        """Queue one record for `spec` (faust's `send` returns once it is queued, not delivered).

        At-least-once still holds: faust flushes the producer before it commits the offsets of
        the inputs that caused these records (bench/passthrough.py measures the send styles).
        """
        await self.topic(spec).send(key=key, value=value)


class Agent(Protocol):
    """An agent module: a name and a function that registers its faust agents/timers."""

    NAME: str

    def register(self, ctx: AgentContext) -> None: ...


Registrar = Callable[[AgentContext], Any]


def decode_events(
    spec: TopicSpec, events: Sequence[EventT]
) -> Iterator[tuple[EventT, CloudEvent[Any] | None, DecodeError | None]]:
    """Decode a batch of raw faust events of `spec`: (event, decoded or None, error or None)."""
    for event in events:
        try:
            yield event, decode(spec, event.value), None
        except DecodeError as exc:
            yield event, None, exc
