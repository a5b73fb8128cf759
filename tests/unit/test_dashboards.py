"""The generated Grafana dashboards: current, parseable, provisioned, documented, and naming
only metrics Vigil declares. (Against live data: tests/integration/test_observability.py.)"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from agents.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))


def load_generator() -> ModuleType:
    """deploy/grafana/dashboards.py is a script, not an installed module: load it by path."""
    spec = importlib.util.spec_from_file_location("vigil_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


gen = load_generator()


def require_tool(name: str) -> str:
    """Path of a binary; fails under CI (it must be installed there), skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (Debian package `prometheus`; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def declared_series_names() -> set[str]:
    """Every sample name Vigil's /metrics can expose (Vigil's metrics and faust's sensor)."""
    metrics = Metrics()
    metrics.faust_metrics()
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "summary": ("_sum", "_count", "")}
    for family in metrics.registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:vigil|faust)_[a-z0-9_]+)\b", expr))


def rule_expressions() -> list[str]:
    exprs = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            exprs.extend(rule["expr"] for rule in group["rules"])
    return exprs


def test_committed_dashboards_are_current() -> None:
    rendered = gen.render()
    for path, text in rendered.items():
        assert path.exists(), f"{path.name} missing: run python deploy/grafana/dashboards.py"
        assert path.read_text() == text, f"{path.name} stale: run python deploy/grafana/dashboards.py"
    extra = set((GRAFANA / "dashboards").glob("*.json")) - set(rendered)
    assert not extra, f"dashboard files the generator does not make: {sorted(extra)}"


def test_dashboards_have_the_required_views() -> None:
    uids = {d.uid for d in gen.DASHBOARDS}
    assert {"vigil-overview", "vigil-safety", "vigil-capacity"} <= uids
    exprs = " ".join(e for _, _, e in gen.expressions())
    for needle in ("vigil_events_in_total", "vigil_verdict_latency_seconds_bucket",
                   "vigil_verdicts_total", "faust_topic_partition_end_offset",
                   "vigil_takedowns_total", "vigil_bank_matches_total", "vigil_alerts_total",
                   "vigil_takedown_latency_seconds_bucket", "vigil_agent_batch_seconds_sum",
                   "vigil_agent_batch_size_sum"):
        assert needle in exprs, needle


def test_every_panel_has_a_question_a_query_and_a_unique_id() -> None:
    for dashboard in gen.DASHBOARDS:
        model = gen.build(dashboard)
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), dashboard.uid
        for panel in model["panels"]:
            assert panel["description"], panel["title"]
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"] == gen.DATASOURCE


def test_dashboards_and_rules_name_only_declared_metrics() -> None:
    declared = declared_series_names()
    for uid, title, expr in gen.expressions():
        unknown = metric_names(expr) - declared
        assert not unknown, f"{uid} / {title}: undeclared metric(s) {sorted(unknown)}"
    for expr in rule_expressions():
        unknown = metric_names(expr) - declared
        assert not unknown, f"rule {expr!r}: undeclared metric(s) {sorted(unknown)}"


def test_every_panel_expression_parses_with_promtool(tmp_path: Path) -> None:
    """promtool has no offline `query` parse: wrap each expression in a recording rule."""
    promtool = require_tool("promtool")
    rules = [{"record": f"vigil:dashboard_check_{i}", "expr": gen.for_prometheus(expr)}
             for i, (_, _, expr) in enumerate(gen.expressions())]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)],  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_provisioning_points_at_the_dashboards_and_the_datasource_uid() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [d["uid"] for d in datasources["datasources"]] == [gen.DATASOURCE["uid"]]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "vigil.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    target = providers[0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{target}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_docs_show_every_panel_query() -> None:
    docs = (ROOT / "docs" / "observability.md").read_text()
    for uid, title, expr in gen.expressions():
        assert expr.replace("|", "&#124;") in docs, (
            f"docs/observability.md lacks {uid} / {title}: paste "
            "`python deploy/grafana/dashboards.py --docs`")
    json.dumps(gen.docs())  # renders
