"""Burst's pdq forwarder decodes only signals that can be pdq (`maybe_pdq`, a byte test), and
that pre-filter never drops a real pdq signal, however its JSON spells it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import agents.burst as burst
from agents.burst import carries_pdq_hash, maybe_pdq
from streams.codec import DecodeError, decode, encode
from streams.topics import SIGNALS
from tests.unit.factories import signal

HASH = "f" * 64


def wire(detector: str, **fields: Any) -> bytes:
    return encode(SIGNALS, signal(detector, **fields), source="vigil/hashing",
                  event_id=f"sig-{detector}")[1]


def pdq_with_hash(value: bytes) -> bool:
    """The reference: decode every value (what the forwarder did before the pre-filter)."""
    try:
        data = decode(SIGNALS, value).data
    except DecodeError:
        return False
    return data.detector == "pdq" and isinstance(data.evidence.get("pdq"), str)


def escaped(letter: str, upper: bool) -> str:
    code = f"{ord(letter):04x}"
    return "\\u" + (code.upper() if upper else code)


def spellings() -> list[bytes]:
    """`pdq` with each letter literal or a `\\uXXXX` escape (lower- and upper-case hex)."""
    return ["".join(forms).encode() for forms in itertools.product(
        *[(c, escaped(c, False), escaped(c, True)) for c in "pdq"])]


PDQ_SIGNALS = [
    wire("pdq", status="clear", evidence={"pdq": HASH, "quality": 90}),
    wire("pdq", status="match", distance=12, evidence={"pdq": HASH, "bank": "b"}),
    wire("pdq", status="unchecked", evidence={"pdq": HASH, "reason_kind": "other"}),
    wire("pdq", content_id="i-ünïcödé-\x01-\"q\"", evidence={"pdq": HASH}),
]
OTHER_SIGNALS = [
    wire("intake", content_type="post", content_id="p-1",
         evidence={"event_id": "e-1", "board": "b1"}),
    wire("sha256", evidence={"bank": "b"}),
    wire("md5"),
    wire("text_abuse", content_type="post", content_id="p-2", score=0.2),
    wire("nsfw_image", score=0.9),
]


@pytest.mark.parametrize("value", PDQ_SIGNALS)
def test_every_pdq_signal_passes_the_pre_filter(value: bytes) -> None:
    assert maybe_pdq(value) and carries_pdq_hash(value)


@pytest.mark.parametrize("spelling", spellings())
def test_a_pdq_signal_spelled_with_json_escapes_is_still_forwarded(spelling: bytes) -> None:
    """Valid JSON for a pdq signal need not hold the bytes `pdq` anywhere (`"\\u0070dq"` in
    its detector, evidence key, ids): the pre-filter must let it through (a filter on `pdq`
    alone would drop 26 of these 27)."""
    value = PDQ_SIGNALS[0].replace(b"pdq", spelling)
    assert (b"pdq" in value) == (spelling == b"pdq")
    assert pdq_with_hash(value)  # the decoder reads it as a pdq signal…
    assert maybe_pdq(value) and carries_pdq_hash(value)  # …and so does the forwarder


def test_the_forwarder_agrees_with_decoding_everything() -> None:
    values = [*PDQ_SIGNALS, *OTHER_SIGNALS, wire("pdq", evidence={"quality": 90}),
              wire("pdq", evidence={"pdq": 7}), b"", b"not json pdq", b'{"\\u0070dq": 1}']
    assert [carries_pdq_hash(v) for v in values] == [pdq_with_hash(v) for v in values]


def test_other_signals_are_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []

    def counting(spec: Any, value: bytes) -> Any:
        decoded.append(value)
        return decode(spec, value)

    monkeypatch.setattr(burst, "decode", counting)
    assert not any(carries_pdq_hash(v) for v in OTHER_SIGNALS)
    assert decoded == []
    assert all(carries_pdq_hash(v) for v in PDQ_SIGNALS)
    assert decoded == PDQ_SIGNALS
