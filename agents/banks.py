"""Hash banks: CSV files of known images (DESIGN §5), loaded into an index and hot-reloaded.

A bank file has the header `signal_type,signal,bank,label,severity`. Every `*.csv` in the banks
folder is loaded; the whole set is rebuilt off to the side and swapped in one assignment, so
matching never pauses and never sees half a reload. Bank contents (hash values) are never logged:
errors name the file and line, not the value.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agents.hashes import HASH_TYPES

log = logging.getLogger(__name__)

HEADER = ("signal_type", "signal", "bank", "label", "severity")
SEVERITIES = ("critical", "high", "medium", "low")


class BankError(ValueError):
    """A bank file that cannot be loaded; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class BankEntry:
    """Where a hash came from and what it means. The hash value itself is the index key."""

    bank: str
    label: str
    severity: str


def parse_bank(text: str, *, origin: str = "<bank>") -> list[tuple[str, str, BankEntry]]:
    """Parse one bank CSV into (signal_type, hash, entry) rows; raise `BankError` on any bad row."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise BankError(f"{origin}:1: header must be {','.join(HEADER)}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise BankError(f"{origin}:{lineno}: expected {len(HEADER)} columns, got {len(row)}")
        signal_type, signal, bank, label, severity = (cell.strip() for cell in row)
        hash_type = HASH_TYPES.get(signal_type.lower())
        if hash_type is None:
            raise BankError(
                f"{origin}:{lineno}: unknown signal_type {signal_type!r} "
                f"(known: {', '.join(sorted(HASH_TYPES))})"
            )
        if not hash_type.is_valid(signal):
            raise BankError(f"{origin}:{lineno}: malformed {hash_type.name} value")
        if not bank:
            raise BankError(f"{origin}:{lineno}: empty bank name")
        if severity.lower() not in SEVERITIES:
            raise BankError(f"{origin}:{lineno}: severity must be one of {', '.join(SEVERITIES)}")
        rows.append((hash_type.name, signal.lower(), BankEntry(bank, label, severity.lower())))
    return rows


class BankIndex:
    """Exact-match index: signal type → hash → entries (several banks may list one hash)."""

    def __init__(self, rows: Iterable[tuple[str, str, BankEntry]] = ()) -> None:
        self._by_type: dict[str, dict[str, list[BankEntry]]] = {}
        for signal_type, value, entry in rows:
            self._by_type.setdefault(signal_type, {}).setdefault(value, []).append(entry)

    def lookup(self, signal_type: str, value: str) -> list[BankEntry]:
        """Entries whose hash of `signal_type` equals `value`."""
        return self._by_type.get(signal_type, {}).get(value, [])

    def sizes(self) -> Mapping[tuple[str, str], int]:
        """(bank, signal_type) → number of entries, for metrics (counts only, never values)."""
        counts: dict[tuple[str, str], int] = {}
        for signal_type, table in self._by_type.items():
            for entries in table.values():
                for entry in entries:
                    key = (entry.bank, signal_type)
                    counts[key] = counts.get(key, 0) + 1
        return counts


class BankStore:
    """The banks folder, loaded into a `BankIndex` and reloaded when its files change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = BankIndex()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None

    def _current_stamp(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = sorted(p for p in self.folder.glob("*.csv") if p.is_file())
        except OSError:
            return ()
        stamp = []
        for path in entries:
            try:
                st = path.stat()
            except OSError:
                continue
            stamp.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def reload_if_changed(self) -> bool:
        """Reload when any bank file was added, removed or changed; True if it reloaded.

        A file with an error is skipped (and logged by name) while the others load, so one bad
        drop-in never disables every bank.
        """
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False
        rows: list[tuple[str, str, BankEntry]] = []
        for name, _, _ in stamp:
            path = self.folder / name
            try:
                rows.extend(parse_bank(path.read_text(encoding="utf-8"), origin=name))
            except (OSError, UnicodeDecodeError, BankError) as exc:
                log.error("bank file skipped: %s", exc)
        self.index = BankIndex(rows)  # one assignment: readers see the old or the new index
        self._stamp = stamp
        return True


def import_bank(source: Path, folder: Path) -> int:
    """Validate `source` and copy it into the banks folder atomically; return its row count."""
    text = source.read_text(encoding="utf-8")
    rows = parse_bank(text, origin=source.name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (source.stem + ".csv")
    tmp = folder / f".{target.name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)  # the hot reload sees the whole file or none of it
    return len(rows)
