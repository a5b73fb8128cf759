"""JSON Schema of every contract topic, generated from the msgspec models in `streams.events`.

Why generated and not written by hand: the models are the one source of truth for the wire
contract. `streams.codec.decode` validates with them, so a hand-written schema would be a second
copy that drifts the first time someone adds a field. Forums and consumers in other languages get
`streams/schemas/<topic>.json` (shipped as package data) to validate what they produce or read;
the unit tests run `--check` so a model change without regenerated schemas fails.

The generator adds, after `msgspec.json.schema`, the contract rules that live in code rather
than in field types, so the schema accepts what `decode` accepts as closely as JSON Schema can:
- the event `type` is one of the topic's types (`TopicSpec.types`, checked by `decode`);
- an image carries exactly one of `data_b64` / `url` (`ImageData.validate`), as a `oneOf`;
- events on signed topics carry `sigkeyid` and a lowercase hex `signature` (`streams.signing`);
- payloads Vigil emits write every field, `null` when unknown (structs with `omit_defaults`
  off), so in their schemas every property is required: consumers can rely on it;
- docstring indentation is removed from descriptions (readable, and stable across Pythons).

Run `python -m streams.jsonschema` to (re)write the files, `python -m streams.jsonschema --check`
to exit 1 naming every stale, missing or orphaned file. Output is deterministic: sorted keys,
two-space indent, UTF-8, one trailing newline.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from streams.events import CloudEvent, ImageData
from streams.topics import ALL_TOPICS, TopicSpec

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"



def _image_one_of() -> list[dict[str, Any]]:
    """`ImageData.validate` as JSON Schema: a branch holds when its field is present and not
    null, and exactly one branch may hold (neither or both is rejected, like `decode`)."""
    return [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("data_b64", "url")
    ]


def schema_for(spec: TopicSpec) -> dict[str, Any]:
    """The JSON Schema of one event (CloudEvent envelope + typed `data`) on topic `spec`."""
    generated = msgspec.json.schema(CloudEvent[spec.model])  # type: ignore[name-defined]
    defs: dict[str, Any] = generated["$defs"]
    root_ref: str = generated["$ref"]
    envelope = defs[root_ref.rsplit("/", 1)[-1]]
    envelope["properties"]["type"] = {"enum": list(spec.types)}
    if spec.signed:
        envelope["required"] = [*envelope["required"], "sigkeyid", "signature"]
        envelope["properties"]["sigkeyid"] = {"type": "string", "minLength": 1}
        envelope["properties"]["signature"] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    for cls in _structs(spec.model):
        definition = defs.get(cls.__name__)
        if definition is not None and not cls.__struct_config__.omit_defaults:
            definition["required"] = sorted(definition.get("properties", {}))
    image = defs.get(ImageData.__name__)
    if image is not None:
        image["oneOf"] = _image_one_of()
    _clean_descriptions(generated)
    types = ", ".join(spec.types)
    return {
        "$schema": DIALECT,
        "$id": f"{spec.name}.json",
        "title": f"{spec.name} event",
        "description": f"{spec.doc} CloudEvents 1.0 (structured JSON) of type {types}.".strip(),
        "$ref": root_ref,
        "$defs": defs,
    }


def _structs(root: type[msgspec.Struct]) -> Iterator[type[msgspec.Struct]]:
    """`root` and every struct type reachable through its fields (each once)."""
    seen: set[type] = set()
    todo: list[Any] = [root]
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            if tp in seen:
                continue
            seen.add(tp)
            yield tp
            todo.extend(field.type for field in msgspec.structs.fields(tp))
        else:
            todo.extend(typing.get_args(tp))


def _clean_descriptions(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = inspect.cleandoc(value)
            else:
                _clean_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _clean_descriptions(item)


def render(spec: TopicSpec) -> str:
    """The file content for `spec`: pretty, sorted keys, trailing newline (deterministic)."""
    return json.dumps(schema_for(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(topics: Sequence[TopicSpec] = ALL_TOPICS) -> dict[str, str]:
    """File name → content for every topic."""
    return {f"{spec.name}.json": render(spec) for spec in topics}


def check(folder: Path = SCHEMA_DIR, topics: Sequence[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Names of files in `folder` that are stale, missing, or not generated by any topic."""
    expected = generate(topics)
    stale = []
    for name, text in sorted(expected.items()):
        path = folder / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(name)
    if folder.is_dir():
        stale.extend(sorted(p.name for p in folder.glob("*.json") if p.name not in expected))
    return stale


def write(folder: Path = SCHEMA_DIR, topics: Sequence[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Write every schema into `folder`, remove orphaned ones; return the names that changed."""
    expected = generate(topics)
    changed = check(folder, topics)
    folder.mkdir(parents=True, exist_ok=True)
    for name in changed:
        path = folder / name
        if name in expected:
            path.write_text(expected[name], encoding="utf-8")
        else:  # the folder holds generated files only: a schema of a removed topic goes
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the schemas, or with `--check` report stale ones (exit 1)."""
    parser = argparse.ArgumentParser(
        prog="python -m streams.jsonschema", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="schema folder")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.dir)
        for name in stale:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        if stale:
            print("regenerate with: python -m streams.jsonschema", file=sys.stderr)
            return 1
        return 0
    for name in write(args.dir):
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
