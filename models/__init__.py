"""Model registry and ONNX runners.

A model is a manifest (`models/manifests/<name>.toml`: identity, input, labels, default
thresholds, weights pinned by sha256) plus a runner for its task. `load_model(name)` finds the
weights in an installed package (or the file `python -m models.build` made from one at install
time), verifies the checksum, configures onnxruntime, warms up, and raises `ModelError` with one
line naming the model and file when anything is wrong. Nothing is downloaded at run time.

Import direction: `streams` ← `models` ← `agents`; nothing here knows Kafka or faust.
"""

from __future__ import annotations

from models.image import ImageModel
from models.manifest import Manifest, ModelError, load_manifest, manifest_names
from models.registry import Model, load_model
from models.runtime import RuntimeOptions
from models.text import TextModel

__all__ = [
    "ImageModel",
    "Manifest",
    "Model",
    "ModelError",
    "RuntimeOptions",
    "TextModel",
    "load_manifest",
    "load_model",
    "manifest_names",
]
