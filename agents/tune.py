"""Threshold tuning for hash banks (`vigil banks tune`, issue 4 item 8): evidence for per-bank
thresholds.

For a set of images, every image is transformed (resize, JPEG q30, rotation, mirror, text
overlay, brightness, crops, padding) and hashed the way the detector would. Per hash type and
transform it measures:

- the *same-image* distances: original vs its transformed copy (true pairs);
- the *different-image* distances: each transformed copy vs every other original (false pairs);

and reports, for a target precision, the best recall any threshold reaches with precision (true
pairs within / all pairs within) at or above it, the smallest distance giving that recall, and
recall and false matches at the type's default threshold. Precision depends on the mix (n true
pairs vs n·(n−1) false pairs); false matches per pair are reported too, which do not.

Hash types measured (one `Scheme` each; bank side = how the bank's entry was made, query side
= what the detector computes from an upload):

- `pdq`: plain PDQ, the query's 8 rotations/mirrors against the original's hash (the detector);
- `pdq+trim`: as `pdq`, plus the PDQ of the query with uniform borders trimmed (a padded copy
  becomes the original again); the smaller distance counts. Query side only: works with banks
  of hashes from partners;
- `pdq-centre`: both sides hash the central 80 % (crop-robust, but the bank must be built from
  images by Vigil: partners' PDQ lists cannot be converted);
- `phash`, `dhash`: imagehash's 64-bit hashes (no dihedral variants: rotations are expected to
  fail).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from agents.hashes import DHash, Pdq, PHash
from agents.imaging import trim_borders


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _crop(img: Image.Image, fraction: float) -> Image.Image:
    # `fraction` of each dimension removed, half from each side (a centred crop)
    dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def _crop_corner(img: Image.Image, fraction: float) -> Image.Image:
    # `fraction` removed from the right and bottom only (a one-sided crop)
    return img.crop((0, 0, round(img.width * (1 - fraction)), round(img.height * (1 - fraction))))


def _pad(img: Image.Image, fraction: float, colour: tuple[int, int, int]) -> Image.Image:
    border = (round(img.width * fraction), round(img.height * fraction))
    return ImageOps.expand(img, border=border, fill=colour)


def _text(img: Image.Image) -> Image.Image:
    img = img.copy()
    draw = ImageDraw.Draw(img)
    draw.text((max(2, img.width // 20), img.height - max(14, img.height // 12)),
              "reposted lol", fill=(255, 255, 255))
    return img


#: Transform name → function; the names are what the report and docs use.
TRANSFORMS: Mapping[str, Callable[[Image.Image], Image.Image]] = {
    "resize-50": lambda i: i.resize((max(1, i.width // 2), max(1, i.height // 2))),
    "jpeg-q30": lambda i: _jpeg(i, 30),
    "rotate-90": lambda i: i.rotate(90, expand=True),
    "mirror": lambda i: i.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "text-overlay": _text,
    "brightness+30%": lambda i: ImageEnhance.Brightness(i).enhance(1.3),
    "crop-5%": lambda i: _crop(i, 0.05),
    "crop-10%": lambda i: _crop(i, 0.10),
    "crop-5%-one-side": lambda i: _crop_corner(i, 0.05),
    "pad-10%-white": lambda i: _pad(i, 0.10, (255, 255, 255)),
    "pad-10%-black": lambda i: _pad(i, 0.10, (0, 0, 0)),
}


@dataclass(frozen=True)
class Scheme:
    """How a hash type is computed on the bank side and the query side, and its distance."""

    name: str
    bits: int
    default_threshold: int
    bank: Callable[[Image.Image], int]  # → the bank entry, as an int of `bits` bits
    query: Callable[[Image.Image], list[int]]  # → the hashes a lookup tries (min distance)


def _pdq_int(img: Image.Image) -> int:
    return int(Pdq().hash_image(img).hex, 16)


def _pdq_dihedral(img: Image.Image) -> list[int]:
    return [int(h.hex, 16) for _, h in Pdq().hash_dihedral(img)]


def _centre(img: Image.Image) -> Image.Image:
    return _crop(img, 0.2)


def _lib(hash_type: PHash | DHash) -> Callable[[Image.Image], int]:
    return lambda img: int(hash_type.hash_image(img).hex, 16)


SCHEMES: Mapping[str, Scheme] = {
    "pdq": Scheme("pdq", 256, 31, _pdq_int, _pdq_dihedral),
    "pdq+trim": Scheme("pdq+trim", 256, 31, _pdq_int,
                       lambda i: _pdq_dihedral(i) + _pdq_dihedral(trim_borders(i))),
    "pdq-centre": Scheme("pdq-centre", 256, 31, lambda i: _pdq_int(_centre(i)),
                         lambda i: _pdq_dihedral(_centre(i))),
    "phash": Scheme("phash", 64, 10, _lib(PHash()), lambda i: [_lib(PHash())(i)]),
    "dhash": Scheme("dhash", 64, 10, _lib(DHash()), lambda i: [_lib(DHash())(i)]),
}


@dataclass(frozen=True)
class TuneRow:
    """One (hash type, transform) line of the report."""

    scheme: str
    transform: str
    images: int
    threshold: int | None  # smallest distance giving the best recall at precision ≥ target
    recall: float  # at `threshold`
    default_threshold: int
    default_recall: float
    default_false_matches: int  # different-image pairs within the default threshold
    false_pairs: int
    median_distance: float  # same-image pairs


def _distances(entries: Sequence[int], queries: Sequence[list[int]]) -> np.ndarray:
    """(queries × entries) minimum Hamming distance over each query's hashes."""
    out = np.empty((len(queries), len(entries)), np.int32)
    for qi, tries in enumerate(queries):
        for ei, entry in enumerate(entries):
            out[qi, ei] = min((entry ^ t).bit_count() for t in tries)
    return out


