"""Hash banks: CSV files of known images (DESIGN §5), loaded into an index and hot-reloaded.

A bank file has the header `signal_type,signal,bank,label,severity`. Every `*.csv` in the banks
folder is loaded; the whole set is rebuilt off to the side and swapped in one assignment, so
matching never pauses and never sees half a reload. Bank contents (hash values) are never logged:
errors name the file and line, not the value.

Per-bank options live in an optional sidecar, `banks.toml` in the same folder (the CSV header
stays exactly DESIGN §5's), keyed by the `bank` column's name:

```toml
[banks.ncmec-sample]
enabled = true          # false: loaded nowhere, matches nothing (default true)
pdq_threshold = 31      # this bank's PDQ match distance (default 31, at most 63)
kind = "positive"       # "positive" (default): a match is a finding
                        # "negative": known false positives; a PDQ match here suppresses the
                        #             positive PDQ matches of the same image
                        # "tombstone": removes its rows' hashes from bank `removes`
removes = "other-bank"  # tombstone banks only
```

A tombstone file is an ordinary bank CSV whose `bank` column names a bank configured
`kind = "tombstone"` with `removes = "<bank>"`: its rows delete those hashes from that bank at
the next reload, without editing (or even having) the partner's original file.

PDQ rows go into a multi-index hash (`agents.bank_index`): exact recall at the threshold and
≈ 96 bytes per hash, built with numpy from a compact accumulator (no Python object per row).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import tomllib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from agents.bank_index import MultiIndexHash, hex_to_words
from agents.hashes import HASH_TYPES

log = logging.getLogger(__name__)

HEADER = ("signal_type", "signal", "bank", "label", "severity")
SEVERITIES = ("critical", "high", "medium", "low")
CONFIG_FILE = "banks.toml"
#: Largest per-bank PDQ threshold accepted (MIH stays exact at any; cost grows past 31).
MAX_PDQ_THRESHOLD = 63
DEFAULT_PDQ_THRESHOLD = 31


class BankError(ValueError):
    """A bank file that cannot be loaded; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class BankEntry:
    """Where a hash came from and what it means. The hash value itself is the index key."""

    bank: str
    label: str
    severity: str


def iter_bank(text: str, *, origin: str = "<bank>") -> Iterator[tuple[str, str, BankEntry]]:
    """Stream one bank CSV as (signal_type, hash, entry) rows; raise `BankError` on a bad row."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise BankError(f"{origin}:1: header must be {','.join(HEADER)}")
    entries: dict[tuple[str, str, str], BankEntry] = {}  # share one object per (bank, ...)
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
        key = (bank, label, severity.lower())
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = BankEntry(*key)
        yield hash_type.name, signal.lower(), entry


def parse_bank(text: str, *, origin: str = "<bank>") -> list[tuple[str, str, BankEntry]]:
    """Parse one bank CSV into (signal_type, hash, entry) rows; raise `BankError` on any bad row."""
    return list(iter_bank(text, origin=origin))


@dataclass(frozen=True, slots=True)
class BankConfig:
    """One bank's options from `banks.toml` (defaults when the bank is not listed)."""

    enabled: bool = True
    pdq_threshold: int = DEFAULT_PDQ_THRESHOLD
    kind: Literal["positive", "negative", "tombstone"] = "positive"
    #: For `kind = "tombstone"`: the bank whose rows this one removes.
    removes: str | None = None


@dataclass(frozen=True)
class BanksConfig:
    """Every bank's options; a bank not listed gets `BankConfig()`."""

    banks: Mapping[str, BankConfig] = field(default_factory=dict)

    def of(self, bank: str) -> BankConfig:
        return self.banks.get(bank, _DEFAULT_BANK)


_DEFAULT_BANK = BankConfig()


