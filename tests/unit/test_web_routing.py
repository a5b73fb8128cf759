"""vigil.web: splitting an ingest body into events and routing each to its input topic."""

from __future__ import annotations

import json

import pytest

from streams.codec import DecodeError
from streams.topics import IMAGES, POSTS, REPORTS, REVIEWS
from vigil.web import IngestError, route, split_events

from .factories import image_event, post_event, report_event, review_event, wire, without


def test_single_event_is_one_document() -> None:
    body = wire(post_event())
    assert split_events(body) == ([body], False)


def test_array_is_split_into_its_documents() -> None:
    events = [post_event(), image_event(), report_event()]
    raws, was_array = split_events(b"  \n" + json.dumps(events, indent=2).encode())
    assert was_array is True
    assert [json.loads(r) for r in raws] == events


def test_empty_array_gives_no_events() -> None:
    assert split_events(b"[]") == ([], True)


@pytest.mark.parametrize("body", [b'[{"a": 1}', b"[1, 2", b"[}"])
def test_bad_json_array_is_a_400(body: bytes) -> None:
    with pytest.raises(IngestError) as info:
        split_events(body)
    assert info.value.status == 400
    assert "not valid JSON" in info.value.body["error"]


@pytest.mark.parametrize(
    ("event", "spec"),
    [
        (post_event(), POSTS),
        ({**post_event(), "type": "forum.post.edited"}, POSTS),
        (image_event(), IMAGES),
        (report_event(), REPORTS),
        (review_event(), REVIEWS),
    ],
    ids=["post", "post-edited", "image", "report", "review"],
)
def test_route_picks_the_topic_by_type(event: dict[str, object], spec: object) -> None:
    routed_spec, decoded = route(wire(event))  # type: ignore[arg-type]
    assert routed_spec is spec
    assert decoded.id == event["id"] and decoded.type == event["type"]


def test_route_each_element_of_an_array() -> None:
    raws, _ = split_events(wire([post_event(), image_event()]))  # type: ignore[arg-type]
    assert [route(r)[0] for r in raws] == [POSTS, IMAGES]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(b'{"type": "forum.post.created", ', "not valid JSON", id="bad-json"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"[1]", "object", id="array-not-event"),
        pytest.param(wire(without(post_event(), "type")), "type", id="no-type"),
        pytest.param(wire({**post_event(), "type": 7}), "type", id="type-not-string"),
        pytest.param(wire({**post_event(), "type": "forum.poll.created"}),
                     "unknown event type 'forum.poll.created'", id="unknown-type"),
        pytest.param(wire({**post_event(), "type": "safety.verdict"}),
                     "unknown event type 'safety.verdict'", id="output-verdict"),
        pytest.param(wire({**post_event(), "type": "safety.takedown"}),
                     "safety.takedown", id="output-takedown"),
        pytest.param(wire({**post_event(), "type": "safety.signal"}),
                     "safety.signal", id="output-signal"),
        pytest.param(wire(without(post_event(), "data", "post_id")), "post_id",
                     id="known-type-invalid-data"),
    ],
)
def test_route_rejects_with_a_reason(body: bytes, needle: str) -> None:
    with pytest.raises(DecodeError) as info:
        route(body)
    assert needle in info.value.reason


def test_broker_memory_warning_only_past_the_bound() -> None:
    from vigil.web import broker_memory_warning

    assert broker_memory_warning(100 * 2**20, 2048) is None
    assert broker_memory_warning(2048 * 2**20, 2048) is None
    message = broker_memory_warning(3000 * 2**20, 2048)
    assert message is not None
    assert "3000 MiB" in message and "VIGIL_EMBEDDED_BROKER_MAX_RSS_MB=2048" in message
