"""Vigil's Grafana dashboards, generated from code (grafanalib) into deploy/grafana/dashboards/.

    python deploy/grafana/dashboards.py          # write the JSON files
    python deploy/grafana/dashboards.py --check  # exit 1 if the committed JSON is stale
    python deploy/grafana/dashboards.py --docs   # the panel tables of docs/observability.md

Each panel is a `Panel` value: its title, the question it answers (shown as the panel's
description in Grafana and in the docs) and its PromQL. Tests parse every expression with
promtool and run them against a real Prometheus scraping `vigil run --demo`
(tests/unit/test_dashboards.py, tests/integration/test_observability.py). Not part of the
installed package: only the deploy tooling and the tests import it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
#: The data source's uid in provisioning/datasources/prometheus.yml.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
#: Grafana's own variables, with the values the tests substitute to run a query on Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h"}
RATE = "$__rate_interval"

Kind = Literal["timeseries", "stat", "barchart"]


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and its legend."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """A panel: what it answers and how."""

    title: str
    answers: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Kind = "timeseries"
    stacked: bool = False
    #: Instant query as a table (bar charts over the whole range, e.g. by hour of day) whose
    #: rows are sorted by, and plotted against, this label.
    x_label: str | None = None


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: uid, title and panels (laid out two per row)."""

    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def quantile(phi: float, metric: str, by: str = "") -> str:
    """histogram_quantile over a rate of `metric`_bucket, grouped by `le` and `by`."""
    labels = ", ".join(x for x in ("le", by) if x)
    return f"histogram_quantile({phi}, sum by ({labels}) (rate({metric}_bucket[{RATE}])))"


LAG = ("sum by (role, topic) (clamp_min(faust_topic_partition_end_offset"
       " - faust_topic_partition_offset_commited, 0))")

OVERVIEW = Dashboard(
    uid="vigil-overview",
    title="Vigil / Overview",
    description="Is the pipeline keeping up: throughput, latency to verdict, verdict mix, lag.",
    panels=(
        Panel("Input events per topic", "Are forums sending, and how much, per input topic?",
              (q(f"sum by (topic) (rate(vigil_events_in_total[{RATE}]))", "{{topic}}"),),
              unit="ops"),
        Panel("Messages produced per topic",
              "What Vigil writes: signals, verdicts, takedowns, alerts, dead letters per second.",
              (q(f"sum by (topic) (rate(faust_topic_messages_sent_total[{RATE}]))", "{{topic}}"),),
              unit="ops"),
        Panel("Verdict latency (intake → verdict)",
              "How long after intake reads a post or image does its verdict leave? p50 and p99 "
              "per content type; the decide deadline (default 5 s) bounds it.",
              (q(quantile(0.5, "vigil_verdict_latency_seconds", "content_type"),
                 "p50 {{content_type}}"),
               q(quantile(0.99, "vigil_verdict_latency_seconds", "content_type"),
                 "p99 {{content_type}}")),
              unit="s"),
        Panel("Verdict mix", "What share of contents is allowed, held, blocked? A rising hold "
              "share means a detector is down or slow.",
              (q(f"sum by (verdict) (rate(vigil_verdicts_total[{RATE}]))", "{{verdict}}"),),
              unit="ops", stacked=True),
        Panel("Consumer lag per role and topic",
              "How many messages is each role behind on each topic (end offset − committed)?",
              (q(LAG, "{{role}} {{topic}}"),)),
        Panel("Contents waiting for signals", "How many contents decide holds open, waiting "
              "for detectors (until their deadline)?",
              (q("sum(vigil_decide_pending)", "pending"),)),
        Panel("Dead letters per topic and reason",
              "Which forum producer sends unreadable events, and why?",
              (q(f"sum by (topic, reason) (rate(vigil_deadletters_total[{RATE}]))",
                 "{{topic}} {{reason}}"),),
              unit="ops"),
        Panel("Workers up per role", "How many Vigil processes of each role answer scrapes?",
              (q('sum by (role) (up{job=~"vigil.*"})', "{{role}}"),), kind="stat"),
    ),
)

