"""Flood guard: quarantine a bank entry that suddenly matches far more images than it used to.

A bank entry that is a false positive in disguise — the PDQ of a blank or near-uniform image, a
meme template, a watermark — can match hundreds of innocent uploads within minutes, and every
match is a `block`. The guard counts, per entry (`PdqMatch.ref`: an opaque digest, never the
hash), the distinct images it matched within a sliding window (`VIGIL_BANK_FLOOD_WINDOW_SECONDS`,
1 h, event time) and compares that with the entry's own baseline: its distinct images per window
over the previous `baseline_s` (7 days). An entry reaching both `min_images` (20) and `factor`
(10) × its baseline is quarantined for `quarantine_s` (24 h): its matches stop being acted on
(the `pdq` signal says `clear` with `quarantined_banks`), and one `bank_flood` alert (high,
pages) names the bank, label and entry ref so an operator can tombstone or re-enable it.

Trade-off, stated: an entry that really is being spread (a raid posting known illegal images)
trips the guard too; the alert pages, and the exact hashes (sha256/md5) and other entries still
match. `min_images` is the number of images acted on before the guard can trip.

Pure and in memory (per worker, like the partitions it sees); bounded to `max_entries` entries
tracked (least recently matched dropped).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from streams.events import AlertData


@dataclass
class _EntryState:
    bank: str
    label: str
    window: dict[str, float] = field(default_factory=dict)  # image id → first match time
    history: dict[int, int] = field(default_factory=dict)  # bucket (window_s) → images
    quarantined_until: float = 0.0


class FloodGuard:
    """Counts distinct images per bank entry; quarantines floods and queues `bank_flood` alerts."""

    def __init__(self, *, window_s: float = 3600.0, min_images: int = 20, factor: float = 10.0,
                 baseline_s: float = 7 * 86400.0, quarantine_s: float = 86400.0,
                 max_entries: int = 100_000) -> None:
        self.window_s = window_s
        self.min_images = min_images
        self.factor = factor
        self.baseline_s = baseline_s
        self.quarantine_s = quarantine_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _EntryState] = OrderedDict()
        self._alerts: list[AlertData] = []
        self._lock = threading.Lock()

    def quarantined(self, ref: str, at: float) -> bool:
        """Is entry `ref` quarantined at event time `at`?"""
        state = self._entries.get(ref)
        return state is not None and at < state.quarantined_until

    def observe(self, ref: str, bank: str, label: str, image_id: str, at: float) -> bool:
        """Record that entry `ref` matched `image_id` at `at`; True if the entry is quarantined
        (already, or by this very match)."""
        with self._lock:
            state = self._entries.get(ref)
            if state is None:
                state = self._entries[ref] = _EntryState(bank, label)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(ref)
            if at < state.quarantined_until:
                return True
            self._slide(state, at)
            state.window.setdefault(image_id, at)
            count = len(state.window)
            baseline = self._baseline(state, at)
            if count >= self.min_images and count >= self.factor * baseline:
                state.quarantined_until = at + self.quarantine_s
                self._alerts.append(self._alert(ref, state, count, baseline, at))
                return True
            return False

    def drain_alerts(self) -> list[AlertData]:
        """Alerts raised since the last call (the agent sends them to `safety.alerts.v1`)."""
        with self._lock:
            alerts, self._alerts = self._alerts, []
        return alerts

    def _slide(self, state: _EntryState, at: float) -> None:
        # matches that left the window become history, counted per window-sized bucket
        cutoff = at - self.window_s
        for image_id, seen in [(i, s) for i, s in state.window.items() if s < cutoff]:
            del state.window[image_id]
            bucket = int(seen // self.window_s)
            state.history[bucket] = state.history.get(bucket, 0) + 1
        oldest = int((at - self.baseline_s) // self.window_s)
        for bucket in [b for b in state.history if b < oldest]:
            del state.history[bucket]

    def _baseline(self, state: _EntryState, at: float) -> float:
        """Distinct images per window over the baseline period (0 for a new entry)."""
        windows = max(1.0, (self.baseline_s - self.window_s) / self.window_s)
        return sum(state.history.values()) / windows

    def _alert(self, ref: str, state: _EntryState, count: int, baseline: float,
               at: float) -> AlertData:
        when = datetime.fromtimestamp(at, timezone.utc)
        return AlertData(
            alert_id=f"alr-bank_flood-{ref}-{int(at)}",
            kind="bank_flood",
            severity="high",
            summary=(f"bank entry {ref} of bank {state.bank!r} ({state.label}) matched {count} "
                     f"distinct images within {self.window_s / 60:.0f} min (baseline "
                     f"{baseline:.1f}): quarantined, its matches are not acted on"),
            evidence={"bank": state.bank, "label": state.label, "entry_ref": ref,
                      "images": count, "baseline_per_window": round(baseline, 2),
                      "window_seconds": self.window_s,
                      "quarantined_until": datetime.fromtimestamp(
                          state.quarantined_until, timezone.utc).isoformat()},
            first_seen=when,
            last_seen=when,
            count=count,
            dedup_key=f"bank_flood:{ref}",
            runbook_url="docs/hashing.md#flood-guard",
        )
