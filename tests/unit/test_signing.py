"""streams.signing: what `encode` signs is what a forum can verify, and nothing else is."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from streams.codec import encode
from streams.events import Reason, TakedownData, Target, VerdictData
from streams.signing import Signer, canonical_json, sign, verify
from streams.topics import TAKEDOWNS, VERDICTS, TopicSpec

from .factories import T0, sample_data

SECRET_1 = b"first-secret"
SECRET_2 = b"second-secret"
KEYS = {"k1": SECRET_1, "k2": SECRET_2}


def signed_event(spec: TopicSpec = VERDICTS, key_id: str = "k1", data: Any = None) -> dict[str, Any]:
    signer = Signer(key_id, KEYS[key_id])
    _, value = encode(spec, data if data is not None else sample_data(spec),
                      source="vigil/test", event_id="e-1", time=T0, signer=signer)
    parsed: dict[str, Any] = json.loads(value)
    return parsed


@pytest.mark.parametrize("spec", [VERDICTS, TAKEDOWNS], ids=lambda s: s.name)
def test_round_trip_through_encode(spec: TopicSpec) -> None:
    signer = Signer("k1", SECRET_1)
    _, value = encode(spec, sample_data(spec), source="s", time=T0, signer=signer)
    assert verify(value, {"k1": SECRET_1}) is True  # raw bytes
    assert verify(value.decode(), {"k1": SECRET_1}) is True  # raw text
    assert verify(json.loads(value), {"k1": SECRET_1.decode()}) is True  # parsed, str secret


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        node = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        node = event
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def _flip_signature(event: dict[str, Any]) -> None:
    sig = event["signature"]
    event["signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]


VERDICT_FIELDS = sorted(sample_data(VERDICTS).__struct_fields__)


@pytest.mark.parametrize("field", VERDICT_FIELDS)
def test_changing_any_data_field_breaks_the_signature(field: str) -> None:
    event = signed_event()
    assert field in event["data"], "sample must populate every field"
    original = event["data"][field]
    if isinstance(original, str):
        event["data"][field] = original + "x"
    elif isinstance(original, (int, float)):
        event["data"][field] = original + 1
    elif isinstance(original, list):
        event["data"][field] = original + [original[0]]
    else:  # pragma: no cover - the sample has no other types
        raise AssertionError(type(original))
    assert verify(event, KEYS) is False


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set(("data", "reasons", 0, "bank"), "other"), id="nested-field"),
        pytest.param(_set(("data", "extra"), "added"), id="added-field"),
        pytest.param(_delete(("data", "post_id")), id="removed-field"),
        pytest.param(_set(("data",), {}), id="emptied-data"),
        pytest.param(_delete(("data",)), id="no-data"),
        pytest.param(_set(("sigkeyid",), "k2"), id="other-known-key-id"),
        pytest.param(_delete(("sigkeyid",)), id="no-key-id"),
        pytest.param(_flip_signature, id="signature-one-char"),
        pytest.param(_set(("signature",), ""), id="signature-empty"),
        pytest.param(_delete(("signature",)), id="no-signature"),
        pytest.param(_set(("signature",), None), id="signature-null"),
    ],
)
def test_tampering_fails(mutate: Callable[[dict[str, Any]], None]) -> None:
    event = signed_event()
    assert verify(event, KEYS) is True
    mutate(event)
    assert verify(event, KEYS) is False


def test_envelope_fields_are_not_signed() -> None:
    # Only `data` is signed (DESIGN §4); the id/time can be rewritten by a relay without harm.
    event = signed_event()
    event["id"] = "another-id"
    assert verify(event, KEYS) is True


@pytest.mark.parametrize("garbage", [b"", b"not json", b"[1, 2]", "null", b'"str"'])
def test_non_events_do_not_verify(garbage: bytes | str) -> None:
    assert verify(garbage, KEYS) is False


def test_unknown_key_id_fails() -> None:
    event = signed_event(key_id="k1")
    assert verify(event, {"k2": SECRET_2}) is False
    assert verify(event, {}) is False


def test_same_key_id_with_other_secret_fails() -> None:
    assert verify(signed_event(key_id="k1"), {"k1": b"not-the-secret"}) is False


def test_several_key_ids_are_accepted_for_rotation() -> None:
    old, new = signed_event(key_id="k1"), signed_event(key_id="k2")
    assert old["signature"] != new["signature"]
    assert verify(old, KEYS) is True
    assert verify(new, KEYS) is True
    # after the old key is retired, only new events verify
    assert verify(old, {"k2": SECRET_2}) is False
    assert verify(new, {"k2": SECRET_2}) is True


NON_ASCII = "café ☕ 🚫 — ünïcödé \u2028 \"quoted\" \\ back"


def _non_ascii_takedown() -> TakedownData:
    return TakedownData(
        decision_id="dec-é",
        action="hold_for_review",
        target=Target(type="post", id="p-日本", thread_id="fil-café"),
        reasons=[Reason(detector="text_abuse", signal=NON_ASCII, score=0.875, label="🚫")],
        severity="high",
        decided_at=T0,
    )


def test_non_ascii_data_verifies_and_canonical_bytes_are_exact() -> None:
    event = signed_event(TAKEDOWNS, data=_non_ascii_takedown())
    assert verify(event, KEYS) is True
    expected = json.dumps(event["data"], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()
    assert canonical_json(event["data"]) == expected
    assert "café ☕ 🚫".encode() in expected  # unescaped UTF-8, not \u00e9
    assert b"\\u00e9" not in expected
    assert b", " not in expected.replace(NON_ASCII.encode(), b"")  # no insignificant whitespace


def test_canonical_json_sorts_nested_keys() -> None:
    assert canonical_json({"b": {"z": 1, "a": [True, None]}, "a": "é"}) == (
        '{"a":"é","b":{"a":[true,null],"z":1}}'.encode()
    )


def test_independent_hmac_matches_emitted_signature() -> None:
    for spec, data in ((VERDICTS, sample_data(VERDICTS)), (TAKEDOWNS, _non_ascii_takedown())):
        event = signed_event(spec, data=data)
        message = json.dumps(event["data"], sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False).encode("utf-8")
        expected = hmac.new(KEYS[event["sigkeyid"]], message, hashlib.sha256).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", event["signature"])
        assert event["signature"] == expected
        assert sign(event["data"], SECRET_1) == expected


def test_signature_does_not_depend_on_key_order_on_the_wire() -> None:
    event = signed_event()
    reordered = dict(reversed(list(event["data"].items())))
    assert verify({**event, "data": reordered}, KEYS) is True


def test_signed_data_is_the_data_on_the_wire() -> None:
    # `encode` signs msgspec.to_builtins(data); a verifier signs the parsed wire JSON. They must
    # agree for every JSON type the models use: floats, ints, datetimes, nested lists, unicode.
    data = VerdictData(content_type="image", content_id="i", verdict="hold", decision_id="d",
                       reasons=[Reason(detector="nsfw", signal="s", score=1 / 3)],
                       latency_ms=1e16)
    event = signed_event(VERDICTS, data=copy.deepcopy(data))
    assert verify(event, KEYS) is True


def test_signer_needs_key_and_secret_and_hides_the_secret() -> None:
    with pytest.raises(ValueError):
        Signer("", b"x")
    with pytest.raises(ValueError):
        Signer("k", b"")
    signer = Signer("k1", SECRET_1)
    assert SECRET_1.decode() not in repr(signer) and "k1" in repr(signer)


def test_non_ascii_signature_is_rejected_not_raised() -> None:
    event = signed_event()
    event["signature"] = "é" * 64
    assert verify(event, KEYS) is False
