"""Does NudeNet earn its place next to open_nsfw? Cost, false boxes on benign images, box quality.

Why: issue 5 asks for a second image model whose boxes let the console blur regions instead of
whole images, kept only if it earns its cost. This measures, in one run on one box, with the
`nudenet` package installed (`pip install nudenet`; it is not a Vigil dependency):

* **cost** — seconds per image of NudeNet's whole `detect` path (its own decode-free
  preprocessing, onnxruntime, its post-processing + NMS) vs Vigil's open_nsfw path
  (`models.image.preprocess` + onnxruntime), both sessions with 1 intra-op thread, on the same
  decoded images, interleaved round by round so load changes hit both sides; ratio = NudeNet /
  open_nsfw (the machine is noisy: only the ratio is evidence);
* **false boxes** — every detection NudeNet returns (its own floor, 0.2 before NMS) on benign
  images: the scikit-image sample photographs and Pillow drawings (including the skin-toned
  ellipse that is open_nsfw's closest call), with open_nsfw's score beside them;
* **box quality** — NudeNet's face boxes against the face detector scikit-image ships (LBP
  cascade) on the photographs with faces (IoU), and whether a box follows the content when the
  image is mirrored and rescaled to another aspect ratio (normalised boxes should agree).

    .venv/bin/python -m bench.nudenet_eval [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from bench.classify import PHOTOS
from models import RuntimeOptions, load_model
from models.image import preprocess

Box = tuple[float, float, float, float]  # normalised x, y, w, h


def photographs() -> dict[str, Image.Image]:
    """scikit-image's sample photographs as RGB (the same set bench.classify uses)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skimage.data
    out = {}
    for name in PHOTOS:
        array = np.asarray(getattr(skimage.data, name)())
        if array.dtype != np.uint8:
            array = (255 * (array - array.min()) / (np.ptp(array) or 1)).astype(np.uint8)
        out[name] = Image.fromarray(array).convert("RGB")
    return out


def drawings() -> dict[str, Image.Image]:
    """Pillow drawings: flat skin tones are what nudity models key on, so they are here."""
    skin = Image.new("RGB", (480, 360), (224, 172, 140))
    ImageDraw.Draw(skin).ellipse((120, 60, 360, 300), fill=(232, 184, 150))
    stripes = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(stripes)
    for x in range(0, 400, 40):
        draw.rectangle((x, 0, x + 19, 299), fill=(200, 30, 30))
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1)))
    text = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(text).text((20, 80), "Welcome to the parenting forum!", fill="black")
    return {"drawn skin ellipse": skin, "drawn stripes": stripes,
            "drawn gradient": gradient.convert("RGB"), "drawn text": text}


def bgr(image: Image.Image) -> np.ndarray:
    """What `cv2.imread` gives NudeNet for this image (its documented input)."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def normalised(detection: dict, width: int, height: int) -> Box:
    x, y, w, h = detection["box"]
    return (x / width, y / height, w / width, h / height)


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def lbp_faces(image: Image.Image) -> list[Box]:
    """Faces found by scikit-image's own LBP cascade (an independent reference for boxes)."""
    import skimage.data
    from skimage.feature import Cascade
    cascade = Cascade(skimage.data.lbp_frontal_face_cascade_filename())
    gray = np.asarray(image.convert("L"))
    found = cascade.detect_multi_scale(img=gray, scale_factor=1.2, step_ratio=1,
                                       min_size=(40, 40), max_size=(400, 400))
    w, h = image.size
    return [(f["c"] / w, f["r"] / h, f["width"] / w, f["height"] / h) for f in found]


