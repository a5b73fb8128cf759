"""streams.codec: every input type decodes, every bad message names its problem, outputs round-trip."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from streams.codec import DecodeError, decode, encode
from streams.events import CloudEvent, ImageData, PostData, ReportData, ReviewData
from streams.signing import Signer
from streams.topics import (
    ALL_TOPICS,
    DEADLETTER,
    IMAGES,
    POSTS,
    REPORTS,
    REVIEWS,
    SIGNALS,
    TAKEDOWNS,
    VERDICTS,
    TopicSpec,
)

from .factories import (
    T0,
    envelope,
    image_event,
    post_event,
    report_event,
    review_event,
    sample_data,
    wire,
    without,
)

SIGNER = Signer("k1", b"unit-test-secret")

# ------------------------------------------------------------------------------- valid inputs


def test_post_created_decodes_to_typed_fields() -> None:
    event = decode(POSTS, wire(post_event()))
    assert isinstance(event, CloudEvent)
    assert isinstance(event.data, PostData)
    assert event.type == "forum.post.created"
    assert event.time == T0
    assert event.data.post_id == "p-1"
    assert event.data.author.id == "u-1"
    assert event.data.author.created_at is not None and event.data.author.created_at.year == 2024
    assert event.data.image_ids == ["i-1"]


def test_post_edited_is_also_a_post_type() -> None:
    raw = post_event()
    raw["type"] = "forum.post.edited"
    assert decode(POSTS, wire(raw)).type == "forum.post.edited"


def test_post_with_only_required_fields_decodes_with_defaults() -> None:
    raw = envelope("forum.post.created",
                   {"post_id": "p", "thread_id": "t", "author": {"id": "u"}, "body": ""})
    del raw["time"], raw["datacontenttype"]
    event = decode(POSTS, wire(raw))
    assert event.time is None
    assert event.data.image_ids == [] and event.data.board is None
    assert event.data.author.is_staff is False


def test_inline_image_decodes_base64_to_bytes() -> None:
    payload = bytes(range(256))
    event = decode(IMAGES, wire(image_event(data_b64=base64.b64encode(payload).decode())))
    assert isinstance(event.data, ImageData)
    assert event.data.data_b64 == payload
    assert event.data.url is None


def test_url_image_decodes() -> None:
    raw = without(image_event(url="https://img.example/a.png"), "data", "data_b64")
    event = decode(IMAGES, wire(raw))
    assert event.data.url == "https://img.example/a.png"
    assert event.data.data_b64 is None


def test_url_image_with_explicit_null_data_decodes() -> None:
    event = decode(IMAGES, wire(image_event(data_b64=None, url="https://img.example/a.png")))
    assert event.data.url == "https://img.example/a.png"


def test_report_decodes() -> None:
    event = decode(REPORTS, wire(report_event(target_type="account", target_id="u-9")))
    assert isinstance(event.data, ReportData)
    assert (event.data.target_type, event.data.target_id) == ("account", "u-9")
    assert event.data.reporter.id == "u-2"


def test_review_decodes() -> None:
    event = decode(REVIEWS, wire(review_event(outcome="restore")))
    assert isinstance(event.data, ReviewData)
    assert event.data.outcome == "restore"


def test_unknown_extra_fields_are_accepted_at_every_level() -> None:
    raw = post_event(mood="sunny", author={**post_event()["data"]["author"], "karma": 12})
    raw["forumext"] = {"anything": [1, 2]}
    event = decode(POSTS, wire(raw))
    assert event.data.post_id == "p-1"
    assert event.data.author.id == "u-1"


# ------------------------------------------------------------------------------- bad inputs


def _bad(spec: TopicSpec, value: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        decode(spec, value)
    assert str(info.value) == info.value.reason
    return info.value.reason


@pytest.mark.parametrize(
    ("spec", "value", "needles"),
    [
        pytest.param(POSTS, b"", ["empty"], id="empty-value"),
        pytest.param(POSTS, b'{"specversion": "1.0", "id": ', ["not valid JSON"], id="truncated"),
        pytest.param(POSTS, b"\xff\xfe not json", ["not valid JSON"], id="binary"),
        pytest.param(POSTS, wire([post_event()]), ["object", "array"], id="array"),  # type: ignore[arg-type]
        pytest.param(POSTS, b'"just a string"', ["object", "str"], id="string"),
        pytest.param(POSTS, wire(without(post_event(), "specversion")),
                     ["specversion"], id="missing-specversion"),
        pytest.param(POSTS, wire({**post_event(), "specversion": "0.3"}),
                     ["specversion", "0.3"], id="wrong-specversion"),
        pytest.param(POSTS, wire(without(post_event(), "id")), ["`id`"], id="missing-id"),
        pytest.param(POSTS, wire(without(post_event(), "data")), ["`data`"], id="missing-data"),
        pytest.param(POSTS, wire({**post_event(), "type": "forum.image.uploaded"}),
                     ["forum.image.uploaded", "forum.posts.v1", "$.type"], id="wrong-type"),
        pytest.param(IMAGES, wire({**image_event(), "type": "forum.post.created"}),
                     ["forum.post.created", "forum.images.v1", "$.type"], id="wrong-type-image"),
        pytest.param(POSTS, wire(without(post_event(), "data", "post_id")),
                     ["post_id", "$.data"], id="missing-post_id"),
        pytest.param(POSTS, wire(without(post_event(), "data", "body")),
                     ["body", "$.data"], id="missing-body"),
        pytest.param(POSTS, wire(without(post_event(), "data", "author", "id")),
                     ["`id`", "$.data.author"], id="missing-author.id"),
        pytest.param(POSTS, wire(post_event(post_id=17)),
                     ["str", "int", "$.data.post_id"], id="mistyped-post_id"),
        pytest.param(IMAGES, wire(without(image_event(), "data", "image_id")),
                     ["image_id", "$.data"], id="missing-image_id"),
        pytest.param(IMAGES, wire(image_event(url="https://img.example/x.png")),
                     ["data_b64", "url", "exactly one"], id="both-data_b64-and-url"),
        pytest.param(IMAGES, wire(without(image_event(), "data", "data_b64")),
                     ["data_b64", "url", "exactly one"], id="neither-data_b64-nor-url"),
        pytest.param(IMAGES, wire(image_event(data_b64=None, url=None)),
                     ["data_b64", "url", "exactly one"], id="both-null"),
        pytest.param(IMAGES, wire(image_event(data_b64="not*base64!")),
                     ["base64", "$.data.data_b64"], id="invalid-base64"),
        pytest.param(POSTS, wire({**post_event(), "time": "yesterday at noon"}),
                     ["RFC3339", "$.time"], id="time-not-a-date"),
        pytest.param(POSTS, wire({**post_event(), "time": "2025-02-30T02:13:05Z"}),
                     ["RFC3339", "$.time"], id="time-impossible-date"),
        pytest.param(POSTS, wire(post_event(created_at="2025-02-04 02:13")),
                     ["RFC3339", "$.data.created_at"], id="data-time"),
        pytest.param(REPORTS, wire(report_event(target_type="thread")),
                     ["thread", "$.data.target_type"], id="report-target_type-enum"),
        pytest.param(REPORTS, wire(without(report_event(), "data", "reporter", "id")),
                     ["`id`", "$.data.reporter"], id="missing-reporter.id"),
    ],
)
def test_bad_message_raises_decode_error_naming_the_problem(
    spec: TopicSpec, value: bytes, needles: list[str]
) -> None:
    reason = _bad(spec, value)
    for needle in needles:
        assert needle in reason, (needle, reason)
    assert "\n" not in reason  # one line: it goes into a dead-letter event and a log line


def test_time_without_offset_is_not_rfc3339() -> None:
    _bad(POSTS, wire({**post_event(), "time": "2025-02-04T02:13:05"}))


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


# ------------------------------------------------------------------------------- encode


@pytest.mark.parametrize("spec", [VERDICTS, TAKEDOWNS], ids=lambda s: s.name)
def test_encode_of_signed_topic_without_signer_raises(spec: TopicSpec) -> None:
    with pytest.raises(ValueError, match="signed"):
        encode(spec, sample_data(spec), source="vigil/test")


def test_encode_of_unsigned_topic_carries_no_signature() -> None:
    _, value = encode(SIGNALS, sample_data(SIGNALS), source="vigil/test", event_id="e", time=T0)
    parsed = json.loads(value)
    assert "signature" not in parsed and "sigkeyid" not in parsed


def test_encode_envelope_fields() -> None:
    key, value = encode(VERDICTS, sample_data(VERDICTS), source="vigil/decide",
                        event_id="vrd-1", time=T0, signer=SIGNER)
    parsed = json.loads(value)
    assert key == b"i-1"
    assert parsed["specversion"] == "1.0"
    assert parsed["id"] == "vrd-1"
    assert parsed["source"] == "vigil/decide"
    assert parsed["type"] == "safety.verdict"
    assert parsed["time"] == "2025-02-04T02:13:05Z"
    assert parsed["sigkeyid"] == "k1"
    assert len(parsed["signature"]) == 64


def test_encode_without_event_id_makes_unique_ids() -> None:
    ids = {json.loads(encode(SIGNALS, sample_data(SIGNALS), source="s")[1])["id"]
           for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("spec", [t for t in ALL_TOPICS if not t.input], ids=lambda s: s.name)
def test_output_events_carry_every_field_null_when_unknown(spec: TopicSpec) -> None:
    # consumers never need to know a default: every data field is on the wire
    data = sample_data(spec)
    parsed = json.loads(encode(spec, data, source="s", event_id="e", time=T0,
                               signer=SIGNER if spec.signed else None)[1])
    assert set(parsed["data"]) == set(type(data).__struct_fields__)
    assert parsed["datacontenttype"] == "application/json"


def test_unset_output_fields_are_written_as_null() -> None:
    from streams.events import SignalData

    data = SignalData(detector="sha256", detector_version="1", content_type="image",
                      content_id="i-1")
    parsed = json.loads(encode(SIGNALS, data, source="s", event_id="e", time=T0)[1])
    assert parsed["data"]["post_id"] is None
    assert parsed["data"]["score"] is None
    assert parsed["data"]["status"] == "clear"
    assert parsed["data"]["evidence"] == {}


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_encode_decode_round_trip(spec: TopicSpec) -> None:
    data = sample_data(spec)
    key, value = encode(spec, data, source="vigil/test", event_id="evt-rt", time=T0,
                        signer=SIGNER if spec.signed else None)
    event: CloudEvent[Any] = decode(spec, value)
    assert event.data == data
    assert event.id == "evt-rt" and event.time == T0 and event.type == spec.types[0]
    expected_key = spec.key(data)
    assert key == (expected_key.encode() if expected_key is not None else None)
    # and the decoded event encodes to the very same bytes (stable wire form)
    assert encode(spec, event.data, source="vigil/test", event_id="evt-rt", time=T0,
                  signer=SIGNER if spec.signed else None)[1] == value


def test_deadletter_key_is_none() -> None:
    key, _ = encode(DEADLETTER, sample_data(DEADLETTER), source="s")
    assert key is None


# Regression: these raised UnicodeDecodeError / RecursionError out of `decode`, which crashed the
# intake agent on one poison message instead of dead-lettering it.
def test_invalid_utf8_is_a_decode_error() -> None:
    raw = wire(post_event()).replace(b'"p-1"', b'"p-\xff\xfe"')
    with pytest.raises(DecodeError, match="invalid UTF-8"):
        decode(POSTS, raw)


def test_hostile_nesting_in_an_ignored_field_is_a_decode_error() -> None:
    event = post_event()
    text = wire(event).decode()
    hostile = text[:-2] + ', "extra": ' + "[" * 200_000 + "]" * 200_000 + "}}"
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(POSTS, hostile.encode())
