"""Thumbnails with minimal exposure: blurred by default, never for csam-bank matches.

The console never keeps an original image. A thumbnail is made from a *downscaled* copy (the
blur then costs nothing and no detail survives at any zoom): at most 160 px, Gaussian blur with
a radius proportional to the size, JPEG. Greyscale is applied when serving (a per-moderator
preference). Un-blurring is a separate, audited request that gets a lightly processed image
(≤ 480 px, re-encoded, metadata stripped) made on demand and not stored.
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps

from agents.imaging import DecodeLimits, ImageRejected, decode

BLUR_SIDE = 160
CLEAR_SIDE = 480
_LIMITS = DecodeLimits(max_frames=1, max_side=CLEAR_SIDE)


def _first_frame(data: bytes) -> Image.Image:
    return decode(data, _LIMITS).frames[0]


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)  # no EXIF: not copied
    return out.getvalue()


def blurred_thumbnail(data: bytes) -> bytes:
    """A small, heavily blurred JPEG of an image; raises `ImageRejected` if it cannot decode."""
    image = _first_frame(data)
    image.thumbnail((BLUR_SIDE, BLUR_SIDE))
    radius = max(6.0, max(image.size) / 10)
    return _jpeg(image.filter(ImageFilter.GaussianBlur(radius)), 60)


def clear_preview(data: bytes) -> bytes:
    """The un-blurred view: downscaled and re-encoded (never the original bytes)."""
    image = _first_frame(data)
    image.thumbnail((CLEAR_SIDE, CLEAR_SIDE))
    return _jpeg(image, 80)


def greyscale(jpeg: bytes) -> bytes:
    """A served thumbnail in greyscale (moderators' option)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return _jpeg(ImageOps.grayscale(image), 70)


__all__ = ["ImageRejected", "blurred_thumbnail", "clear_preview", "greyscale"]
