"""NSFW-image detector: open_nsfw's P(nsfw) for every uploaded image.

One `nsfw_image` signal per image: `score` P(nsfw), `threshold` in force, `status` `match` when
score ≥ threshold, `clear` below, `unchecked` (with the reason) when the image cannot be
classified — URL claim checks not fetched here, empty, corrupt, a decompression bomb, or a model
error — so `decide` holds it: fail closed. Decoding is `agents.imaging.decode` (bounded bytes,
pixels and frames; EXIF orientation; transparency on white). Only the first frame of an
animation is classified (docs/models.md).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw

from agents.detectors import ModelDetector, Threshold, example_image
from agents.imaging import DecodeLimits, ImageRejected, decode
from models.image import ImageModel, preprocess
from streams.events import CloudEvent, ImageData, SignalData

#: Decode limits for classification: one frame; images up to 1024 px a side are decoded at full
#: size (exactly the reference pipeline), larger JPEGs are DCT-scaled while decoding (4–16×
#: cheaper; the model sees 256×256 anyway).
CLASSIFY_LIMITS = DecodeLimits(max_frames=1, max_side=1024)




class NsfwImageDetector(ModelDetector):
    """Classifies images; thread-safe (shared onnxruntime session, no mutable state)."""

    signal_names: ClassVar[tuple[str, ...]] = ("nsfw_image",)
    version: ClassVar[str] = "1"
    content_type: ClassVar[str] = "image"

    def __init__(self, model: ImageModel, threshold: Threshold,
                 limits: DecodeLimits = CLASSIFY_LIMITS) -> None:
        self.model = model
        self._threshold = threshold
        self.limits = limits

    def prepare(self, image: ImageData) -> np.ndarray | str:
        """The model input for `image`, or the reason it cannot be classified."""
        if image.data_b64 is None:
            return "url images are not fetched by this detector"
        try:
            decoded = decode(image.data_b64, self.limits)
        except ImageRejected as exc:
            return str(exc)
        return preprocess(decoded.frames[0])

    def detect(self, event: CloudEvent[ImageData]) -> list[SignalData]:
        """One image → its one signal."""
        return self.detect_batch([event])

    def detect_batch(self, events: Sequence[CloudEvent[ImageData]]) -> list[SignalData]:
        """Images → one signal each; the readable ones scored in one model call."""
        prepared = [self.prepare(e.data) for e in events]
        arrays = [p for p in prepared if isinstance(p, np.ndarray)]
        try:
            scores = iter(self.model.scores(np.stack(arrays)) if arrays else ())
        except Exception as exc:  # noqa: BLE001 - fail closed on anything the runtime raises
            reason = f"model error: {type(exc).__name__}: {str(exc)[:200]}"
            prepared = [reason if isinstance(p, np.ndarray) else p for p in prepared]
        signals = []
        for event, item in zip(events, prepared, strict=True):
            threshold = self.threshold(event)
            if isinstance(item, str):
                signals.append(self.model_signal(event.data, event.data.image_id, "unchecked",
                                                 None, threshold, {"reason": item}))
            else:
                score = float(next(scores))
                status = "match" if score >= threshold else "clear"
                signals.append(self.model_signal(event.data, event.data.image_id, status, score,
                                                 threshold, {}))
        return signals

    def examples(self) -> Sequence[tuple[CloudEvent[Any], dict[str, str]]]:
        image = example_image
        drawing = Image.new("RGB", (320, 240), (40, 120, 200))
        ImageDraw.Draw(drawing).ellipse([60, 40, 260, 200], fill=(250, 210, 60))
        png = io.BytesIO()
        drawing.save(png, format="PNG")
        return [
            (image("drawing", data_b64=png.getvalue()), {"nsfw_image": "clear"}),
            (image("by-url", url="https://img.example/x.png"), {"nsfw_image": "unchecked"}),
            (image("empty", data_b64=b""), {"nsfw_image": "unchecked"}),
            (image("garbage", data_b64=b"\x89PNG\r\n\x1a\n not really"),
             {"nsfw_image": "unchecked"}),
        ]
