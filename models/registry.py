"""The model registry: `load_model(name)` → a verified, configured, warmed-up model."""

from __future__ import annotations

from models.image import ImageModel
from models.manifest import load_manifest
from models.runtime import RuntimeOptions, new_session, weights_path
from models.text import TextModel

Model = ImageModel | TextModel
_RUNNERS: dict[str, type[ImageModel] | type[TextModel]] = {
    "image-classification": ImageModel,
    "text-classification": TextModel,
}


def load_model(name: str, options: RuntimeOptions | None = None) -> Model:
    """Load model `name` from its manifest; raises `ModelError` (one line) when unusable."""
    options = options or RuntimeOptions()
    manifest = load_manifest(name)
    path = weights_path(manifest, options)
    model = _RUNNERS[manifest.task](manifest, new_session(manifest, path, options))
    model.warm_up()
    return model
