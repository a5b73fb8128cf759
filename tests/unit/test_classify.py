"""Classify role: detectors (thresholds, rules, fail-closed), rules hot reload, policy thresholds."""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.classify import (
    IMAGE_NICE,
    PolicyThreshold,
    lower_priority,
    policy_threshold,
    reason_class,
    split,
)
from agents.detectors.nsfw_image import NsfwImageDetector
from agents.detectors.text_abuse import TextAbuseDetector, non_english
from agents.detectors.text_rules import RulesError, RulesStore, parse_rules
from agents.policy import load_default_policy
from models import ImageModel, TextModel, load_manifest, load_model
from models.build import ensure_built
from streams.events import Account, CloudEvent, ImageData, PostData

from .factories import png_bytes

RULES = """
version = "r1"
[[rule]]
id = "incitement"
terms = ["kys", "kill yourself"]
patterns = ['\\bk+\\s*y+\\s*s+\\b']
[[rule]]
id = "parenting-only"
boards = ["parenting"]
terms = ["formula scam"]
"""


@pytest.fixture(scope="module")
def text_model() -> TextModel:
    ensure_built()
    model = load_model("alt_profanity_check")
    assert isinstance(model, TextModel)
    return model


@pytest.fixture(scope="module")
def image_model() -> ImageModel:
    model = load_model("open_nsfw")
    assert isinstance(model, ImageModel)
    return model


def post(body: str, board: str | None = None, time: datetime | None = None) -> CloudEvent[Any]:
    return CloudEvent(specversion="1.0", id="e1", source="t", type="forum.post.created",
                      time=time, data=PostData(post_id="p1", thread_id="t1",
                                               author=Account(id="u1"), body=body, board=board))


def image(data: bytes | None = None, url: str | None = None) -> CloudEvent[Any]:
    return CloudEvent(specversion="1.0", id="e2", source="t", type="forum.image.uploaded",
                      data=ImageData(image_id="i1", post_id="p1", author=Account(id="u1"),
                                     data_b64=data, url=url))


def test_text_signal_carries_model_score_and_threshold(text_model: TextModel) -> None:
    detector = TextAbuseDetector(text_model, 0.7)
    [clean] = detector.detect(post("Any tips for teething?"))
    [hit] = detector.detect(post("Shut up, you stupid bitch."))
    assert (clean.status, hit.status) == ("clear", "match")
    for signal in (clean, hit):
        assert signal.detector == "text_abuse" and signal.model == text_model.ref
        assert signal.threshold == 0.7 and signal.score is not None
        assert (signal.content_type, signal.content_id, signal.author_id) == ("post", "p1", "u1")
    assert clean.score < 0.7 <= hit.score  # type: ignore[operator]


def test_rules_force_a_match_the_model_misses(text_model: TextModel) -> None:
    rules = parse_rules(RULES)
    detector = TextAbuseDetector(text_model, 0.7, lambda: rules)
    [signal] = detector.detect(post("just k y s already"))
    assert signal.status == "match" and signal.score == 1.0
    assert signal.evidence["rule"] == "incitement" and signal.evidence["rules_version"] == "r1"
    assert signal.evidence["model_score"] < 0.7
    # a term matches whole words only, after normalisation (full-width, invisible characters)
    assert detector.detect(post("ＫＩＬＬ\u200b YOURSELF"))[0].evidence.get("rule") == "incitement"
    assert detector.detect(post("skysail kayaks"))[0].status == "clear"
    # board rules apply on their board only
    assert detector.detect(post("total formula scam", board="parenting"))[0].status == "match"
    assert detector.detect(post("total formula scam", board="cooking"))[0].status == "clear"


