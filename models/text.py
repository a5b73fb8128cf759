"""Text classifier runner: Vigil's normalisation, then the ONNX TF-IDF + linear model.

`normalize` is applied before the model (and, in tests, before the scikit-learn reference, so the
two are compared on the same input): NFKC folds look-alike forms (full-width `ｆｕｃｋ`,
ligatures) into plain letters, zero-width and soft-hyphen characters used to split words are
removed, and lower-casing happens here in Python (exactly `str.lower`, what scikit-learn's
vectoriser does) rather than in onnxruntime's StringNormalizer, which needs the OS locale
`en_US.UTF-8` that slim images lack (the build removes that node).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from models.manifest import Manifest, ModelError

# Zero-width space/joiners, LRM/RLM, word joiner, BOM, soft hyphen: invisible word splitters.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad"))
#: Longest text the model sees; longer posts are scored on their start (rules see everything).
MAX_CHARS = 20_000


def normalize(text: str) -> str:
    """The model's input form of `text` (pure)."""
    return unicodedata.normalize("NFKC", text[:MAX_CHARS]).translate(_INVISIBLE).lower()


class TextModel:
    """A text classifier session: raw texts in, P(`score_label`) out (thread-safe, GIL-free)."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession) -> None:
        self.manifest = manifest
        self.ref = manifest.ref
        self._session = session
        self._input = manifest.input.name
        self._column = manifest.score_index

    def scores_normalized(self, texts: Sequence[str]) -> np.ndarray:
        """Already-normalised texts → (N,) scores."""
        if not texts:
            return np.empty(0, dtype=np.float32)
        batch = np.array(list(texts), dtype=object).reshape(-1, 1)
        return self._session.run(["probabilities"], {self._input: batch})[0][:, self._column]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Raw texts → (N,) scores in 0–1."""
        return self.scores_normalized([normalize(t) for t in texts])

    def warm_up(self) -> None:
        """One inference: proves the graph runs and gives a probability."""
        out = self.scores(["warm up the model"])
        if out.shape != (1,) or not 0.0 <= float(out[0]) <= 1.0:
            raise ModelError(f"model {self.ref}: warm-up gave {out!r}, expected one score in 0–1")
