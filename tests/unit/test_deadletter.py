"""streams.deadletter: nothing of a bad message is lost, and a redelivery gives the same id."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from streams.codec import decode
from streams.deadletter import dead_letter
from streams.topics import DEADLETTER

ORIGINAL = b"\xff\xfe\x00{not json at all \xe9\n\r" + bytes(range(256))


def _dead_letter(**overrides: Any) -> tuple[bytes | None, bytes]:
    args: dict[str, Any] = dict(topic="forum.posts.v1", partition=2, offset=41,
                                reason="not valid JSON: truncated", original=ORIGINAL,
                                key=b"\x00thread")
    args.update(overrides)
    return dead_letter(**args)


def test_original_bytes_survive_exactly() -> None:
    key, value = _dead_letter()
    assert key is None  # the dead-letter topic has no key (one partition, arrival order)
    parsed = json.loads(value)
    assert parsed["type"] == "safety.deadletter"
    assert base64.b64decode(parsed["data"]["original"], validate=True) == ORIGINAL
    event = decode(DEADLETTER, value)
    assert event.data.original == ORIGINAL
    assert event.data.key == b"\x00thread"
    assert (event.data.topic, event.data.partition, event.data.offset) == ("forum.posts.v1", 2, 41)
    assert event.data.reason == "not valid JSON: truncated"


def test_missing_original_is_empty_bytes() -> None:
    event = decode(DEADLETTER, _dead_letter(original=None, key=None)[1])
    assert event.data.original == b""
    assert event.data.key is None


def _id(**overrides: Any) -> str:
    return str(json.loads(_dead_letter(**overrides)[1])["id"])


def test_id_is_deterministic_for_the_same_position() -> None:
    # a redelivered message gives the same id even if the reason text changed in between
    assert _id() == _id()
    assert _id() == _id(reason="another reason", original=b"x")
    assert _id().startswith("dlq-")


@pytest.mark.parametrize(
    "other",
    [{"offset": 42}, {"partition": 3}, {"topic": "forum.images.v1"}],
    ids=["offset", "partition", "topic"],
)
def test_id_differs_for_another_position(other: dict[str, Any]) -> None:
    assert _id(**other) != _id()


def test_position_parts_cannot_collide_by_concatenation() -> None:
    # "t/1" + "1" vs "t/11": the separator keeps topic, partition and offset apart
    assert _id(topic="t", partition=1, offset=11) != _id(topic="t", partition=11, offset=1)
