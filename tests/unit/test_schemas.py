"""streams.jsonschema: committed schemas are current, and agree with the decoder on samples."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streams import jsonschema as schemas
from streams.codec import decode, encode
from streams.signing import Signer
from streams.topics import ALL_TOPICS, BY_NAME, IMAGES, INPUT_TOPICS, TopicSpec

from .factories import INPUT_EVENTS, T0, sample_data, without

SIGNER = Signer("k1", b"secret")


def test_committed_schemas_are_current() -> None:
    stale = schemas.check()
    assert stale == [], f"regenerate with `python -m streams.jsonschema`: {stale}"


def test_one_schema_file_per_topic() -> None:
    names = sorted(p.name for p in schemas.SCHEMA_DIR.glob("*.json"))
    assert names == sorted(f"{t.name}.json" for t in ALL_TOPICS)


def test_generation_is_deterministic() -> None:
    assert schemas.generate() == schemas.generate()
    text = schemas.render(IMAGES)
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text)["title"].startswith(IMAGES.name)
    assert IMAGES.doc in json.loads(text)["description"]


def test_check_names_stale_missing_and_orphaned_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert set(schemas.write(tmp_path)) == {f"{t.name}.json" for t in ALL_TOPICS}
    assert schemas.check(tmp_path) == []
    assert schemas.write(tmp_path) == []  # nothing to rewrite
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 0

    (tmp_path / "forum.posts.v1.json").write_text("{}\n")
    (tmp_path / "safety.alerts.v1.json").unlink()
    (tmp_path / "forum.old.v0.json").write_text("{}\n")
    assert schemas.check(tmp_path) == [
        "forum.posts.v1.json", "safety.alerts.v1.json", "forum.old.v0.json"]
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in ("forum.posts.v1.json", "safety.alerts.v1.json", "forum.old.v0.json"):
        assert name in err

    assert schemas.main(["--dir", str(tmp_path)]) == 0
    assert schemas.check(tmp_path) == []
    assert not (tmp_path / "forum.old.v0.json").exists()


def load(spec: TopicSpec) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((schemas.SCHEMA_DIR / f"{spec.name}.json").read_text())
    return result


def validator(spec: TopicSpec) -> jsonschema.protocols.Validator:
    return _validator(spec.name)


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    """The committed schema's validator (checked against its meta-schema once)."""
    schema = load(BY_NAME[name])
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def sample_event(spec: TopicSpec) -> dict[str, Any]:
    """A valid wire event of `spec` as parsed JSON: a forum's input or Vigil's own output."""
    if spec.name in INPUT_EVENTS:
        event: dict[str, Any] = INPUT_EVENTS[spec.name]()
    else:
        _, value = encode(spec, sample_data(spec), source="vigil/test", event_id="e", time=T0,
                          signer=SIGNER if spec.signed else None)
        event = json.loads(value)
    decode(spec, json.dumps(event).encode())  # the decoder agrees it is valid
    return event


def errors(spec: TopicSpec, event: Any) -> list[str]:
    return [e.message for e in validator(spec).iter_errors(event)]


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_schema_accepts_a_valid_event(spec: TopicSpec) -> None:
    assert errors(spec, sample_event(spec)) == []


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_schema_rejects_an_event_missing_a_required_data_field(spec: TopicSpec) -> None:
    event = sample_event(spec)
    data_def = load(spec)["$defs"][spec.model.__name__]
    for field in data_def["required"]:
        broken = without(event, "data", field)
        assert errors(spec, broken), f"{spec.name} accepted an event without data.{field}"


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
@pytest.mark.parametrize("field", ["specversion", "id", "source", "type", "data"])
def test_schema_rejects_an_event_missing_an_envelope_field(spec: TopicSpec, field: str) -> None:
    assert errors(spec, without(sample_event(spec), field))


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_schema_rejects_a_type_of_another_topic(spec: TopicSpec) -> None:
    event = sample_event(spec)
    event["type"] = "forum.post.created" if spec.name != "forum.posts.v1" else "safety.verdict"
    assert errors(spec, event)


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_schema_accepts_unknown_extra_fields(spec: TopicSpec) -> None:
    event = sample_event(spec)
    event["x-forum"] = 1
    event["data"]["x-forum"] = {"a": [1]}
    assert errors(spec, event) == []


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({"data_b64": "aGk="}, True),
        ({"url": "https://img.example/a.png"}, True),
        ({"data_b64": None, "url": "https://img.example/a.png"}, True),
        ({"data_b64": "aGk=", "url": None}, True),
        ({"data_b64": "aGk=", "url": "https://img.example/a.png"}, False),
        ({}, False),
        ({"data_b64": None, "url": None}, False),
    ],
    ids=["data", "url", "null-data", "null-url", "both", "neither", "both-null"],
)
def test_image_schema_requires_exactly_one_of_data_b64_and_url(
    data: dict[str, Any], valid: bool
) -> None:
    event = without(without(INPUT_EVENTS[IMAGES.name](), "data", "data_b64"), "data", "author")
    event["data"].update(data, author={"id": "u"})
    assert (errors(IMAGES, event) == []) is valid
    # and the decoder agrees
    try:
        decode(IMAGES, json.dumps(event).encode())
        decoded = True
    except ValueError:
        decoded = False
    assert decoded is valid


@pytest.mark.parametrize("spec", [t for t in ALL_TOPICS if t.signed], ids=lambda s: s.name)
def test_signed_topics_require_a_signature(spec: TopicSpec) -> None:
    event = sample_event(spec)
    assert errors(spec, without(event, "signature"))
    assert errors(spec, without(event, "sigkeyid"))
    bad = copy.deepcopy(event)
    bad["signature"] = bad["signature"].upper()
    assert errors(spec, bad)


def test_input_topics_do_not_require_signatures() -> None:
    for spec in INPUT_TOPICS:
        assert "signature" not in load(spec)["$defs"][
            load(spec)["$ref"].rsplit("/", 1)[-1]]["required"]


@pytest.mark.parametrize("spec", [t for t in ALL_TOPICS if not t.input], ids=lambda s: s.name)
def test_output_schemas_require_every_data_field(spec: TopicSpec) -> None:
    data_def = load(spec)["$defs"][spec.model.__name__]
    assert sorted(data_def["required"]) == sorted(data_def["properties"])
    assert sorted(data_def["properties"]) == sorted(spec.model.__struct_fields__)


@pytest.mark.parametrize("spec", INPUT_TOPICS, ids=lambda s: s.name)
def test_input_schemas_keep_optional_fields_optional(spec: TopicSpec) -> None:
    data_def = load(spec)["$defs"][spec.model.__name__]
    assert set(data_def["required"]) < set(data_def["properties"])
