"""Classification agent: open_nsfw on every image, the text model + rules on every post.

Thin by design (DESIGN §8): each input topic has its own consume loop (agents/consumer.py,
`classify.posts` and `classify.images`: classify reads every post, and faust's per-event stream
machinery cost more than the text model itself). A loop hands over what one poll fetched; it
is cut into sub-batches (images: `VIGIL_CLASSIFY_BATCH_SIZE`; posts: the whole poll, up to
`VIGIL_BATCH_SIZE`), each split into one chunk per inference thread and run through the pure
detectors on a thread pool per topic (decode, preprocess and onnxruntime all release the GIL,
so the event loop keeps heartbeating and the cores work in parallel), and each sub-batch's
signals (one per content) go to `safety.signals.v1` as soon as it is classified, so an image
poll that takes seconds in all answers its first images early.

Back-pressure: at most `VIGIL_CLASSIFY_INFLIGHT` sub-batches per topic are in the pool at once,
and a loop polls again only when its poll's signals are all delivered (its consumer keeps at
most one prefetched fetch meanwhile). Offsets become committable only then (at-least-once; signal
ids are derived from the input event, so a redelivery repeats them).

Thresholds are the policy's: the lowest `min_score` at which an enforcing policy rule acts on
the detector, at the event's time (staffed hours change it); the model manifest's default when
the policy has no such rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import msgspec

from agents.consumer import Batch
from agents.context import AgentContext, AgentSettings
from agents.detectors.nsfw_image import NsfwImageDetector
from agents.detectors.text_abuse import TextAbuseDetector
from agents.detectors.text_rules import RulesStore
from agents.fetch import ImageSource, image_source_from_settings
from agents.policy import Policy, PolicyStore
from models import Manifest, RuntimeOptions, load_model
from streams.codec import DecodeError, decode, encode
from streams.events import CloudEvent, SignalData
from streams.topics import IMAGES, POSTS, SIGNALS, TopicSpec

NAME = "classify"
# Image inference runs this much nicer than the rest of the worker. open_nsfw costs ≈ 35 ms of
# CPU per image on these cores, the whole post path ≈ 0.5 ms per post: with equal priority a
# backlog of images (8 % of the traffic) takes the cores from every post and from the other
# roles' event loop (bench/load.py, docs/performance.md). Nicer threads still get every idle
# cycle; an image that waits past decide's deadline is held, never allowed unchecked.
IMAGE_NICE = 10
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


def lower_priority(nice: int) -> None:
    """Thread-pool initializer: lower the calling thread's CPU priority by `nice` (Linux
    schedules threads, so this leaves the event loop and the other pools as they are)."""
    if nice:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: a plain thread
            tid = threading.get_native_id()
            # Relative: a worker started under `nice` keeps its images below its own loop.
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid)
                                                     + nice))


def _decoded(spec: TopicSpec, value: bytes | None) -> CloudEvent[Any] | None:
    try:
        return decode(spec, value)
    except DecodeError:
        return None


def register(ctx: AgentContext) -> None:
    """Load both models (ModelError at start-up if unusable) and start the two consume loops."""
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
    metrics = ctx.metrics

    def add_loop(spec: TopicSpec, name: str, model_ref: str,
                 detect: Callable[[Sequence[CloudEvent[Any]]], list[SignalData]],
                 sub_batch: int, image_source: ImageSource | None = None,
                 nice: int = 0) -> None:
        # One pool per topic: a post's chunk (≈ 1 ms) never queues behind an image chunk
        # (≈ 35 ms of CPU per image here) in a shared pool's FIFO.
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"vigil-{name}",
                                  initializer=lower_priority, initargs=(nice,))
        inference_seconds = metrics.model_inference_seconds.labels(model_ref)
        model_batch = metrics.model_batch_size.labels(model_ref)
        inflight = metrics.model_inflight.labels(model_ref)
        batch_seconds = metrics.agent_batch_seconds.labels(f"{NAME}.{name}")
        batch_size = metrics.agent_batch_size.labels(f"{NAME}.{name}")
        slots = asyncio.Semaphore(settings.classify_inflight)

        def run_chunk(chunk: Sequence[CloudEvent[Any]]) -> list[SignalData]:
            started = time.perf_counter()
            signals = detect(chunk)
            inference_seconds.observe(time.perf_counter() - started)
            model_batch.observe(len(chunk))
            return signals

        async def classify(valid: list[CloudEvent[Any]]) -> None:
            """One sub-batch: fetch URL images, infer on the pool, deliver its signals."""
            with batch_seconds.time():
                batch_size.observe(len(valid))
                problems: list[str | None] = [None] * len(valid)
                if image_source is not None:  # URL images: the allow-listed fetcher
                    fetched = await image_source.resolve_all(valid)
                    valid = [f.inline() for f in fetched]
                    problems = [f"url image not fetched: {f.problem}" if f.problem else None
                                for f in fetched]
                loop = asyncio.get_running_loop()
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

        async def bounded(valid: list[CloudEvent[Any]]) -> None:
            async with slots:
                await classify(valid)

        async def classify_records(batch: Batch) -> None:
            # Undecodable records are intake's to dead-letter; here they are skipped.
            valid = [event for record in batch.records
                     if (event := _decoded(spec, record.value)) is not None]
            # Each sub-batch delivers its own signals as soon as it is classified (an image
            # poll can take seconds in all); the loop commits the poll once all are delivered.
            await asyncio.gather(*(bounded(valid[i:i + sub_batch])
                                   for i in range(0, len(valid), sub_batch)))

        # Posts' verdicts wait on this loop's signals; images' inference runs in low-priority
        # threads, and an image backlog is no reason to hold burst back.
        ctx.consume(f"{NAME}.{name}", (spec,), classify_records, verdict_path=spec is POSTS)

    add_loop(IMAGES, "images", image_model.ref, images.detect_batch,
             settings.classify_batch_size, source, IMAGE_NICE)
    # Posts: a whole poll at a time. The text model costs ≈ 0.1 ms a post, so a poll of 500 is
    # ≈ 30 ms on two threads, while each sub-batch waits once for its signals' delivery
    # (a produce round trip): sub-batches of 32 capped posts at 2 × 32 per round trip.
    add_loop(POSTS, "posts", text_model.ref, posts.detect_batch, settings.batch_size)

    async def reload_rules_and_policy() -> None:
        await asyncio.to_thread(rules.reload_if_changed)
        await asyncio.to_thread(policies.reload_if_changed)

    ctx.app.timer(settings.text_rules_reload_seconds, name="vigil.classify.reload_rules")(
        reload_rules_and_policy
    )
