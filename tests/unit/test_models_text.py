"""Text model: the ONNX conversion against scikit-learn, and sample sentences against the threshold.

Tolerance: ONNX probabilities within 1e-5 of alt-profanity-check's own pipeline
(`predict_proba` of its pickled TF-IDF + calibrated LinearSVC) on the same normalised text; in
practice they differ by < 1e-7 (float32 vs float64).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from models import TextModel, load_manifest, load_model
from models.build import ensure_built
from models.text import normalize

TOLERANCE = 1e-5
ABUSIVE = (
    "You are a fucking idiot and a terrible mother.",
    "Shut up, you stupid bitch.",
    "Go kill yourself, nobody wants you here.",
    "What a worthless piece of shit parent you are.",
    "Fuck off and die.",
    "Your kid is an ugly little bastard.",
    "Stfu you retarded moron.",
    "I hope your baby dies, you disgusting whore.",
    "Eat shit, asshole.",
)
ORDINARY = (
    "My toddler finally slept through the night!",
    "Does anyone have tips for potty training a stubborn three-year-old?",
    "We switched to a different formula and the reflux is much better now.",
    "What age did your kids start walking?",
    "Our pediatrician says the rash is nothing to worry about.",
    "I'm so tired, the baby has been teething all week.",
    "Any recommendations for a car seat that fits in a small car?",
    "Breastfeeding has been harder than I expected, but it's getting easier.",
    "How do you handle tantrums in the supermarket?",
    "Thanks everyone for the kind words, it really helped.",
    "My son hates bath time, he screams every night.",
    "The school nurse called because my daughter had a nosebleed.",
    "I killed it at the parent-teacher conference today, so proud of my kid.",
    "Does anyone else feel like they're losing their mind with a colicky baby?",
    "My kid bit another child at daycare and I'm mortified.",
    "What do you pack in your hospital bag?",
    "Breast pump recommendations please.",
)
OTHER = ("", "a", "Ich hasse dich, du Arschloch", "Привет, как дела?", "日本語のテキスト",
         "naïve café", "ｆｕｃｋ ｙｏｕ", "f\u200buck you", "emoji 🖕", "x" * 30_000)


@pytest.fixture(scope="module")
def model() -> TextModel:
    ensure_built()
    loaded = load_model("alt_profanity_check")
    assert isinstance(loaded, TextModel)
    return loaded


def sklearn_scores(texts: list[str]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from profanity_check import profanity_check as reference
        return reference.predict_prob(texts)


def test_onnx_equals_scikit_learn(model: TextModel) -> None:
    texts = [normalize(t) for t in (*ABUSIVE, *ORDINARY, *OTHER)]
    ours = model.scores_normalized(texts)
    theirs = sklearn_scores(texts)
    assert np.max(np.abs(ours - theirs)) <= TOLERANCE


def test_abusive_sentences_score_above_the_threshold(model: TextModel) -> None:
    threshold = load_manifest("alt_profanity_check").default_threshold
    scores = dict(zip(ABUSIVE, model.scores(list(ABUSIVE)), strict=True))
    under = {t: round(float(s), 4) for t, s in scores.items() if s < threshold}
    assert not under, f"abusive sentences under {threshold}: {under}"


def test_ordinary_forum_sentences_score_below_the_threshold(model: TextModel) -> None:
    threshold = load_manifest("alt_profanity_check").default_threshold
    scores = dict(zip(ORDINARY, model.scores(list(ORDINARY)), strict=True))
    over = {t: round(float(s), 4) for t, s in scores.items() if s >= threshold}
    assert not over, f"ordinary sentences at/over {threshold}: {over}"


def test_normalisation_defeats_width_and_invisible_tricks(model: TextModel) -> None:
    assert normalize("ＦＵＣＫ") == "fuck"
    assert normalize("f\u200bu\u00adck") == "fuck"
    plain, wide, split = model.scores(["fuck you", "ｆｕｃｋ ｙｏｕ", "f\u200buck you"])
    assert wide == pytest.approx(plain) and split == pytest.approx(plain)


def test_other_languages_get_the_base_rate(model: TextModel) -> None:
    """The model knows English words only: other languages score like empty text."""
    empty, russian, japanese = model.scores(["", "Иди к черту, идиот", "馬鹿野郎"])
    assert russian == pytest.approx(empty) and japanese == pytest.approx(empty)
    assert empty < 0.1
