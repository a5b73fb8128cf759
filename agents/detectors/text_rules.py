"""Rules layer for text: per-board term lists and regexes that force a `text_abuse` match.

What a bag-of-words model misses — a board's own slurs, doxxing patterns, non-English abuse,
spellings it never saw — moderators add here without retraining. The file (VIGIL_TEXT_RULES,
TOML) is hot-reloaded; a broken edit is refused with the reason and the previous rules stay.

```toml
version = "2025-02-04"            # goes into the evidence of every rule match
[[rule]]
id = "self-harm-incitement"       # named in the evidence (terms themselves are not echoed)
boards = ["*"]                    # "*" = every board (the default); else board names
terms = ["kys", "kill yourself"]  # whole words/phrases, matched on the normalised text
patterns = ['\\bk+\\s*y+\\s*s+\\b'] # Python regexes (search), on the normalised text
```

Matching runs on `models.text.normalize(body)` (NFKC, invisible characters removed, lower
case), so terms are written in lower case and full-width or zero-width tricks do not evade them.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
ALL_BOARDS = "*"


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class TextRule:
    """One rule: where it applies and the one compiled regex of its terms and patterns."""

    id: str
    boards: frozenset[str]
    regex: re.Pattern[str]

    def applies_to(self, board: str | None) -> bool:
        """Does this rule apply to posts on `board`?"""
        return ALL_BOARDS in self.boards or (board is not None and board in self.boards)


@dataclass(frozen=True)
class TextRules:
    """A parsed rules file (immutable: the store swaps it whole on reload)."""

    version: str = "none"
    rules: tuple[TextRule, ...] = field(default_factory=tuple)

    def match(self, board: str | None, normalized: str) -> str | None:
        """Id of the first rule of `board` that matches `normalized` text, or None."""
        for rule in self.rules:
            if rule.applies_to(board) and rule.regex.search(normalized):
                return rule.id
        return None


def parse_rules(text: str, *, source: str = "<rules>") -> TextRules:
    """Parse and compile a rules TOML document; `RulesError` with the reason."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    rules = []
    for index, entry in enumerate(raw.get("rule", [])):
        where = f"{source}: rule[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise RulesError(f"{where}: needs a string `id`")
        terms, patterns = entry.get("terms", []), entry.get("patterns", [])
        boards = entry.get("boards", [ALL_BOARDS])
        for name, value in (("terms", terms), ("patterns", patterns), ("boards", boards)):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise RulesError(f"{where} ({entry['id']}): `{name}` must be a list of strings")
        if not terms and not patterns:
            raise RulesError(f"{where} ({entry['id']}): needs `terms` or `patterns`")
        parts = [r"(?<!\w)" + re.escape(t.lower()) + r"(?!\w)" for t in terms]
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise RulesError(f"{where} ({entry['id']}): bad pattern {pattern!r}: {exc}") \
                    from None
            parts.append(f"(?:{pattern})")
        rules.append(TextRule(entry["id"], frozenset(boards), re.compile("|".join(parts))))
    return TextRules(version=str(raw.get("version", "unversioned")), rules=tuple(rules))


class RulesStore:
    """The current rules of a file, re-read when it changes (`reload_if_changed` on a timer)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rules = TextRules()
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            if not path.is_file():
                raise RulesError(f"{path}: text rules file not found (VIGIL_TEXT_RULES)")
            self.reload_if_changed(strict=True)

    def __call__(self) -> TextRules:
        return self.rules

    def reload_if_changed(self, *, strict: bool = False) -> bool:
        """Re-read the file if its mtime/size changed; a bad edit keeps the old rules (logged)."""
        if self.path is None:
            return False
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return False
            rules = parse_rules(self.path.read_text(encoding="utf-8"), source=str(self.path))
        except (OSError, UnicodeDecodeError, RulesError) as exc:
            if strict:
                raise RulesError(str(exc)) from None
            log.error("text rules not reloaded, keeping version %s: %s", self.rules.version, exc)
            return False
        self.rules, self._stamp = rules, stamp
        log.warning("text rules %s loaded from %s: %d rules", rules.version, self.path,
                    len(rules.rules))
        return True