def tune(images: Sequence[Image.Image], *, precision: float = 0.99,
         schemes: Iterable[str] = tuple(SCHEMES), transforms: Iterable[str] = tuple(TRANSFORMS),
         ) -> list[TuneRow]:
    """The report rows for `images` (originals) at the target `precision`."""
    originals = [img.convert("RGB") for img in images]
    rows: list[TuneRow] = []
    for scheme_name in schemes:
        scheme = SCHEMES[scheme_name]
        entries = [scheme.bank(img) for img in originals]
        for transform_name in transforms:
            transform = TRANSFORMS[transform_name]
            queries = [scheme.query(transform(img)) for img in originals]
            d = _distances(entries, queries)
            same = np.diag(d)
            other = d[~np.eye(len(d), dtype=bool)]
            # the highest recall any threshold reaches at the target precision, and the
            # smallest distance that reaches it (a tighter threshold is the safer evidence)
            best: tuple[int, float] | None = None
            for t in range(scheme.bits + 1):
                tp = int((same <= t).sum())
                fp = int((other <= t).sum())
                if tp and tp / (tp + fp) >= precision and (
                        best is None or tp / len(same) > best[1]):
                    best = (t, tp / len(same))
            rows.append(TuneRow(
                scheme_name, transform_name, len(same),
                best[0] if best else None, best[1] if best else 0.0,
                scheme.default_threshold,
                float((same <= scheme.default_threshold).mean()),
                int((other <= scheme.default_threshold).sum()), int(other.size),
                float(np.median(same))))
    return rows


def format_report(rows: Sequence[TuneRow], precision: float) -> str:
    """A Markdown table of `rows` (what `vigil banks tune` prints and docs/hashing.md shows)."""
    lines = [
        f"| hash | transform | images | threshold @ precision ≥ {precision:g} | recall there | "
        "recall @ default | false matches @ default | median distance |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        threshold = "—" if r.threshold is None else str(r.threshold)
        lines.append(
            f"| {r.scheme} | {r.transform} | {r.images} | {threshold} | {r.recall:.0%} | "
            f"{r.default_recall:.0%} (≤ {r.default_threshold}) | "
            f"{r.default_false_matches}/{r.false_pairs} | {r.median_distance:.0f} |")
    return "\n".join(lines)


def synthetic_images(count: int, size: tuple[int, int] = (480, 360),
                     seed: int = 0) -> list[Image.Image]:
    """Pillow-drawn pictures with structure (gradients, shapes, text) for a quick tune run."""
    images = []
    for n in range(count):
        rnd = random.Random(seed * 100_003 + n)
        w, h = size
        gradient = Image.linear_gradient("L").resize(size).rotate(rnd.randrange(360))
        img = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                  Image.new("L", size, rnd.randrange(256))))
        draw = ImageDraw.Draw(img)
        for _ in range(10):
            x0, y0 = rnd.randrange(w), rnd.randrange(h)
            box = [x0, y0, x0 + rnd.randrange(20, w // 2), y0 + rnd.randrange(20, h // 2)]
            colour = tuple(rnd.randrange(256) for _ in range(3))
            (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)(box, fill=colour)
        images.append(img)
    return images
