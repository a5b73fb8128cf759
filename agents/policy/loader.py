"""Policy files: TOML → validated `Policy`, errors naming file, line and key; hot reload.

tomllib reports syntax errors with their line but forgets positions once parsed, so semantic
errors are located afterwards by `_locate`, a small scan of the source that tracks table headers
(`[a]`, `[[a]]`, `[a.b]`) and `key =` lines. Unknown keys are errors: a typo (`min_scroe`)
must not silently fall back to a default in a safety policy.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import time
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.policy.model import (
    ACTIONS,
    DAYS,
    DESTINATIONS,
    MITIGATION_SCOPES,
    SEVERITIES,
    BurstKind,
    BurstThresholds,
    ImageSprayThresholds,
    Mitigation,
    Paging,
    Policy,
    Route,
    ReportSurgeThresholds,
    Rule,
    StaffedHours,
    SwarmThresholds,
    TextBrigadeThresholds,
    Thresholds,
    ThreadRaidThresholds,
    TrustWeights,
)

log = logging.getLogger(__name__)

Path_ = tuple[str | int, ...]
DEFAULT_POLICY_RESOURCE = "default.toml"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, line and key."""

    def __init__(self, message: str, *, source: str = "<policy>", line: int | None = None,
                 key: str = "") -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")
        self.source, self.line, self.key, self.reason = source, line, key, message


def default_policy_text() -> str:
    """The default policy file shipped in the package (`agents/policy/default.toml`)."""
    return resources.files("agents.policy").joinpath(DEFAULT_POLICY_RESOURCE).read_text("utf-8")


