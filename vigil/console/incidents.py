"""Open incidents and active mitigations as the console shows them (pure, no I/O).

Decide announces a time-boxed mitigation (e.g. a thread locked for new accounts during a raid)
as an alert of kind `mitigation` whose evidence says what, where and until when, and sends the
same `dedup_key` again with `evidence.resolved = true` when it is lifted. The console lists
those apart from incidents, with their remaining time, and lifts one by a `restore` review of
the mitigation's decision (docs/console.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from vigil.console.store import Alert

MITIGATION = "mitigation"


@dataclass(frozen=True)
class Mitigation:
    """An active mitigation: what it does, to which thread/board, until when."""

    dedup_key: str
    what: str
    scope_type: str
    scope_id: str
    decision_id: str
    expires_at: float | None
    trigger: str
    summary: str

    def expires_in(self, now: float) -> float | None:
        """Seconds left (negative once past, until decide's lift arrives)."""
        return None if self.expires_at is None else self.expires_at - now


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    return None


def mitigation(alert: Alert) -> Mitigation | None:
    """The mitigation an alert announces; None for other alerts or one without a decision."""
    evidence = alert.evidence
    if alert.kind != MITIGATION or not evidence.get("decision_id"):
        return None
    scope = evidence.get("scope")
    scope_type = alert.target_type or (scope.get("type") if isinstance(scope, dict) else None)
    scope_id = alert.target_id or (scope.get("id") if isinstance(scope, dict) else scope)
    if not scope_id:
        return None
    return Mitigation(
        dedup_key=alert.dedup_key, what=str(evidence.get("mitigation") or "mitigation"),
        scope_type=str(scope_type or "scope"), scope_id=str(scope_id),
        decision_id=str(evidence["decision_id"]), expires_at=_epoch(evidence.get("expires_at")),
        trigger=str(evidence.get("trigger") or ""), summary=alert.summary)


def split(alerts: list[Alert]) -> tuple[list[Alert], list[Mitigation]]:
    """Open alerts → (incidents, active mitigations)."""
    incidents: list[Alert] = []
    mitigations: list[Mitigation] = []
    for alert in alerts:
        if alert.kind == MITIGATION:
            found = mitigation(alert)
            if found is not None:
                mitigations.append(found)
        else:
            incidents.append(alert)
    return incidents, mitigations