def parse_banks_config(text: str, *, origin: str = CONFIG_FILE) -> BanksConfig:
    """Parse `banks.toml`; raise `BankError` naming the bank and option on anything wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BankError(f"{origin}: {exc}") from None
    unknown = set(doc) - {"banks"}
    if unknown:
        raise BankError(f"{origin}: unknown table(s) {sorted(unknown)}; expected [banks.<name>]")
    banks: dict[str, BankConfig] = {}
    for name, options in (doc.get("banks") or {}).items():
        if not isinstance(options, dict):
            raise BankError(f"{origin}: [banks.{name}] must be a table")
        extra = set(options) - {"enabled", "pdq_threshold", "kind", "removes"}
        if extra:
            raise BankError(f"{origin}: [banks.{name}] unknown option(s) {sorted(extra)}")
        enabled = options.get("enabled", True)
        threshold = options.get("pdq_threshold", DEFAULT_PDQ_THRESHOLD)
        kind = options.get("kind", "positive")
        removes = options.get("removes")
        if not isinstance(enabled, bool):
            raise BankError(f"{origin}: [banks.{name}] enabled must be true or false")
        if not isinstance(threshold, int) or not 0 <= threshold <= MAX_PDQ_THRESHOLD:
            raise BankError(
                f"{origin}: [banks.{name}] pdq_threshold must be an integer 0–{MAX_PDQ_THRESHOLD}")
        if kind not in ("positive", "negative", "tombstone"):
            raise BankError(
                f"{origin}: [banks.{name}] kind must be positive, negative or tombstone")
        if (kind == "tombstone") != isinstance(removes, str):
            raise BankError(
                f"{origin}: [banks.{name}] a tombstone bank needs removes = \"<bank>\" "
                "(and only a tombstone bank has it)")
        banks[name] = BankConfig(enabled, threshold, kind, removes)
    return BanksConfig(banks)


@dataclass(frozen=True, slots=True)
class PdqMatch:
    """One bank entry within its bank's threshold of query number `query`.

    `ref` names the entry without revealing it (a truncated digest of bank + hash: the flood
    guard's key and what its alert shows an operator); `row` is its row in this index only.
    """

    query: int
    entry: BankEntry
    distance: int
    threshold: int
    negative: bool
    row: int = -1
    ref: str = ""


def entry_ref(bank: str, hash_bytes: bytes) -> str:
    """An opaque, stable name for one bank row: 16 hex of SHA-256 over bank and hash.

    Stable across reloads (row numbers are not); one-way, so it can appear in alerts and logs
    where the hash itself must not (DESIGN §5).
    """
    return hashlib.sha256(bank.encode() + b"\0" + hash_bytes).hexdigest()[:16]


class BankIndex:
    """All loaded banks: exact hashes in dicts, PDQ hashes in a multi-index hash.

    Immutable once built; `BankStore` builds a new one and swaps the reference on reload.
    Disabled banks are left out; tombstoned hashes are removed; negative banks are kept apart
    (`PdqMatch.negative`) so the detector can let them suppress positive matches.
    """

    def __init__(
        self,
        rows: Iterable[tuple[str, str, BankEntry]] = (),
        config: BanksConfig | None = None,
    ) -> None:
        self.config = config or BanksConfig()
        tombstones = None
        if self._has_tombstones():  # needs the rows twice; otherwise they are streamed once
            rows = list(rows)
            tombstones = self._tombstones(rows)
        self._by_type: dict[str, dict[str, list[BankEntry]]] = {}
        self._entries: list[BankEntry] = []  # PDQ rows' entries, deduplicated
        entry_ids: dict[BankEntry, int] = {}
        pdq_bytes = bytearray()
        pdq_entry = array("I")
        for signal_type, value, entry in (rows if tombstones is None else
                                           self._without(rows, tombstones)):
            bank = self.config.of(entry.bank)
            if not bank.enabled or bank.kind == "tombstone":
                continue
            if signal_type == "pdq":
                eid = entry_ids.get(entry)
                if eid is None:
                    eid = entry_ids[entry] = len(self._entries)
                    self._entries.append(entry)
                pdq_bytes += bytes.fromhex(value)
                pdq_entry.append(eid)
            else:
                self._by_type.setdefault(signal_type, {}).setdefault(value, []).append(entry)
        words = (np.frombuffer(bytes(pdq_bytes), dtype=">u8").reshape(-1, 4).astype(np.uint64)
                 if pdq_bytes else np.zeros((0, 4), np.uint64))
        del pdq_bytes
        self._pdq = MultiIndexHash(words)
        self._pdq_entry = np.frombuffer(pdq_entry, dtype=np.uint32).copy()
        cfgs = [self.config.of(e.bank) for e in self._entries]
        self._entry_threshold = np.array([c.pdq_threshold for c in cfgs], dtype=np.int32)
        self._entry_negative = np.array([c.kind == "negative" for c in cfgs], dtype=bool)
        self._max_threshold = int(self._entry_threshold.max()) if len(cfgs) else -1

    def _has_tombstones(self) -> bool:
        return any(c.kind == "tombstone" for c in self.config.banks.values())

    def _tombstones(self, rows: list[tuple[str, str, BankEntry]]) -> set[tuple[str, str, str]]:
        dead = set()
        for signal_type, value, entry in rows:
            cfg = self.config.of(entry.bank)
            if cfg.kind == "tombstone" and cfg.enabled and cfg.removes:
                dead.add((signal_type, value, cfg.removes))
        return dead

    @staticmethod
    def _without(rows: Iterable[tuple[str, str, BankEntry]],
                 dead: set[tuple[str, str, str]]) -> Iterator[tuple[str, str, BankEntry]]:
        for row in rows:
            if (row[0], row[1], row[2].bank) not in dead:
                yield row

    def lookup(self, signal_type: str, value: str) -> list[BankEntry]:
        """Entries whose hash of `signal_type` equals `value` (positive banks; PDQ too)."""
        if signal_type == "pdq":
            if len(value) != 64:
                return []
            hits = self._pdq.search(hex_to_words([value.lower()]), 0)
            return [self._entries[self._pdq_entry[r]] for r in hits.row
                    if not self._entry_negative[self._pdq_entry[r]]]
        return self._by_type.get(signal_type, {}).get(value, [])

    def match_pdq(self, queries: Sequence[str]) -> list[PdqMatch]:
        """Every entry within its own bank's threshold of any query (exact recall), nearest first.

        `PdqMatch.query` indexes `queries` (e.g. the 8 dihedral variants of every frame).
        """
        if not queries or self._max_threshold < 0:
            return []
        hits = self._pdq.search(hex_to_words([q.lower() for q in queries]), self._max_threshold)
        eids = self._pdq_entry[hits.row]
        thresholds = self._entry_threshold[eids]
        keep = hits.distance <= thresholds
        found = [
            PdqMatch(int(q), self._entries[e], int(d), int(t), bool(self._entry_negative[e]),
                     int(r), entry_ref(self._entries[e].bank,
                                       self._pdq.words[r].astype(">u8").tobytes()))
            for q, r, e, d, t in zip(hits.query[keep], hits.row[keep], eids[keep],
                                     hits.distance[keep], thresholds[keep], strict=True)
        ]
        found.sort(key=lambda m: (m.distance, m.query))
        return found

    # ------------------------------------------------------------- retroactive matching

    def _fingerprints(self) -> np.ndarray:
        """One uint64 per PDQ row identifying (hash, bank), for diffing two indexes."""
        words = self._pdq.words
        if not len(words):
            return np.zeros(0, np.uint64)
        bank_codes = np.array(
            [int.from_bytes(hashlib.blake2b(e.bank.encode(), digest_size=8).digest(), "big")
             for e in self._entries], dtype=np.uint64)
        with np.errstate(over="ignore"):
            mixed = (words[:, 0] * np.uint64(0x9E3779B97F4A7C15)
                     ^ words[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)
                     ^ words[:, 2] * np.uint64(0x165667B19E3779F9)
                     ^ words[:, 3] * np.uint64(0xD6E8FEB86659FD93))
        return mixed ^ bank_codes[self._pdq_entry]

    def added_pdq_rows(self, old: BankIndex) -> np.ndarray:
        """Rows of this index's *positive* PDQ entries whose (hash, bank) `old` did not have:
        what a reload added, for retroactive matching (new banks and enabled banks count)."""
        if not len(self._pdq):
            return np.zeros(0, np.int64)
        positive = ~self._entry_negative[self._pdq_entry]
        fresh = positive & ~np.isin(self._fingerprints(), old._fingerprints())
        return np.flatnonzero(fresh)

    def pdq_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(words, thresholds) of `rows`: for searching recent images with new bank rows. The
        words stay inside Vigil's process (never logged, never sent)."""
        eids = self._pdq_entry[rows]
        return self._pdq.words[rows], self._entry_threshold[eids]

    @property
    def pdq_count(self) -> int:
        """Number of PDQ rows loaded."""
        return len(self._pdq)

    def sizes(self) -> Mapping[tuple[str, str], int]:
        """(bank, signal_type) → number of entries, for metrics (counts only, never values)."""
        counts: dict[tuple[str, str], int] = {}
        for signal_type, table in self._by_type.items():
            for entries in table.values():
                for entry in entries:
                    key = (entry.bank, signal_type)
                    counts[key] = counts.get(key, 0) + 1
        if len(self._pdq_entry):
            per_entry = np.bincount(self._pdq_entry, minlength=len(self._entries))
            for entry, count in zip(self._entries, per_entry.tolist(), strict=True):
                if count:
                    key = (entry.bank, "pdq")
                    counts[key] = counts.get(key, 0) + count
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
            config = self.folder / CONFIG_FILE
            if config.is_file():
                entries.append(config)
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
        config = BanksConfig()
        if any(name == CONFIG_FILE for name, _, _ in stamp):
            try:
                config = parse_banks_config(
                    (self.folder / CONFIG_FILE).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, BankError) as exc:
                # A broken sidecar keeps every bank's defaults (enabled, threshold 31) and says
                # so loudly: dropping the banks would be a silent "allow everything".
                log.error("banks config ignored: %s", exc)

        def rows() -> Iterator[tuple[str, str, BankEntry]]:
            # File by file: each is validated whole (all or nothing) and then streamed into the
            # index builder, so memory holds one file's rows at a time, not every file's.
            for name, _, _ in stamp:
                if name == CONFIG_FILE:
                    continue
                try:
                    parsed = parse_bank((self.folder / name).read_text(encoding="utf-8"),
                                        origin=name)
                except (OSError, UnicodeDecodeError, BankError) as exc:
                    log.error("bank file skipped: %s", exc)
                    continue
                yield from parsed
                del parsed

        # Built off to the side (the agent calls this on a worker thread), then one assignment:
        # readers see the old index or the new one, never half of one, and never wait.
        self.index = BankIndex(rows(), config)
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
