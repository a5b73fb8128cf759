"""Bytes ⇄ typed events for every contract topic, with reasons a human can act on.

`decode` is the one place where a Kafka message value becomes a typed event: invalid JSON, a
non-CloudEvent, a wrong `type` for the topic or a missing/mistyped field all raise `DecodeError`
with a one-line reason naming the field (``Object missing required field `post_id` - at
`$.data```). Callers dead-letter on it (see `streams.deadletter`). `encode` builds output events,
signing `data` on signed topics.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import cache
from typing import Any

import msgspec

from streams.events import SPECVERSION, CloudEvent, Data
from streams.signing import Signer
from streams.topics import TopicSpec


class DecodeError(ValueError):
    """A message value that is not a valid event for its topic; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@cache
def _decoder(model: type[Data]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(CloudEvent[model])  # type: ignore[valid-type]


_ENCODER = msgspec.json.Encoder()


def decode(spec: TopicSpec, value: bytes | None) -> CloudEvent[Any]:
    """Decode and validate one message value of topic `spec`; raise `DecodeError` if invalid."""
    if not value:
        raise DecodeError("empty message value")
    try:
        event = _decoder(spec.model).decode(value)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise DecodeError(_reason(exc)) from None
    except UnicodeDecodeError as exc:  # msgspec < 0.23 raises it for invalid UTF-8 in a string
        raise DecodeError(f"not valid JSON: invalid UTF-8 at byte {exc.start}") from None
    except RecursionError:  # hostile nesting, e.g. 200 000 `[` in an ignored extra field
        raise DecodeError("not valid JSON: nested too deeply") from None
    if event.type not in spec.types:
        raise DecodeError(
            f"event type {event.type!r} does not belong on {spec.name} "
            f"(expected {', '.join(spec.types)}) - at `$.type`"
        )
    validate = getattr(event.data, "validate", None)
    if validate is not None:
        try:
            validate()
        except msgspec.ValidationError as exc:
            raise DecodeError(str(exc)) from None
    return event


def _reason(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return text
    if "UTF-8" in text:  # msgspec >= 0.23 (older ones raise UnicodeDecodeError: below)
        return "not valid JSON: invalid UTF-8"
    return f"not valid JSON: {text}"


def encode(
    spec: TopicSpec,
    data: Data,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    signer: Signer | None = None,
) -> tuple[bytes | None, bytes]:
    """Build the (key, value) of an output event of topic `spec` around `data`.

    Signed topics require a `signer`: an unsigned takedown would be worthless to a forum.
    `event_id` should be deterministic (e.g. derived from `decision_id`) so a redelivered input
    yields the very same output event, which consumers dedup by `id`.
    """
    sigkeyid = signature = None
    if spec.signed:
        if signer is None:
            raise ValueError(f"{spec.name} events must be signed")
        signature = signer.sign(msgspec.to_builtins(data))
        sigkeyid = signer.key_id
    event = CloudEvent(
        specversion=SPECVERSION,
        id=event_id or f"evt-{uuid.uuid4().hex}",
        source=source,
        type=spec.types[0],
        time=time or datetime.now(timezone.utc),
        datacontenttype="application/json",
        data=data,
        sigkeyid=sigkeyid,
        signature=signature,
    )
    key = spec.key(data)
    return (key.encode() if key is not None else None), _ENCODER.encode(event)


def to_builtins(event: CloudEvent[Any]) -> dict[str, Any]:
    """The event as plain JSON types (for HTTP answers and the CLI)."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    return result
