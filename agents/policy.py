"""The decision policy: pure code from a content's signals to a verdict, action and alerts.

No Kafka, no clock, no `await`: `decide_content` gets everything it needs as arguments, so it is
tested directly and a replay gives the same decisions. This is the built-in minimal policy of the
walking skeleton (hash match → block, cannot check → hold, all clear → allow); the versioned
policy file of the decide issue replaces the constants here, and every decision carries
`POLICY_VERSION` so each action can be traced to the rules that took it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from streams.events import Reason, SignalData

POLICY_VERSION = "builtin-1"

#: Signals `decide` waits for before it allows a content, per content type.
REQUIRED_SIGNALS: Mapping[str, tuple[str, ...]] = {
    "image": ("sha256", "md5"),
    "post": (),
}
_SEVERITY_ORDER = ("critical", "high", "medium", "low")


@dataclass(frozen=True)
class AlertSpec:
    """An alert the decision raises (the agent turns it into a `safety.alert`)."""

    kind: str
    severity: str
    summary: str
    dedup_key: str
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What to do with one content: verdict for the forum, optional takedown action, alerts."""

    decision_id: str
    verdict: str  # allow | hold | block
    action: str | None  # takedown action, None for allow
    severity: str
    reasons: tuple[Reason, ...]
    alerts: tuple[AlertSpec, ...] = ()
    policy_version: str = POLICY_VERSION


def decision_id(content_type: str, content_id: str, verdict: str) -> str:
    """Deterministic: the same content, verdict and policy always give the same id."""
    raw = f"{content_type}/{content_id}/{verdict}/{POLICY_VERSION}".encode()
    return "dec-" + hashlib.sha256(raw).hexdigest()[:32]


def decide_content(
    content_type: str,
    content_id: str,
    signals: Mapping[str, SignalData],
    *,
    deadline_passed: bool,
) -> Decision | None:
    """Decide from the signals received so far, or return None to keep waiting.

    A bank match decides at once (block is final whatever else arrives); otherwise all required
    signals must be in. Past the deadline, a missing required signal means `hold`: fail closed.
    """
    matches = [s for s in signals.values() if s.status == "match" and s.distance is not None]
    if matches:
        return _block(content_type, content_id, matches)
    required = REQUIRED_SIGNALS.get(content_type, ())
    missing = [name for name in required if name not in signals]
    if missing and not deadline_passed:
        return None
    unchecked = [s for s in signals.values() if s.status == "unchecked"]
    if missing or unchecked:
        reasons = tuple(
            Reason(detector=s.detector, signal=f"unchecked: {s.evidence.get('reason', '?')}")
            for s in unchecked
        ) + tuple(Reason(detector=name, signal="no answer before deadline") for name in missing)
        return Decision(
            decision_id=decision_id(content_type, content_id, "hold"),
            verdict="hold",
            action="hold_for_review",
            severity="medium",
            reasons=reasons,
        )
    return Decision(
        decision_id=decision_id(content_type, content_id, "allow"),
        verdict="allow",
        action=None,
        severity="low",
        reasons=(),
    )


def _block(content_type: str, content_id: str, matches: list[SignalData]) -> Decision:
    severity = min(
        (str(s.evidence.get("severity", "high")) for s in matches), key=_SEVERITY_ORDER.index
    )
    reasons = tuple(
        Reason(
            detector=s.detector,
            signal="bank_match",
            distance=s.distance,
            bank=s.evidence.get("bank"),
            label=s.evidence.get("label"),
        )
        for s in sorted(matches, key=lambda s: s.detector)
    )
    first = reasons[0]
    alert = AlertSpec(
        kind="hash_match",
        severity="critical" if severity == "critical" else "high",
        summary=(
            f"Known image blocked: {content_type} {content_id} matched bank "
            f"{first.bank!r} ({first.label or 'no label'})"
        ),
        dedup_key=f"hash_match:{content_type}:{content_id}",
        evidence={"banks": sorted({r.bank for r in reasons if r.bank}),
                  "labels": sorted({r.label for r in reasons if r.label}),
                  "detectors": [r.detector for r in reasons]},
    )
    return Decision(
        decision_id=decision_id(content_type, content_id, "block"),
        verdict="block",
        action="block",
        severity=severity,
        reasons=reasons,
        alerts=(alert,),
    )
