"""Every Prometheus metric of Vigil, built in one place on an injectable registry.

Label values are bounded (topic, agent, verdict, bank name, reason *class*): never a content id,
a hash value or free text, so cardinality stays small and bank contents never reach Prometheus.
Dashboards and alert rules (deploy/) name these metrics; a test checks they exist.
"""

from __future__ import annotations

from typing import Any

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
        # --- hashing agent (images): reason classes and outcomes are bounded sets
        self.image_unchecked = Counter(
            "vigil_image_unchecked_total",
            "Images that could not be checked (held), per reason class (empty, too_large, "
            "too_many_pixels, not_image, corrupt, fetch_refused, fetch_failed, fetch_timeout, "
            "fetch_too_large)",
            ["reason"], registry=r,
        )
        self.image_fetches = Counter(
            "vigil_image_fetches_total",
            "URL image fetches per outcome (ok, refused, failed, timeout, too_large)",
            ["outcome"], registry=r,
        )
        self.image_hash_seconds = Histogram(
            "vigil_image_hash_seconds", "Decode + hash + bank lookup of one image",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
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
        self.deferred_seconds = Counter(
            "vigil_deferred_seconds_total",
            "Seconds a background consume loop (burst) waited for the verdict path of its "
            "process to catch up before polling",
            ["loop"],
            registry=r,
        )
        self.burst_state_keys = Gauge(
            "vigil_burst_state_keys",
            "Keys and window entries held by the burst detectors, per agent (bounded by windows)",
            ["agent"], registry=r,
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
        # --- classify agent (models): `model` is a manifest `name@version` (a bounded set)
        self.model_inference_seconds = Histogram(
            "vigil_model_inference_seconds",
            "One classify chunk on a worker thread: decode, preprocess and model inference",
            ["model"], buckets=_BATCH_BUCKETS, registry=r,
        )
        self.model_batch_size = Histogram(
            "vigil_model_batch_size", "Inputs per model call", ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )
        self.model_errors = Counter(
            "vigil_model_errors_total",
            "Inputs a model could not classify (signal `unchecked`), per reason class "
            "(not_fetched, undecodable, model_error)",
            ["model", "reason"], registry=r,
        )
        self.model_inflight = Gauge(
            "vigil_model_inflight_batches", "Classify batches being processed", ["model"],
            registry=r,
        )
        # --- policy, reviews, paging (decide and notify agents)
        self.policy_reloads = Counter(
            "vigil_policy_reloads_total", "Policy file loads, per outcome (ok, error)",
            ["outcome"], registry=r,
        )
        self.policy_version = Gauge(
            "vigil_policy_version_info", "The policy version in force (value 1)", ["version"],
            registry=r,
        )
        self.shadow_hits = Counter(
            "vigil_shadow_hits_total", "What shadow rules would have done",
            ["rule", "would_action"], registry=r,
        )
        self.reviews = Counter(
            "vigil_reviews_total", "Moderator reviews, per outcome and result",
            ["outcome", "result"], registry=r,
        )
        self.pager_deliveries = Counter(
            "vigil_pager_deliveries_total",
            "Alert delivery attempts per destination and outcome "
            "(delivered, retry, rejected, duplicate, not_configured)",
            ["destination", "outcome"], registry=r,
        )
        self.pager_delivery_seconds = Histogram(
            "vigil_pager_delivery_seconds", "Time of one delivery attempt", ["destination"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.pager_pending = Gauge(
            "vigil_pager_pending", "Alert deliveries not yet done (retrying or in flight)",
            registry=r,
        )
        self.pager_repages = Counter(
            "vigil_pager_repages_total", "Re-pages of unacknowledged critical alerts",
            registry=r,
        )
        # --- observability (deploy/grafana safety dashboard): night vs day response. `hour` is
        # the UTC hour (0-23) of the content's event time: 24 values, so cardinality stays small.
        self.takedown_latency = Histogram(
            "vigil_takedown_latency_seconds",
            "From intake reading a content to its non-allow decision, per UTC hour of the "
            "content's event time",
            ["hour"], buckets=_VERDICT_BUCKETS, registry=r,
        )
        # Forum event time → verdict: what a member experiences, including time spent before
        # Vigil saw the event (forum → Kafka, consumer lag). Backfills and replays land in the
        # top bucket, so alert on a quantile of live traffic, not on the maximum.
        self.event_to_verdict = Histogram(
            "vigil_event_to_verdict_seconds",
            "From the content's event time on the forum to its verdict",
            ["content_type"], buckets=_VERDICT_BUCKETS + (300, 3600), registry=r,
        )
        self._faust_metrics: Any = None

    def faust_metrics(self) -> Any:
        """faust's own Prometheus sensor metrics (`faust_*`) on this registry, created once.

        They carry per-partition end and committed offsets (consumer lag), send latency and
        rebalances. The prefix is fixed (`faust`), not the per-role app id, so dashboards and
        alert rules can name them.
        """
        if self._faust_metrics is None:
            from faust.sensors.prometheus import FaustMetrics

            self._faust_metrics = FaustMetrics.create(self.registry, "faust")
        return self._faust_metrics