SAFETY = Dashboard(
    uid="vigil-safety",
    title="Vigil / Safety",
    description="What Vigil does to content: takedowns, bank matches, alerts, night vs day.",
    panels=(
        Panel("Takedowns by action", "How many contents are hidden, held, blocked or restored "
              "per hour, and how severe?",
              (q("sum by (action, severity) (increase(vigil_takedowns_total[1h]))",
                 "{{action}} {{severity}}"),),
              stacked=True),
        Panel("Bank matches by bank and label", "Which hash banks match, with which label "
              "(never hash values)?",
              (q("sum by (bank, label) (increase(vigil_bank_matches_total[1h]))",
                 "{{bank}} {{label}}"),)),
        Panel("Alerts by kind", "Which incidents are raised (hash_match, report_surge, "
              "thread_raid, ...) over time, by severity?",
              (q("sum by (kind, severity) (increase(vigil_alerts_total[1h]))",
                 "{{kind}} {{severity}}"),),
              stacked=True),
        Panel("Time to takedown by hour of day (p90, UTC)",
              "Is Vigil slower to act at night than by day? p90 from intake to a non-allow "
              "decision, per UTC hour of the content's event time, over the dashboard's range.",
              (q("histogram_quantile(0.9, sum by (le, hour) "
                 "(increase(vigil_takedown_latency_seconds_bucket[$__range])))", "{{hour}}"),),
              unit="s", kind="barchart", x_label="hour"),
        Panel("Takedowns by hour of day (UTC)",
              "When do takedowns happen: how many per UTC hour of event time over the range?",
              (q("sum by (hour) (increase(vigil_takedown_latency_seconds_count[$__range]))",
                 "{{hour}}"),),
              kind="barchart", x_label="hour"),
        Panel("Signals by detector and status", "What each detector reports: clear, match, "
              "unchecked (could not check: held).",
              (q(f"sum by (detector, status) (rate(vigil_signals_total[{RATE}]))",
                 "{{detector}} {{status}}"),),
              unit="ops"),
        Panel("Pager deliveries by destination and outcome",
              "Do alerts reach on-call? delivered, retry, rejected, duplicate, not_configured.",
              (q("sum by (destination, outcome) (increase(vigil_pager_deliveries_total[1h]))",
                 "{{destination}} {{outcome}}"),)),
        Panel("Bank sizes", "How many hashes each bank holds on the hashing workers.",
              (q("max by (bank, signal_type) (vigil_bank_entries)",
                 "{{bank}} {{signal_type}}"),)),
    ),
)

