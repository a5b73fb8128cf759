"""Reporter accuracy: how often moderators upheld what an account reported, as a trust factor.

A moderator's review (`safety.reviews.v1`) of a takedown says whether the reports on that
content were right (`confirm`) or wrong (`restore`). `ReporterAccuracy` remembers who reported
each recent target and keeps, per reporter, the number of confirmed and restored targets; the
factor folded into a report's weight is the mean of Beta(prior_confirmed + confirmed,
prior_restored + restored) over the prior's mean — 1 for a reporter nobody reviewed yet, below
1 for one whose reports keep being restored, up to `max_accuracy_factor` for a reliable one.

Bounded: at most `max_targets` targets (with at most `max_per_target` reporters each) and
`max_reporters` reporters, the least recently used dropped first. A reversed review (restore
after confirm) replaces the earlier outcome instead of adding to it, and a redelivered review
changes nothing.
"""

from __future__ import annotations

from agents.policy.model import TrustWeights

_CAP = 0xFFFF  # counts are packed in one int per reporter: confirmed << 16 | restored


class ReporterAccuracy:
    """Per-reporter confirmed/restored counts learnt from reviews; shared by a worker's
    report detectors (the reviews agent writes, the report detectors read)."""

    def __init__(self, max_targets: int = 100_000, max_per_target: int = 20,
                 max_reporters: int = 500_000) -> None:
        self.max_targets, self.max_per_target = max_targets, max_per_target
        self.max_reporters = max_reporters
        #: target id → [reporter ids, outcome counted so far ("confirm"/"restore"/None)]
        self.targets: dict[str, tuple[list[str], list[str | None]]] = {}
        self.counts: dict[str, int] = {}

    def reported(self, target_id: str, reporter_id: str) -> None:
        """`reporter_id` reported `target_id` (called for every report)."""
        entry = self.targets.pop(target_id, None)
        if entry is None:
            if len(self.targets) >= self.max_targets:
                del self.targets[next(iter(self.targets))]
            entry = ([], [None])
        self.targets[target_id] = entry  # most recent last
        reporters = entry[0]
        if reporter_id not in reporters and len(reporters) < self.max_per_target:
            reporters.append(reporter_id)

    def reviewed(self, content_id: str, outcome: str) -> int:
        """A moderator's `confirm`/`restore` of `content_id`; returns the reporters credited."""
        entry = self.targets.get(content_id)
        if entry is None or outcome not in ("confirm", "restore"):
            return 0
        reporters, counted = entry
        if counted[0] == outcome:
            return 0  # redelivered
        for reporter in reporters:
            confirmed, restored = self.get(reporter)
            if counted[0] == "confirm":
                confirmed -= 1
            elif counted[0] == "restore":
                restored -= 1
            if outcome == "confirm":
                confirmed += 1
            else:
                restored += 1
            self._put(reporter, confirmed, restored)
        counted[0] = outcome
        return len(reporters)

    def get(self, reporter_id: str) -> tuple[int, int]:
        """(confirmed, restored) for `reporter_id`."""
        packed = self.counts.get(reporter_id, 0)
        return packed >> 16, packed & _CAP

    def _put(self, reporter_id: str, confirmed: int, restored: int) -> None:
        self.counts.pop(reporter_id, None)
        if len(self.counts) >= self.max_reporters:
            del self.counts[next(iter(self.counts))]
        confirmed, restored = min(max(confirmed, 0), _CAP), min(max(restored, 0), _CAP)
        self.counts[reporter_id] = confirmed << 16 | restored

    def factor(self, reporter_id: str, weights: TrustWeights) -> float:
        """Posterior mean accuracy over the prior mean, capped (see the module docstring)."""
        packed = self.counts.get(reporter_id)
        if packed is None:
            return 1.0
        a, b = weights.prior_confirmed, weights.prior_restored
        posterior = (a + (packed >> 16)) / (a + b + (packed >> 16) + (packed & _CAP))
        return min(weights.max_accuracy_factor, posterior * (a + b) / a)

    def size(self) -> int:
        return len(self.targets) + len(self.counts)
