"""Policy files: validation errors with lines, staffed hours, stricter night thresholds, shadow
rules, paging routes, hot reload and `vigil policy check`."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.policy import (
    PolicyError,
    PolicyStore,
    decide_content,
    default_policy_text,
    load_default_policy,
    parse_policy,
)
from agents.policy.model import StaffedHours
from agents.policy.summary import summarize
from vigil.cli import main

from .factories import signal

DEFAULT = load_default_policy()
NIGHT = datetime(2025, 2, 4, 2, 13, 5, tzinfo=timezone.utc)  # a Tuesday, 03:13 in Berlin
DAY = datetime(2025, 2, 4, 12, 0, tzinfo=timezone.utc)

MINIMAL = """\
version = "test-1"

[required]
image = ["sha256"]

[staffed_hours]
timezone = "Europe/Berlin"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "08:00"
end = "22:00"

[[rules]]
name = "nsfw"
detectors = ["nsfw_image"]
min_score = 0.9
unstaffed = { min_score = 0.6 }
action = "hold_for_review"
severity = "medium"

[[rules]]
name = "nsfw_strict_trial"
detectors = ["nsfw_image"]
min_score = 0.5
action = "hold_for_review"
severity = "low"
mode = "shadow"
"""


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    return info.value


# ------------------------------------------------------------------------------- validation


def test_default_policy_ships_and_is_valid() -> None:
    assert DEFAULT.version.startswith("default-")
    assert DEFAULT.required["image"] == ("sha256", "md5", "pdq", "nsfw_image")
    assert DEFAULT.required["post"] == ("text_abuse",)
    assert {r.name for r in DEFAULT.rules} >= {"bank_match", "pdq_match", "nsfw_image",
                                               "text_abuse_hide", "text_abuse_review"}
    assert parse_policy(default_policy_text()) == parse_policy(default_policy_text())


@pytest.mark.parametrize(("edit", "line", "key", "words"), [
    (('action = "hold_for_review"\nseverity = "medium"\n\n[[rules]]\nname = "nsfw_strict',
      'action = "hold_it"\nseverity = "medium"\n\n[[rules]]\nname = "nsfw_strict'),
     17, "rules[0].action", "'hold_it' is not one of"),
    (("min_score = 0.9", "min_scroe = 0.9"), 15, "rules[0].min_scroe", "unknown key"),
    (('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'), 7,
     "staffed_hours.timezone", "unknown timezone"),
    (("unstaffed = { min_score = 0.6 }", "unstaffed = { min_score = 0.95 }"), 16,
     "rules[0].unstaffed.min_score", "must be stricter"),
    (('name = "nsfw_strict_trial"', 'name = "nsfw"'), 21, "rules[1].name", "duplicate"),
    (("min_score = 0.5", "min_score = 5"), 23, "rules[1].min_score", "out of range"),
    (('start = "08:00"', 'start = "8am"'), 9, "staffed_hours.start", "time of day"),
    (('version = "test-1"\n', ''), None, "", "missing required key `version`"),
])
def test_errors_name_the_line_and_key(edit: tuple[str, str], line: int | None, key: str,
                                      words: str) -> None:
    old, new = edit
    assert old in MINIMAL
    error = error_of(MINIMAL.replace(old, new, 1))
    assert (error.line, error.key) == (line, key)
    assert words in error.reason
    assert str(error).startswith(f"p.toml:{line}: " if line else "p.toml: ")


def test_toml_syntax_error_names_the_line() -> None:
    error = error_of(MINIMAL.replace('severity = "low"', 'severity = "low'))
    assert error.line == 25 and "invalid TOML" in str(error)


def test_allow_is_not_a_possible_action_for_what_cannot_be_checked() -> None:
    error = error_of(MINIMAL + '\n[unchecked]\naction = "allow"\n')
    assert error.key == "unchecked.action" and error.line == 29


def test_unknown_destination_in_a_route() -> None:
    error = error_of(MINIMAL + '\n[[paging.routes]]\ndestinations = ["slack"]\n')
    assert error.key == "paging.routes[0].destinations" and error.line == 29


# ------------------------------------------------------------------------------- staffed hours


def test_staffed_hours_use_the_timezone_and_days() -> None:
    hours = parse_policy(MINIMAL).staffed_hours
    assert not hours.covers(NIGHT)  # 03:13 Berlin
    assert hours.covers(DAY)  # 13:00 Berlin, Tuesday
    assert hours.covers(datetime(2025, 2, 4, 7, 0, tzinfo=timezone.utc))  # 08:00 Berlin
    assert not hours.covers(datetime(2025, 2, 4, 21, 0, tzinfo=timezone.utc))  # 22:00 Berlin
    assert not hours.covers(datetime(2025, 2, 8, 12, 0, tzinfo=timezone.utc))  # Saturday
    assert not hours.covers(None)  # unknown time: the stricter side


def test_staffed_hours_across_midnight_belong_to_the_evening_before() -> None:
    night_shift = StaffedHours(timezone="UTC", days=("fri",), start=datetime(2025, 1, 1, 20).time(),
                               end=datetime(2025, 1, 1, 4).time(), always=False)
    assert night_shift.covers(datetime(2025, 2, 7, 23, 0, tzinfo=timezone.utc))  # Fri 23:00
    assert night_shift.covers(datetime(2025, 2, 8, 3, 0, tzinfo=timezone.utc))  # Sat 03:00
    assert not night_shift.covers(datetime(2025, 2, 8, 5, 0, tzinfo=timezone.utc))
    assert not night_shift.covers(datetime(2025, 2, 7, 3, 0, tzinfo=timezone.utc))  # Fri 03:00


@pytest.mark.parametrize(("at", "verdict"), [(NIGHT, "hold"), (DAY, "allow")])
def test_thresholds_are_stricter_outside_staffed_hours(at: datetime, verdict: str) -> None:
    policy = parse_policy(MINIMAL)
    signals = {"sha256": signal("sha256"),
               "nsfw_image": signal("nsfw_image", "clear", score=0.7, model="open_nsfw@1")}
    decision = decide_content(policy, "image", "i-1", signals, deadline_passed=False, at=at)
    assert decision is not None and decision.verdict == verdict
    assert decision.staffed is (at == DAY)
    assert decision.policy_version == "test-1"


def test_default_policy_holds_a_classifier_hit_at_night_only() -> None:
    signals = {name: signal(name) for name in DEFAULT.required["image"]}
    signals["nsfw_image"] = signal("nsfw_image", "clear", score=0.75)
    night = decide_content(DEFAULT, "image", "i-1", signals, deadline_passed=False, at=NIGHT)
    day = decide_content(DEFAULT, "image", "i-1", signals, deadline_passed=False, at=DAY)
    assert night is not None and (night.verdict, night.action) == ("hold", "hold_for_review")
    assert [r.detector for r in night.reasons] == ["nsfw_image"]
    assert day is not None and day.verdict == "allow"
    assert night.decision_id != day.decision_id


def test_text_abuse_hides_a_post_and_the_stronger_rule_wins() -> None:
    signals = {"text_abuse": signal("text_abuse", "match", content_type="post",
                                    content_id="p-1", score=0.97)}
    decision = decide_content(DEFAULT, "post", "p-1", signals, deadline_passed=False, at=DAY)
    assert decision is not None
    assert (decision.verdict, decision.action) == ("hold", "hide")


# ------------------------------------------------------------------------------- shadow


def test_shadow_rule_reports_without_acting() -> None:
    policy = parse_policy(MINIMAL)
    signals = {"sha256": signal("sha256"), "nsfw_image": signal("nsfw_image", score=0.55)}
    decision = decide_content(policy, "image", "i-1", signals, deadline_passed=False, at=DAY)
    assert decision is not None and decision.verdict == "allow" and decision.action is None
    (effect,) = decision.shadow
    assert (effect.detector, effect.would_action, effect.would_severity) == (
        "shadow:nsfw_strict_trial", "hold_for_review", "low")


def test_default_pdq_near_match_is_shadow_and_pdq_match_blocks() -> None:
    near = {name: signal(name) for name in DEFAULT.required["image"]}
    near["pdq"] = signal("pdq", "clear", distance=40, evidence={"bank": "b", "label": "x"})
    decision = decide_content(DEFAULT, "image", "i-1", near, deadline_passed=False, at=DAY)
    assert decision is not None and decision.verdict == "allow"
    assert [e.rule for e in decision.shadow] == ["pdq_near_match"]
    close = {"pdq": signal("pdq", "match", distance=10,
                           evidence={"bank": "b", "label": "csam", "severity": "critical"})}
    blocked = decide_content(DEFAULT, "image", "i-1", close, deadline_passed=False, at=DAY)
    assert blocked is not None and blocked.verdict == "block"  # at once, sha256/md5 missing
    assert blocked.alerts[0].kind == "hash_match" and blocked.alerts[0].severity == "critical"


# ------------------------------------------------------------------------------- routes


def test_routes_page_every_high_alert_outside_staffed_hours() -> None:
    assert "pagerduty" in DEFAULT.route("thread_raid", "high", NIGHT)
    assert "pagerduty" not in DEFAULT.route("thread_raid", "high", DAY)
    assert DEFAULT.route("thread_raid", "high", DAY) == ("alertmanager", "webhook")
    assert "pagerduty" in DEFAULT.route("hash_match", "high", DAY)  # always pages
    assert "pagerduty" in DEFAULT.route("anything", "critical", DAY)
    assert DEFAULT.route("anything", "low", NIGHT) == ()


# ------------------------------------------------------------------------------- reload, CLI


def test_hot_reload_by_mtime_keeps_the_old_policy_on_a_bad_edit(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(MINIMAL)
    outcomes: list[str] = []
    store = PolicyStore(path, on_reload=lambda outcome, _: outcomes.append(outcome))
    assert store().version == "test-1"
    assert not store.reload_if_changed()
    path.write_text(MINIMAL.replace('"test-1"', '"test-2"'))
    os.utime(path, (1, 1_000_000))
    assert store.reload_if_changed() and store().version == "test-2"
    path.write_text(MINIMAL.replace('"test-1"', '"test-3"').replace("min_score = 0.9", "x = 1"))
    os.utime(path, (1, 2_000_000))
    assert not store.reload_if_changed()
    assert store().version == "test-2"
    assert outcomes == ["ok", "error"]


def test_policy_check_summarizes_mitigations_paging_and_night_burst_thresholds() -> None:
    lines = summarize(DEFAULT)
    by_part = dict(line.split(": ", 1) for line in lines)
    assert set(by_part) == {"rules", "required detectors", "mitigations", "staffed hours",
                            "paging", "burst kinds stricter when unstaffed"}
    assert "raid_restrict_thread (shadow) (restrict_thread on thread_raid, 60 min)" in (
        by_part["mitigations"])
    assert "re-page after 15 min via pagerduty" in by_part["paging"]
    assert "new_account_swarm" in by_part["burst kinds stricter when unstaffed"]


def test_cli_policy_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    result = CliRunner().invoke(main, ["policy", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "policy_version=test-1" in result.output
    assert "nsfw_strict_trial (shadow)" in result.output
    assert "staffed hours: mon,tue,wed,thu,fri 08:00-22:00 Europe/Berlin" in result.output
    assert "required detectors: image: sha256" in result.output
    assert "mitigations: none" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace("min_score = 0.9", "min_score = 1.9"))
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:15: rules[0].min_score" in result.output
    missing = CliRunner().invoke(main, ["policy", "check", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