CAPACITY = Dashboard(
    uid="vigil-capacity",
    title="Vigil / Capacity",
    description="Where the time goes: per-agent saturation, batch sizes, model and hash cost.",
    panels=(
        Panel("Agent saturation (busy fraction)",
              "Which agent is the bottleneck? Seconds spent in batches per second, per "
              "process: near 1 means its event loop is saturated; scale that role out.",
              (q(f"max by (role, agent) (rate(vigil_agent_batch_seconds_sum[{RATE}]))",
                 "{{role}} {{agent}}"),),
              unit="percentunit"),
        Panel("Agent batch time p99", "How long does one batch take per agent?",
              (q(quantile(0.99, "vigil_agent_batch_seconds", "agent"), "{{agent}}"),),
              unit="s"),
        Panel("Mean batch size per agent", "Are agents batching (big batches = efficient) or "
              "trickling one event at a time?",
              (q(f"sum by (agent) (rate(vigil_agent_batch_size_sum[{RATE}])) / "
                 f"sum by (agent) (rate(vigil_agent_batch_size_count[{RATE}]))", "{{agent}}"),)),
        Panel("Model inference p99 per chunk", "What does one classify chunk cost per model?",
              (q(quantile(0.99, "vigil_model_inference_seconds", "model"), "{{model}}"),),
              unit="s"),
        Panel("Mean model batch size", "Inputs per model call, per model.",
              (q(f"sum by (model) (rate(vigil_model_batch_size_sum[{RATE}])) / "
                 f"sum by (model) (rate(vigil_model_batch_size_count[{RATE}]))", "{{model}}"),)),
        Panel("Classify batches in flight", "Is classify at its in-flight bound "
              "(VIGIL_CLASSIFY_INFLIGHT), i.e. back-pressuring?",
              (q("sum by (model) (vigil_model_inflight_batches)", "{{model}}"),)),
        Panel("Model errors by reason", "Inputs a model could not classify (held): "
              "not_fetched, undecodable, model_error.",
              (q(f"sum by (model, reason) (rate(vigil_model_errors_total[{RATE}]))",
                 "{{model}} {{reason}}"),),
              unit="ops"),
        Panel("Burst detector state", "Keys and window entries the burst detectors hold "
              "(memory; bounded by their windows).",
              (q("sum by (agent) (vigil_burst_state_keys)", "{{agent}}"),)),
        Panel("Burst deferred behind verdicts", "Seconds per second burst waited for the "
              "verdict path of its process to catch up (1 = waiting all the time: its alerts "
              "lag; give burst its own worker).",
              (q(f"sum by (loop) (rate(vigil_deferred_seconds_total[{RATE}]))", "{{loop}}"),),
              unit="s"),
        Panel("Image hash p99", "Decode + hash + bank lookup of one image.",
              (q(quantile(0.99, "vigil_image_hash_seconds"), "p99"),), unit="s"),
        Panel("Producer send latency p99 (faust)", "Is the broker slow to acknowledge?",
              (q(quantile(0.99, "faust_producer_send_latency"), "p99"),), unit="ms"),
        Panel("Embedded broker memory", "One-box runs only: the embedded broker keeps every "
              "record in memory; move to Kafka before it runs out.",
              (q("max by (instance) (vigil_embedded_broker_rss_bytes)", "{{instance}}"),),
              unit="bytes"),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, SAFETY, CAPACITY)


def _panel(panel: Panel, index: int) -> g.Panel:
    targets = [
        g.Target(expr=query.expr, legendFormat=query.legend, refId=chr(ord("A") + i),
                 instant=panel.x_label is not None, datasource=DATASOURCE,
                 format="table" if panel.x_label else "time_series")
        for i, query in enumerate(panel.queries)
    ]
    common: dict[str, Any] = {
        "title": panel.title, "description": panel.answers, "dataSource": DATASOURCE,
        "targets": targets,
        "gridPos": g.GridPos(h=8, w=12, x=12 * (index % 2), y=8 * (index // 2)),
    }
    if panel.kind == "stat":
        return g.Stat(**common, format=panel.unit, reduceCalc="lastNotNull")
    if panel.kind == "barchart":
        # Table rows (one per label value) sorted by the label; `hour` is zero-padded ("02").
        sort = [{"id": "sortBy", "options": {"sort": [{"field": panel.x_label}]}},
                {"id": "organize", "options": {"excludeByName": {"Time": True}}}]
        return g.BarChart(**common, xTickLabelRotation=0, showValue="auto", transformations=sort,
                          extraJson={"fieldConfig": {"defaults": {"unit": panel.unit}},
                                     "options": {"xField": panel.x_label}})
    return g.TimeSeries(**common, unit=panel.unit,
                        stacking={"mode": "normal"} if panel.stacked else {},
                        fillOpacity=30 if panel.stacked else 0,
                        legendDisplayMode="list", legendPlacement="bottom")


def build(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard JSON model (provisioned: fixed uid, no id)."""
    model = g.Dashboard(
        title=dashboard.title, uid=dashboard.uid, description=dashboard.description,
        tags=["vigil"], timezone="utc", refresh="30s", time=g.Time("now-6h", "now"),
        panels=[_panel(p, i) for i, p in enumerate(dashboard.panels)],
    ).auto_panel_ids()
    data: dict[str, Any] = json.loads(json.dumps(model.to_json_data(), cls=DashboardEncoder))
    data.pop("id", None)
    return data


def render() -> dict[Path, str]:
    """Every dashboard file's path and exact content."""
    return {
        OUT / f"{d.uid}.json": json.dumps(build(d), indent=2, sort_keys=True) + "\n"
        for d in DASHBOARDS
    }


def expressions() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL as Grafana sends it) for every query."""
    return [(d.uid, p.title, query.expr)
            for d in DASHBOARDS for p in d.panels for query in p.queries]


def for_prometheus(expr: str) -> str:
    """A panel expression with Grafana's variables replaced, runnable on Prometheus."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def docs() -> str:
    """Markdown: per dashboard, each panel's question and query (for docs/observability.md)."""
    lines: list[str] = []
    for d in DASHBOARDS:
        lines += [f"### {d.title} (`{d.uid}`)", "", d.description, "",
                  "| panel | what it answers | PromQL |", "|---|---|---|"]
        for p in d.panels:
            exprs = "<br>".join(f"`{query.expr}`" for query in p.queries)
            lines.append(f"| {p.title} | {p.answers} | {exprs.replace('|', '&#124;')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON files are stale")
    parser.add_argument("--docs", action="store_true", help="print the panel tables (Markdown)")
    args = parser.parse_args(argv)
    if args.docs:
        print(docs())
        return 0
    stale = [p for p, text in render().items()
             if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path} (run python deploy/grafana/dashboards.py)", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in render().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
