"""Text-abuse detector: the ONNX text classifier plus the per-board rules layer.

One `text_abuse` signal per post: `score` is the model's P(offensive), `threshold` the one in
force, `status` `match` when score ≥ threshold *or* a rule of the post's board matches (then
`score` is 1.0 and `evidence` carries the rule id and the model's own score), `clear` otherwise,
`unchecked` when the model failed (fail closed). English only: text in other languages has no
words the model knows and scores its base rate (≈ 0.04); `evidence.non_english` flags it so the
policy can route it, and board rules are the way to cover other languages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from agents.detectors import ModelDetector, Threshold, example_post
from agents.detectors.text_rules import TextRules
from models.text import TextModel, normalize
from streams.events import CloudEvent, PostData, SignalData


def non_english(text: str) -> bool:
    """Heuristic: fewer than half of the letters are ASCII (the model knows English words)."""
    head = text[:2000]
    if head.isascii():  # most posts: one C-level check instead of a Python loop per character
        return False
    letters = [c for c in head if c.isalpha()]
    return bool(letters) and sum(c.isascii() for c in letters) * 2 < len(letters)




class TextAbuseDetector(ModelDetector):
    """Scores post bodies; thread-safe (the model session is, the rules are swapped whole)."""

    signal_names: ClassVar[tuple[str, ...]] = ("text_abuse",)
    version: ClassVar[str] = "1"
    content_type: ClassVar[str] = "post"

    def __init__(self, model: TextModel, threshold: Threshold,
                 rules: Callable[[], TextRules] = TextRules) -> None:
        self.model = model
        self._threshold = threshold
        self._rules = rules

    def detect(self, event: CloudEvent[PostData]) -> list[SignalData]:
        """One post → its one signal."""
        return self.detect_batch([event])

    def detect_batch(self, events: Sequence[CloudEvent[PostData]]) -> list[SignalData]:
        """Posts → one signal each, scored in one model call."""
        if not events:
            return []
        texts = [normalize(e.data.body) for e in events]
        try:
            scores = [float(s) for s in self.model.scores_normalized(texts)]
        except Exception as exc:  # noqa: BLE001 - fail closed on anything the runtime raises
            reason = f"model error: {type(exc).__name__}: {str(exc)[:200]}"
            return [self.model_signal(e.data, e.data.post_id, "unchecked", None, self.threshold(e),
                                      {"reason": reason})
                    for e in events]
        rules = self._rules()
        signals = []
        for event, text, score in zip(events, texts, scores, strict=True):
            threshold = self.threshold(event)
            evidence: dict[str, Any] = {}
            if non_english(text):
                evidence["non_english"] = True
            rule = rules.match(event.data.board, text) if rules.rules else None
            if rule is not None:
                evidence.update(rule=rule, rules_version=rules.version, model_score=score)
                signals.append(self.model_signal(event.data, event.data.post_id, "match", 1.0,
                                                 threshold, evidence))
            else:
                status = "match" if score >= threshold else "clear"
                signals.append(self.model_signal(event.data, event.data.post_id, status, score,
                                                 threshold, evidence))
        return signals

    def examples(self) -> Sequence[tuple[CloudEvent[Any], dict[str, str]]]:
        post = example_post
        return [
            (post("kind", "Does anyone have tips for potty training a toddler?"),
             {"text_abuse": "clear"}),
            (post("abusive", "Shut up, you stupid bitch."), {"text_abuse": "match"}),
            (post("empty", ""), {"text_abuse": "clear"}),
        ]
