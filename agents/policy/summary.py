"""What a policy does, in a few lines: `vigil policy check` prints it so an operator reviewing a
change sees the rules, mitigations, staffed hours, paging and the burst kinds that get stricter
at night without reading the TOML side by side (pure: no I/O)."""

from __future__ import annotations

from agents.policy.model import BurstThresholds, Policy


def _shadow(mode: str) -> str:
    return " (shadow)" if mode == "shadow" else ""


def summarize(policy: Policy) -> list[str]:
    """One line per part of `policy`."""
    rules = ", ".join(f"{r.name}{_shadow(r.mode)}" for r in policy.rules) or "none"
    required = "; ".join(f"{kind}: {', '.join(dets) or 'none'}"
                         for kind, dets in sorted(policy.required.items())) or "none"
    mitigations = ", ".join(
        f"{m.name}{_shadow(m.mode)} ({m.action} on {'/'.join(m.on)}, {m.duration_minutes:g} min)"
        for m in policy.mitigations) or "none"
    hours = policy.staffed_hours
    staffed = ("around the clock" if hours.always else
               f"{','.join(hours.days)} {hours.start:%H:%M}-{hours.end:%H:%M} {hours.timezone}")
    paging = policy.paging
    routes = "; ".join(
        f"{'/'.join(r.severities)}{' ' + '/'.join(r.kinds) if r.kinds else ''}"
        f"{'' if r.when == 'always' else ' ' + r.when} -> {', '.join(r.destinations)}"
        for r in paging.routes) or "none"
    repage = (f", re-page after {paging.repage_after_minutes:g} min via "
              f"{', '.join(paging.escalation)}" if paging.repage_after_minutes else "")
    stricter = [kind for kind in BurstThresholds.KINDS
                if getattr(policy.burst, kind).unstaffed] or ["none"]
    return [
        f"rules: {rules}",
        f"required detectors: {required}",
        f"mitigations: {mitigations}",
        f"staffed hours: {staffed}",
        f"paging: {routes}{repage}",
        f"burst kinds stricter when unstaffed: {', '.join(stricter)}",
    ]