def test_rules_file_hot_reload_keeps_old_rules_on_a_bad_edit(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    store = RulesStore(path)
    assert store().version == "r1" and store().match(None, "kys")
    path.write_text(RULES.replace('"r1"', '"r2"').replace('"kys", ', ""))
    os.utime(path, ns=(1, 10**18))  # a new mtime even on coarse-grained filesystems
    assert store.reload_if_changed() and store().version == "r2"
    assert store().match(None, "kys") == "incitement"  # still matched by the pattern
    path.write_text("[[rule]]\nid = 'x'\npatterns = ['(unclosed']\n")
    os.utime(path, ns=(1, 2 * 10**18))
    assert not store.reload_if_changed() and store().version == "r2"


def test_bad_rules_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not found"):
        RulesStore(tmp_path / "missing.toml")
    with pytest.raises(RulesError, match="bad pattern"):
        parse_rules("[[rule]]\nid = 'x'\npatterns = ['(unclosed']\n")
    with pytest.raises(RulesError, match="needs `terms` or `patterns`"):
        parse_rules("[[rule]]\nid = 'x'\n")


def test_non_english_is_flagged(text_model: TextModel) -> None:
    assert non_english("Привет, как дела?") and not non_english("Hello there, café")
    [signal] = TextAbuseDetector(text_model, 0.7).detect(post("Иди к черту, идиот"))
    assert signal.status == "clear" and signal.evidence == {"non_english": True}


class Broken:
    """A model whose inference fails (the runtime raising mid-flight)."""

    ref = "broken@0"

    def scores(self, batch: Any) -> Any:
        raise RuntimeError("onnxruntime exploded")

    scores_normalized = scores


def test_model_errors_fail_closed() -> None:
    [text] = TextAbuseDetector(Broken(), 0.7).detect(post("hello"))  # type: ignore[arg-type]
    [img] = NsfwImageDetector(Broken(), 0.5).detect(image(png_bytes()))  # type: ignore[arg-type]
    for signal in (text, img):
        assert signal.status == "unchecked" and "onnxruntime exploded" in signal.evidence["reason"]
        assert reason_class(signal.evidence["reason"]) == "model_error"


def test_image_batch_mixes_readable_and_unreadable(image_model: ImageModel) -> None:
    detector = NsfwImageDetector(image_model, 0.5)
    events = [image(png_bytes()), image(url="https://x.example/a.png"), image(b"junk"),
              image(png_bytes(color=(1, 2, 3)))]
    signals = detector.detect_batch(events)
    assert [s.status for s in signals] == ["clear", "unchecked", "unchecked", "clear"]
    assert reason_class(signals[1].evidence["reason"]) == "not_fetched"
    assert reason_class(signals[2].evidence["reason"]) == "undecodable"
    assert all(s.model == image_model.ref and s.threshold == 0.5 for s in signals)
    assert signals[0].score is not None and signals[1].score is None


def test_thresholds_come_from_the_policy_at_event_time() -> None:
    policy = load_default_policy()
    nsfw, text = load_manifest("open_nsfw"), load_manifest("alt_profanity_check")
    staffed = post("x", time=datetime(2025, 2, 4, 12, 0, tzinfo=timezone.utc))
    night = post("x", time=datetime(2025, 2, 4, 2, 13, tzinfo=timezone.utc))
    image_threshold = PolicyThreshold(lambda: policy, "nsfw_image", nsfw)
    text_threshold = PolicyThreshold(lambda: policy, "text_abuse", text)
    assert image_threshold(staffed) == 0.85 and image_threshold(night) == 0.7
    assert text_threshold(staffed) == 0.7 and text_threshold(night) == 0.65
    # a detector no enforcing rule acts on falls back to the manifest's default
    assert policy_threshold(policy, "other", nsfw, staffed=True) == nsfw.default_threshold


def test_cached_policy_threshold_follows_staffed_hours_and_a_reloaded_policy() -> None:
    policy = load_default_policy()
    text = load_manifest("alt_profanity_check")
    current = [policy]
    threshold = PolicyThreshold(lambda: current[0], "text_abuse", text)
    staffed = post("x", time=datetime(2025, 2, 4, 12, 0, tzinfo=timezone.utc))
    night = post("x", time=datetime(2025, 2, 4, 2, 13, tzinfo=timezone.utc))
    assert [threshold(e) for e in (staffed, night, staffed, night)] == [0.7, 0.65, 0.7, 0.65]
    # a reload (a new policy object from the store) is seen at once, not the cached value
    current[0] = dataclasses.replace(policy, rules=())
    assert threshold(staffed) == threshold(night) == text.default_threshold


def test_non_english_ascii_fast_path_agrees_with_the_letter_count() -> None:
    for text in ("", "1234 !!", "hello", "naïve café crème brûlée", "Привет", "日本語 text"):
        letters = [c for c in text if c.isalpha()]
        expected = bool(letters) and sum(c.isascii() for c in letters) * 2 < len(letters)
        assert non_english(text) is expected


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
def test_image_pool_threads_run_nicer_than_the_event_loop_thread() -> None:
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = nice()
    with ThreadPoolExecutor(1, initializer=lower_priority, initargs=(IMAGE_NICE,)) as pool:
        assert pool.submit(nice).result() == min(base + IMAGE_NICE, 19)
    with ThreadPoolExecutor(1, initializer=lower_priority, initargs=(0,)) as pool:
        assert pool.submit(nice).result() == base
    assert nice() == base  # the calling thread keeps its priority


def test_split_keeps_order_and_never_makes_empty_chunks() -> None:
    items = list(range(7))
    assert split(items, 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split(items[:1], 4) == [[0]]
    assert [x for chunk in split(items, 2) for x in chunk] == items
    assert np.concatenate(split(np.arange(5), 2)).tolist() == [0, 1, 2, 3, 4]
