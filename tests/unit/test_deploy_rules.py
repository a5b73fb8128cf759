"""Prometheus rules and config in deploy/prometheus: `promtool check` and `promtool test rules`.

promtool comes from Debian's `prometheus` package (.ci/run installs it). In CI (CI=true) a
missing promtool fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"


def require_tool(name: str) -> str:
    """Path of a binary; fails under CI (it must be installed there), skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (Debian package `prometheus`; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def test_rule_files_exist() -> None:
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    assert TEST_FILES, "no promtool unit tests in deploy/prometheus/tests"


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    result = run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    """The compose stack's prometheus.yml, including the rule files it globs."""
    promtool = require_tool("promtool")
    result = run([promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_test_rules() -> None:
    promtool = require_tool("promtool")
    result = run([promtool, "test", "rules", *map(str, TEST_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_severity_summary_and_a_runbook_anchor_that_exists() -> None:
    runbook = RUNBOOK.read_text()
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', runbook))
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{name}: alert names are snake_case kinds"
        assert rule["labels"]["severity"] in {"critical", "high", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name}", name
        assert name in anchors, f'docs/runbook.md has no <a id="{name}"></a> section'


def test_every_alert_is_unit_tested_firing() -> None:
    """Each alert has at least one promtool case where it fires (non-empty exp_alerts)."""
    fired: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    missing = {r["alert"] for r in alert_rules()} - fired
    assert not missing, f"alerts without a firing promtool test: {sorted(missing)}"