def installed_weight(distribution: str) -> tuple[float, str]:
    """(MB installed, first line of its licence file) for an installed distribution."""
    from importlib.metadata import distribution as dist
    files = dist(distribution).files or []
    size = sum(f.locate().stat().st_size for f in files if f.locate().is_file())
    licences = [f for f in files if "LICENSE" in f.name.upper()]
    first = licences[0].read_text().strip().splitlines()[0].strip() if licences else "?"
    return size / 1e6, first


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    import onnxruntime as ort
    from nudenet import NudeDetector
    from nudenet import __file__ as nudenet_init

    parser = argparse.ArgumentParser(prog="python -m bench.nudenet_eval")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    nsfw = load_model("open_nsfw", RuntimeOptions(intra_op_threads=1))
    nude = NudeDetector()
    # Same onnxruntime settings as Vigil's sessions: one intra-op thread, sequential.
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    model_file = str(__import__("pathlib").Path(nudenet_init).with_name("320n.onnx"))
    nude.onnx_session = ort.InferenceSession(model_file, so, providers=["CPUExecutionProvider"])

    images = {**photographs(), **drawings()}
    mats = {name: bgr(image) for name, image in images.items()}

    print("## Cost per image, 1 intra-op thread each, interleaved "
          f"({args.rounds} rounds × {len(images)} images)")
    ratios, t_nsfw, t_nude = [], [], []
    for _ in range(args.rounds):
        a = sum(timed(lambda i=i: nsfw.scores(preprocess(i)[None])) for i in images.values())
        b = sum(timed(lambda m=m: nude.detect(m)) for m in mats.values())
        t_nsfw.append(a / len(images))
        t_nude.append(b / len(images))
        ratios.append(b / a)
    print(f"open_nsfw {1000 * statistics.median(t_nsfw):.1f} ms/image, NudeNet 320n "
          f"{1000 * statistics.median(t_nude):.1f} ms/image; ratio NudeNet/open_nsfw per round: "
          + ", ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f})")

    print("\n## Detections on benign images (NudeNet floor 0.2) and open_nsfw score")
    print("| image | open_nsfw | NudeNet detections (label score) |\n|---|---|---|")
    sensitive = 0
    for name, image in images.items():
        found = nude.detect(mats[name])
        sensitive += sum(1 for d in found if d["class"].endswith("_EXPOSED")
                         and not d["class"].startswith(("FEET", "ARMPITS", "BELLY")))
        score = float(nsfw.scores(preprocess(image)[None])[0])
        listed = ", ".join(f"{d['class']} {d['score']:.2f}" for d in found) or "—"
        print(f"| {name} | {score:.3f} | {listed} |")
    print(f"exposed-genitalia/breast/buttocks/anus boxes on benign images: {sensitive}")

    print("\n## Dependency weight (installed) and licence file")
    for distribution in ("nudenet", "opencv-python-headless"):
        size, licence = installed_weight(distribution)
        print(f"{distribution}: {size:.0f} MB, licence file: {licence}")

    print("\n## Box quality: NudeNet faces vs scikit-image LBP faces; mirror + rescale stability")
    print("| image | NudeNet face box (x,y,w,h norm.) | best IoU vs LBP | IoU mirrored | "
          "IoU stretched to 16:9 |\n|---|---|---|---|---|")
    for name, image in images.items():
        w, h = image.size
        faces = [(d, normalised(d, w, h)) for d in nude.detect(mats[name])
                 if d["class"].startswith("FACE")]
        if not faces:
            continue
        reference = lbp_faces(image)
        mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        wide = image.resize((int(h * 16 / 9), h))
        m_faces = [normalised(d, w, h) for d in nude.detect(bgr(mirrored))
                   if d["class"].startswith("FACE")]
        r_faces = [normalised(d, *wide.size) for d in nude.detect(bgr(wide))
                   if d["class"].startswith("FACE")]
        for det, box in faces:
            unmirrored = [(1 - b[0] - b[2], b[1], b[2], b[3]) for b in m_faces]
            best = max((iou(box, r) for r in reference), default=0.0)
            best_m = max((iou(box, r) for r in unmirrored), default=0.0)
            stretched = (f"{max(iou(box, r) for r in r_faces):.2f}" if r_faces
                         else "face lost")
            print(f"| {name} {det['class']} {det['score']:.2f} | "
                  + ",".join(f"{v:.2f}" for v in box)
                  + f" | {best:.2f} ({len(reference)} LBP faces) | {best_m:.2f} | {stretched} |")


if __name__ == "__main__":
    main()
