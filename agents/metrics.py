"""Every Prometheus metric of Vigil, built in one place on an injectable registry.

Label values are bounded (topic, agent, verdict, bank name, reason *class*): never a content id,
a hash value or free text, so cardinality stays small and bank contents never reach Prometheus.
Dashboards and alert rules (deploy/) name these metrics; a test checks they exist.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Agent batches take from ~100 µs (pass-through) to seconds (image models): log-spaced buckets.
_BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Input → verdict is bounded by the decide deadline (default 5 s): finer below it.
_VERDICT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 30, 60)


class Metrics:
    """The metric objects; pass a fresh `CollectorRegistry` in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "vigil_events_in_total", "Input events read, per topic", ["topic"], registry=r
        )
        self.deadletters = Counter(
            "vigil_deadletters_total",
            "Inputs sent to the dead-letter topic, per source topic and reason class",
            ["topic", "reason"],
            registry=r,
        )
        self.agent_batch_seconds = Histogram(
            "vigil_agent_batch_seconds",
            "Time an agent spends on one batch",
            ["agent"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.agent_batch_size = Histogram(
            "vigil_agent_batch_size",
            "Events per agent batch",
            ["agent"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self.signals = Counter(
            "vigil_signals_total", "Signals emitted", ["detector", "status"], registry=r
        )
        self.bank_matches = Counter(
            "vigil_bank_matches_total", "Hash-bank matches", ["bank", "label"], registry=r
        )
        self.bank_entries = Gauge(
            "vigil_bank_entries", "Entries loaded per bank", ["bank", "signal_type"], registry=r
        )
        self.bank_reload_seconds = Histogram(
            "vigil_bank_reload_seconds", "Time to load all banks", registry=r
        )
        self.verdicts = Counter(
            "vigil_verdicts_total", "Verdicts emitted", ["content_type", "verdict"], registry=r
        )
        self.takedowns = Counter(
            "vigil_takedowns_total", "Takedowns emitted", ["action", "severity"], registry=r
        )
        self.alerts = Counter(
            "vigil_alerts_total", "Alerts emitted", ["kind", "severity"], registry=r
        )
        self.verdict_latency = Histogram(
            "vigil_verdict_latency_seconds",
            "From intake reading an input to its verdict",
            ["content_type"],
            buckets=_VERDICT_BUCKETS,
            registry=r,
        )
        self.decide_pending = Gauge(
            "vigil_decide_pending", "Contents waiting for detector signals", registry=r
        )
        self.ingest_requests = Counter(
            "vigil_ingest_requests_total", "HTTP ingest requests", ["status"], registry=r
        )
        self.broker_rss = Gauge(
            "vigil_embedded_broker_rss_bytes",
            "Resident memory of the embedded broker (grows: it keeps every record)",
            registry=r,
        )