def load_default_policy() -> Policy:
    """The shipped default policy."""
    return parse_policy(default_policy_text(), source="default.toml")


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file; raise `PolicyError` (or OSError) if it cannot be used."""
    path = Path(path)
    return parse_policy(path.read_text("utf-8"), source=str(path))


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Validate policy TOML `text`; `source` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PolicyError(f"invalid TOML: {exc}", source=source,
                          line=int(match.group(1)) if match else None) from None
    return _Validator(text, source).policy(raw)


# ------------------------------------------------------------------------------------ validation


class _Validator:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source

    def fail(self, path: Path_, message: str) -> PolicyError:
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        return PolicyError(message, source=self.source, line=_locate(self.text, path), key=key)

    # -- generic checks
    def table(self, value: Any, path: Path_, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def string(self, table: Mapping[str, Any], path: Path_, key: str, default: Any = ...,
               choices: Sequence[str] | None = None) -> Any:
        if key not in table:
            if default is ...:
                raise self.fail(path, f"missing required key `{key}`")
            return default
        value = table[key]
        if not isinstance(value, str) or not value:
            raise self.fail((*path, key), "expected a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail((*path, key), f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def strings(self, table: Mapping[str, Any], path: Path_, key: str,
                default: tuple[str, ...] = (), choices: Sequence[str] | None = None
                ) -> tuple[str, ...]:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail((*path, key), "expected a list of strings")
        if choices is not None:
            for item in value:
                if item not in choices:
                    raise self.fail((*path, key), f"{item!r} is not one of: {', '.join(choices)}")
        return tuple(value)

    def number(self, table: Mapping[str, Any], path: Path_, key: str, *, low: float,
               high: float | None = None, integer: bool = False) -> Any:
        if key not in table:
            return None
        value = table[key]
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.fail((*path, key), "expected an integer" if integer else "expected a number")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self.fail((*path, key), f"{value} is out of range (must be {bound})")
        return value

    def clock(self, table: Mapping[str, Any], path: Path_, key: str, default: time) -> time:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, time):
            return value.replace(tzinfo=None)
        if isinstance(value, str):
            try:
                return time.fromisoformat(value)
            except ValueError:
                pass
        raise self.fail((*path, key), f"expected a time of day like \"08:00\", got {value!r}")

    # -- sections
    def policy(self, raw: dict[str, Any]) -> Policy:
        top = self.table(raw, (), ("version", "description", "required", "rules",
                                   "staffed_hours", "paging", "unchecked", "reviews", "burst",
                                   "mitigations"))
        version = self.string(top, (), "version")
        required_raw = self.table(top.get("required", {}), ("required",), ("image", "post"))
        required = {ct: self.strings(required_raw, ("required",), ct) for ct in ("image", "post")}
        rules_raw = top.get("rules", [])
        if not isinstance(rules_raw, list):
            raise self.fail(("rules",), "expected an array of tables: [[rules]]")
        rules = tuple(self.rule(r, ("rules", i)) for i, r in enumerate(rules_raw))
        names = [r.name for r in rules]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise self.fail(("rules", i, "name"), f"duplicate rule name {name!r}")
        unchecked = self.table(top.get("unchecked", {}), ("unchecked",), ("action", "severity"))
        reviews = self.table(top.get("reviews", {}), ("reviews",), ("escalate_severity",))
        return Policy(
            version=version,
            required=required,
            rules=rules,
            staffed_hours=self.staffed_hours(top.get("staffed_hours")),
            paging=self.paging(top.get("paging", {})),
            # "allow" is not a choice: what cannot be checked is never published (fail closed)
            unchecked_action=self.string(unchecked, ("unchecked",), "action",
                                         "hold_for_review", ACTIONS),
            unchecked_severity=self.string(unchecked, ("unchecked",), "severity", "medium",
                                           SEVERITIES),
            escalate_severity=self.string(reviews, ("reviews",), "escalate_severity", "high",
                                          SEVERITIES),
            burst=self.burst(top.get("burst", {})),
            source=self.source,
            mitigations=self.mitigations(top.get("mitigations", [])),
        )

    def mitigations(self, raw: Any) -> tuple[Mitigation, ...]:
        if not isinstance(raw, list):
            raise self.fail(("mitigations",), "expected an array of tables: [[mitigations]]")
        found: list[Mitigation] = []
        for i, item in enumerate(raw):
            path: Path_ = ("mitigations", i)
            table = self.table(item, path, ("name", "on", "action", "duration_minutes",
                                            "young_account_days", "severity", "mode",
                                            "description"))
            action = self.string(table, path, "action", choices=tuple(MITIGATION_SCOPES))
            name = self.string(table, path, "name", action)
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise self.fail((*path, "name"), "use letters, digits, `_`, `-` and `.` only")
            if name in (m.name for m in found):
                raise self.fail((*path, "name"), f"duplicate mitigation name {name!r}")
            on = self.strings(table, path, "on")
            if not on:
                raise self.fail(path, "missing required key `on` (alert kinds, e.g. "
                                      "\"thread_raid\")")
            if "mitigation" in on:
                raise self.fail((*path, "on"), "a mitigation cannot start on a mitigation")
            duration = self.number(table, path, "duration_minutes", low=0.01, high=7 * 24 * 60)
            if duration is None:
                raise self.fail(path, "missing required key `duration_minutes` (every "
                                      "mitigation must lift itself)")
            young = self.number(table, path, "young_account_days", low=0.0, high=3650)
            found.append(Mitigation(
                name=name, on=on, action=action, duration_minutes=float(duration),
                young_account_days=float(young) if young is not None else 7.0,
                severity=self.string(table, path, "severity", "medium", SEVERITIES),
                mode=self.string(table, path, "mode", "enforce", ("enforce", "shadow")),
            ))
        return tuple(found)

    def thresholds(self, table: Mapping[str, Any], path: Path_) -> Thresholds:
        return Thresholds(
            min_score=self.number(table, path, "min_score", low=0.0, high=1.0),
            max_distance=self.number(table, path, "max_distance", low=0, high=256, integer=True),
        )

    def rule(self, raw: Any, path: Path_) -> Rule:
        keys = ("name", "detectors", "action", "severity", "min_score", "max_distance",
                "unstaffed", "content_types", "models", "banks", "labels", "alert",
                "alert_min_severity", "mode", "description")
        table = self.table(raw, path, keys)
        name = self.string(table, path, "name")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise self.fail((*path, "name"), "use letters, digits, `_`, `-` and `.` only")
        detectors = self.strings(table, path, "detectors")
        if not detectors:
            raise self.fail(path, "missing required key `detectors` (a list, e.g. [\"sha256\"])")
        unstaffed_raw = self.table(table.get("unstaffed", {}), (*path, "unstaffed"),
                                   ("min_score", "max_distance"))
        rule = Rule(
            name=name,
            detectors=detectors,
            action=self.string(table, path, "action", choices=ACTIONS),
            severity=self.string(table, path, "severity", choices=(*SEVERITIES, "bank")),
            staffed=self.thresholds(table, path),
            unstaffed=self.thresholds(unstaffed_raw, (*path, "unstaffed")),
            content_types=self.strings(table, path, "content_types", choices=("image", "post")),
            models=self.strings(table, path, "models"),
            banks=self.strings(table, path, "banks"),
            labels=self.strings(table, path, "labels"),
            alert=self.string(table, path, "alert", None),
            alert_min_severity=self.string(table, path, "alert_min_severity", "low", SEVERITIES),
            mode=self.string(table, path, "mode", "enforce", ("enforce", "shadow")),
            line=_locate(self.text, path) or 0,
        )
        s, u = rule.staffed, rule.unstaffed
        if u.min_score is not None and s.min_score is not None and u.min_score > s.min_score:
            raise self.fail((*path, "unstaffed", "min_score"),
                            "outside staffed hours thresholds must be stricter "
                            f"(≤ min_score {s.min_score})")
        if (u.max_distance is not None and s.max_distance is not None
                and u.max_distance < s.max_distance):
            raise self.fail((*path, "unstaffed", "max_distance"),
                            "outside staffed hours thresholds must be stricter "
                            f"(≥ max_distance {s.max_distance})")
        return rule

    def staffed_hours(self, raw: Any) -> StaffedHours:
        if raw is None:
            return StaffedHours()
        path: Path_ = ("staffed_hours",)
        table = self.table(raw, path, ("timezone", "days", "start", "end"))
        zone = self.string(table, path, "timezone", "UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail((*path, "timezone"),
                            f"unknown timezone {zone!r} (use an IANA name like Europe/Berlin)"
                            ) from None
        start = self.clock(table, path, "start", time(0, 0))
        end = self.clock(table, path, "end", time(0, 0))
        days = self.strings(table, path, "days", DAYS, DAYS)
        return StaffedHours(timezone=zone, days=days, start=start, end=end,
                            always=start == end and set(days) == set(DAYS))

    def paging(self, raw: Any) -> Paging:
        path: Path_ = ("paging",)
        table = self.table(raw, path, ("routes", "repage_after_minutes", "escalation",
                                       "alertmanager_ttl_minutes"))
        routes_raw = table.get("routes", [])
        if not isinstance(routes_raw, list):
            raise self.fail((*path, "routes"), "expected an array of tables: [[paging.routes]]")
        routes = []
        for i, route_raw in enumerate(routes_raw):
            rpath: Path_ = (*path, "routes", i)
            route = self.table(route_raw, rpath, ("destinations", "severities", "kinds", "when"))
            if "destinations" not in route:
                raise self.fail(rpath, "missing required key `destinations`")
            routes.append(Route(
                destinations=self.strings(route, rpath, "destinations", choices=DESTINATIONS),
                severities=self.strings(route, rpath, "severities", SEVERITIES, SEVERITIES),
                kinds=self.strings(route, rpath, "kinds"),
                when=self.string(route, rpath, "when", "always",
                                 ("always", "staffed", "unstaffed")),
            ))
        repage = self.number(table, path, "repage_after_minutes", low=0)
        ttl = self.number(table, path, "alertmanager_ttl_minutes", low=1)
        return Paging(
            routes=tuple(routes),
            repage_after_minutes=repage if repage is not None else 0,
            escalation=self.strings(table, path, "escalation", ("pagerduty",), DESTINATIONS),
            alertmanager_ttl_minutes=ttl if ttl is not None else 360,
        )


    # -- [burst]: burst detector thresholds (agents/bursts); apart from the sections above
    def burst(self, raw: Any) -> BurstThresholds:
        path: Path_ = ("burst",)
        table = self.table(raw, path, ("lateness_seconds", "trust", *_BURST_KINDS))
        # a kind's table replaces its defaults, `unstaffed` included (none unless written)
        kinds = {kind: self.burst_kind(table[kind], (*path, kind), *_BURST_KINDS[kind])
                 for kind in _BURST_KINDS if kind in table}
        lateness = self.number(table, path, "lateness_seconds", low=0, high=3600)
        return BurstThresholds(
            **kinds, trust=self.burst_trust(table.get("trust", {}), (*path, "trust")),
            lateness_s=BurstThresholds.lateness_s if lateness is None else float(lateness))

    def burst_values(self, table: Mapping[str, Any], path: Path_,
                     fields: Mapping[str, _BurstField]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, (name, scale, integer, low, high) in fields.items():
            value = self.number(table, path, key, low=low, high=high, integer=integer)
            if value is not None:
                values[name] = value if integer else float(value) * scale
        return values

    def burst_kind(self, raw: Any, path: Path_, cls: type[BurstKind],
                   fields: Mapping[str, _BurstField]) -> BurstKind:
        table = self.table(raw, path, (*fields, "unstaffed"))
        staffed = cls(**self.burst_values(table, path, fields))
        if "unstaffed" not in table:
            return replace(staffed, unstaffed=())
        overridable = {k: f for k, f in fields.items() if f[0] in cls.STRICTER}
        upath: Path_ = (*path, "unstaffed")
        overrides = self.burst_values(self.table(table["unstaffed"], upath, tuple(overridable)),
                                      upath, overridable)
        for key, (name, *_) in overridable.items():
            if name not in overrides:
                continue
            mine, theirs = overrides[name], getattr(staffed, name)
            down = cls.STRICTER[name] == "down"
            if (mine > theirs) if down else (mine < theirs):
                raise self.fail((*upath, key), "outside staffed hours thresholds must be "
                                f"stricter ({'≤' if down else '≥'} {key} {theirs:g})")
        return replace(staffed, unstaffed=tuple(overrides.items()))

    def burst_trust(self, raw: Any, path: Path_) -> TrustWeights:
        fields = {"staff": ("staff", 1.0, False, 0, 100),
                  "unknown_age": ("unknown_age", 1.0, False, 0, 100),
                  "older": ("older", 1.0, False, 0, 100),
                  "prior_confirmed": ("prior_confirmed", 1.0, False, 0.01, 1000),
                  "prior_restored": ("prior_restored", 1.0, False, 0.01, 1000),
                  "max_accuracy_factor": ("max_accuracy_factor", 1.0, False, 1, 100)}
        table = self.table(raw, path, (*fields, "age_weights"))
        values = self.burst_values(table, path, fields)
        if "age_weights" in table:
            steps = table["age_weights"]
            ok = isinstance(steps, list) and all(
                isinstance(s, list) and len(s) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                        for v in s) for s in steps)
            if not ok or [s[0] for s in steps] != sorted({s[0] for s in steps}):
                raise self.fail((*path, "age_weights"), "expected [[days, weight], …] with "
                                "increasing days, e.g. [[1, 0.2], [7, 0.5]]")
            values["by_age"] = tuple((float(d) * DAY_S, float(w)) for d, w in steps)
        return TrustWeights(**values)


#: TOML key → (field, unit in seconds or 1, integer, low, high)
_BurstField = tuple[str, float, bool, float, float | None]
DAY_S, HOUR_S, MINUTE_S = 86_400.0, 3600.0, 60.0
_BURST_KINDS: dict[str, tuple[type[BurstKind], dict[str, _BurstField]]] = {
    "report_surge": (ReportSurgeThresholds, {
        "window_minutes": ("window_s", MINUTE_S, False, 0.5, 1440),
        "min_weight": ("min_weight", 1.0, False, 0.1, None),
        "high_weight": ("high_weight", 1.0, False, 0.1, None),
        "young_age_days": ("young_age_s", DAY_S, False, 0, 365),
        "brigade_min_reporters": ("brigade_min_reporters", 1.0, True, 2, None),
        "brigade_young_fraction": ("brigade_young_fraction", 1.0, False, 0, 1),
        "young_max_share": ("young_max_share", 1.0, False, 0, 1),
        "max_reporters": ("max_reporters", 1.0, True, 10, None)}),
    "thread_raid": (ThreadRaidThresholds, {
        "window_minutes": ("window_s", MINUTE_S, False, 0.5, 1440),
        "floor": ("floor", 1.0, True, 2, None),
        "factor": ("factor", 1.0, False, 1, None),
        "min_authors": ("min_authors", 1.0, True, 1, None),
        "young_age_days": ("young_age_s", DAY_S, False, 0, 365),
        "young_fraction": ("young_fraction", 1.0, False, 0, 1),
        "baseline_hours": ("baseline_tau_s", HOUR_S, False, 0.1, 24 * 28),
        "idle_hours": ("idle_s", HOUR_S, False, 1, 24 * 28),
        "max_window_posts": ("max_window_posts", 1.0, True, 10, None)}),
    "new_account_swarm": (SwarmThresholds, {
        "window_minutes": ("window_s", MINUTE_S, False, 0.5, 1440),
        "floor": ("floor", 1.0, True, 2, None),
        "factor": ("factor", 1.0, False, 1, None),
        "scan_min_accounts": ("scan_min_accounts", 1.0, True, 2, None),
        "scan_p": ("scan_p", 1.0, False, 0, 1),
        "prior_per_hour": ("prior_rate", 1 / HOUR_S, False, 0.001, None),
        "young_age_hours": ("young_age_s", HOUR_S, False, 0, 24 * 365),
        "baseline_hours": ("baseline_tau_s", HOUR_S, False, 0.1, 24 * 28),
        "idle_hours": ("idle_s", HOUR_S, False, 1, 24 * 28),
        "max_accounts": ("max_accounts", 1.0, True, 10, None)}),
    "text_brigade": (TextBrigadeThresholds, {
        "window_minutes": ("window_s", MINUTE_S, False, 0.5, 1440),
        "min_accounts": ("min_accounts", 1.0, True, 2, None),
        "similarity": ("similarity", 1.0, False, 0.05, 1),
        "shingle_words": ("shingle", 1.0, True, 1, 10),
        "min_words": ("min_tokens", 1.0, True, 1, None),
        "num_perm": ("num_perm", 1.0, True, 16, 512),
        "excerpt_chars": ("excerpt_chars", 1.0, True, 0, 200),
        "max_window_posts": ("max_window_posts", 1.0, True, 10, None)}),
    "image_spray": (ImageSprayThresholds, {
        "window_minutes": ("window_s", MINUTE_S, False, 0.5, 1440),
        "min_accounts": ("min_accounts", 1.0, True, 2, None),
        "max_distance": ("max_distance", 1.0, True, 0, 128),
        "max_window_images": ("max_window_images", 1.0, True, 10, None)}),
}


# ------------------------------------------------------------------------------------ locating

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _locate(text: str, path: Path_) -> int | None:
    """Best-effort line (1-based) of `path` in TOML `text`: the key's line, else its table's."""
    if not path:
        return None
    counts: dict[tuple[str, ...], int] = {}
    current: tuple[str | int, ...] = ()
    best: tuple[int, int] | None = None  # (matched length, line)

    def consider(candidate: tuple[str | int, ...], lineno: int) -> None:
        nonlocal best
        if len(candidate) > len(path) or tuple(path[:len(candidate)]) != candidate:
            return
        if best is None or len(candidate) > best[0]:
            best = (len(candidate), lineno)

    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = _split_key(header.group(2))
            resolved: list[str | int] = []
            for i, name in enumerate(names):  # `[rules.unstaffed]` → ("rules", n, "unstaffed")
                resolved.append(name)
                prefix = names[: i + 1]
                if prefix in counts and (i < len(names) - 1 or header.group(1) == "["):
                    resolved.append(counts[prefix] - 1)
            if header.group(1) == "[[":
                counts[names] = counts.get(names, 0) + 1
                resolved.append(counts[names] - 1)
            current = tuple(resolved)
            consider(current, lineno)
            continue
        key = _KEY.match(line)
        if key:
            consider((*current, *_split_key(key.group(1))), lineno)
    return best[1] if best is not None else None


# ------------------------------------------------------------------------------------ hot reload


class PolicyStore:
    """The policy in force, re-read when the file's mtime changes; a bad edit keeps the old one.

    `path` None means the shipped default policy. `on_reload(outcome, policy_or_error)` lets the
    agent count reloads in its metrics.
    """

    def __init__(self, path: Path | None,
                 on_reload: Callable[[str, Policy | PolicyError | OSError], None] | None = None
                 ) -> None:
        self.path = path
        self._on_reload = on_reload
        self._mtime: float | None = None
        self.policy: Policy = load_policy(path) if path is not None else load_default_policy()
        if path is not None:
            self._mtime = path.stat().st_mtime

    def __call__(self) -> Policy:
        return self.policy

    def reload_if_changed(self) -> bool:
        """Reload if the file changed; True when a new policy is in force."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return False
            self._mtime = mtime
            policy = load_policy(self.path)
        except (PolicyError, OSError) as exc:
            log.error("policy not reloaded, keeping %s: %s", self.policy.version, exc)
            if self._on_reload:
                self._on_reload("error", exc)
            return False
        if policy.version == self.policy.version and policy != self.policy:
            log.warning("policy %s changed without a new `version`: decisions keep the same "
                        "policy_version; bump it so each action traces to its rules",
                        policy.version)
        self.policy = policy
        log.warning("policy %s loaded from %s", policy.version, self.path)
        if self._on_reload:
            self._on_reload("ok", policy)
        return True
