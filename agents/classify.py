"""Classification agent: open_nsfw on every image, the text model + rules on every post.

Thin by design (DESIGN §8): each input topic has its own faust agent (`classify_images`,
`classify_posts`) that takes micro-batches (`VIGIL_CLASSIFY_BATCH_SIZE` events or
`VIGIL_CLASSIFY_BATCH_WITHIN` seconds), splits a batch into one chunk per inference thread,
runs the pure detectors on a thread pool (decode, preprocess and onnxruntime all release the
GIL, so the event loop keeps heartbeating and the cores work in parallel), and sends one signal
per content to `safety.signals.v1`.

Back-pressure: each agent runs `VIGIL_CLASSIFY_INFLIGHT` actors, each holding at most one batch,
so at most that many batches per topic are in the pool; an actor awaits its batch before it
takes the next, so when the pool is busy faust's stream buffer fills and the consumer pauses
fetching. Offsets are acked only after a batch's signals are delivered (one outbox per batch),
so a crash redelivers, never skips (at-least-once; signal ids are derived from the content).

Thresholds are the policy's: the lowest `min_score` at which an enforcing policy rule acts on
the detector, at the event's time (staffed hours change it); the model manifest's default when
the policy has no such rule.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import msgspec

from agents.context import AgentContext, AgentSettings, decode_events
from agents.detectors.nsfw_image import NsfwImageDetector
from agents.detectors.text_abuse import TextAbuseDetector
from agents.detectors.text_rules import RulesStore
from agents.fetch import ImageSource, image_source_from_settings
from agents.policy import Policy, PolicyStore
from models import Manifest, RuntimeOptions, load_model
from streams.codec import encode
from streams.events import CloudEvent, SignalData
from streams.topics import IMAGES, POSTS, SIGNALS, TopicSpec

NAME = "classify"
IMAGE_MODEL = "open_nsfw"
TEXT_MODEL = "alt_profanity_check"
log = logging.getLogger(__name__)


class ClassifySettings(AgentSettings, Protocol):
    """The settings this role reads on top of `AgentSettings` (see vigil/settings.py)."""

    @property
    def models_dir(self) -> Path | None: ...
    @property
    def model_intra_op_threads(self) -> int: ...
    @property
    def model_inter_op_threads(self) -> int: ...
    @property
    def model_graph_optimization(self) -> Literal["disable", "basic", "extended", "all"]: ...
    @property
    def classify_threads(self) -> int: ...
    @property
    def classify_batch_size(self) -> int: ...
    @property
    def classify_batch_within(self) -> float: ...
    @property
    def classify_inflight(self) -> int: ...
    @property
    def text_rules(self) -> Path | None: ...
    @property
    def text_rules_reload_seconds(self) -> float: ...
    @property
    def policy(self) -> Path | None: ...


def policy_threshold(policy: Policy, detector: str, manifest: Manifest, staffed: bool) -> float:
    """Lowest score at which an enforcing rule of `policy` acts on `detector`, staffed or not."""
    scores = [
        threshold
        for rule in policy.rules
        if rule.mode == "enforce" and detector in rule.detectors
        and (not rule.models or manifest.name in rule.models or manifest.ref in rule.models)
        and (threshold := rule.thresholds(staffed).min_score) is not None
    ]
    return min(scores) if scores else manifest.default_threshold


class PolicyThreshold:
    """The threshold in force for an event: `policy_threshold` of the policy in force at the
    event's time (staffed hours or not), remembered per policy and staffed flag.

    Why: it is asked once per content from the inference threads, and walking the policy's rules
    costs ≈ 6 µs a post, as much as decoding the event; under the GIL that time is taken from
    the event loop, which is what limits posts/s (see docs/models.md). Thread-safe: a reloaded policy (a new object
    from the store) starts a new cache, swapped in as one tuple so no thread mixes the two.
    """

    def __init__(self, policies: Callable[[], Policy], detector: str, manifest: Manifest) -> None:
        self._policies = policies
        self._detector = detector
        self._manifest = manifest
        self._entry: tuple[Policy | None, dict[bool, float]] = (None, {})

    def __call__(self, event: CloudEvent[Any]) -> float:
        policy = self._policies()
        entry = self._entry
        if entry[0] is not policy:
            entry = self._entry = (policy, {})
        staffed = policy.staffed_hours.covers(event.time)
        cache = entry[1]
        if staffed not in cache:
            cache[staffed] = policy_threshold(policy, self._detector, self._manifest, staffed)
        return cache[staffed]


def split(items: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """`items` in at most `parts` contiguous chunks of near-equal size (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


_REASON_CLASSES = (("url image", "not_fetched"), ("model error", "model_error"))


def reason_class(reason: str) -> str:
    """Bounded metric label for an `unchecked` reason."""
    return next((label for prefix, label in _REASON_CLASSES if reason.startswith(prefix)),
                "undecodable")


def register(ctx: AgentContext) -> None:
    """Load both models (ModelError at start-up if unusable) and register the two agents."""
    settings = cast(ClassifySettings, ctx.settings)
    options = RuntimeOptions(
        intra_op_threads=settings.model_intra_op_threads,
        inter_op_threads=settings.model_inter_op_threads,
        graph_optimization=settings.model_graph_optimization,
        models_dir=settings.models_dir,
    )
    image_model = load_model(IMAGE_MODEL, options)
    text_model = load_model(TEXT_MODEL, options)
    policies = PolicyStore(settings.policy)
    rules = RulesStore(settings.text_rules)
    images = NsfwImageDetector(image_model, PolicyThreshold(
        policies, "nsfw_image", image_model.manifest))
    posts = TextAbuseDetector(text_model, PolicyThreshold(
        policies, "text_abuse", text_model.manifest), rules)
    threads = settings.classify_threads or os.cpu_count() or 1
    source = image_source_from_settings(settings, ctx.metrics)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vigil-classify")
    metrics = ctx.metrics

    def add_agent(spec: TopicSpec, name: str, model_ref: str,
                  detect: Callable[[Sequence[CloudEvent[Any]]], list[SignalData]],
                  image_source: ImageSource | None = None) -> None:
        inference_seconds = metrics.model_inference_seconds.labels(model_ref)
        model_batch = metrics.model_batch_size.labels(model_ref)
        inflight = metrics.model_inflight.labels(model_ref)
        batch_seconds = metrics.agent_batch_seconds.labels(f"{NAME}.{name}")
        batch_size = metrics.agent_batch_size.labels(f"{NAME}.{name}")

        def run_chunk(chunk: Sequence[CloudEvent[Any]]) -> list[SignalData]:
            started = time.perf_counter()
            signals = detect(chunk)
            inference_seconds.observe(time.perf_counter() - started)
            model_batch.observe(len(chunk))
            return signals

        async def classify(stream: Any) -> None:
            loop = asyncio.get_running_loop()
            async for events in stream.take_events(settings.classify_batch_size,
                                                   settings.classify_batch_within):
                with batch_seconds.time():
                    batch_size.observe(len(events))
                    valid = [e for _, e, _ in decode_events(spec, events) if e is not None]
                    if not valid:
                        continue
                    problems: list[str | None] = [None] * len(valid)
                    if image_source is not None:  # URL images: the allow-listed fetcher
                        fetched = await image_source.resolve_all(valid)
                        valid = [f.inline() for f in fetched]
                        problems = [f"url image not fetched: {f.problem}" if f.problem else None
                                    for f in fetched]
                    inflight.inc()
                    try:
                        results = await asyncio.gather(*(
                            loop.run_in_executor(pool, run_chunk, chunk)
                            for chunk in split(valid, threads)))
                    finally:
                        inflight.dec()
                    signals = [s for chunk in results for s in chunk]
                    signals = [s if problem is None else msgspec.structs.replace(
                                   s, evidence={**s.evidence, "reason": problem})
                               for s, problem in zip(signals, problems, strict=True)]
                    # One outbox per batch: every signal is delivered before take_events
                    # acks the batch (at-least-once), without an await per record.
                    statuses: Counter[tuple[str, str]] = Counter()
                    async with ctx.outbox() as out:
                        for event, signal in zip(valid, signals, strict=True):
                            statuses[signal.detector, signal.status] += 1
                            if signal.status == "unchecked":
                                metrics.model_errors.labels(model_ref, reason_class(
                                    str(signal.evidence.get("reason", "")))).inc()
                            # Derived from the input event: a redelivery repeats the id
                            # (consumers dedup), an edited post (a new event) gets a new one.
                            out.add(SIGNALS, *encode(
                                SIGNALS, signal, source="vigil/classify",
                                event_id=f"sig-{signal.detector}-{signal.content_id}-{event.id}",
                            ))
                    for (detector, status), count in statuses.items():
                        metrics.signals.labels(detector, status).inc(count)

        classify.__name__ = classify.__qualname__ = name
        ctx.app.agent(ctx.topic(spec), name=f"vigil.classify.{name}",
                      concurrency=settings.classify_inflight)(classify)

    add_agent(IMAGES, "classify_images", image_model.ref, images.detect_batch, source)
    add_agent(POSTS, "classify_posts", text_model.ref, posts.detect_batch)

    async def reload_rules_and_policy() -> None:
        await asyncio.to_thread(rules.reload_if_changed)
        await asyncio.to_thread(policies.reload_if_changed)

    ctx.app.timer(settings.text_rules_reload_seconds, name="vigil.classify.reload_rules")(
        reload_rules_and_policy
    )
