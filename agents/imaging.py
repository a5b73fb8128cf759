"""Safe image decoding for hashing: bounded bytes, pixels and frames; never an exception out.

Every image a forum uploads is hostile until proven otherwise. `decode` refuses, with a
human-readable reason (`ImageRejected`), anything it cannot check within the limits:

- empty or over-size input (bytes checked before Pillow sees them);
- decompression bombs: the pixel count is read from the header and checked *before* any pixel
  is decoded (Pillow's own `MAX_IMAGE_PIXELS` guard is process-global and only warns below 2×
  its ≈ 89 Mpx; ours is per call and a hard refusal; the global is left alone for other users);
- truncated or corrupt files (Pillow's `LOAD_TRUNCATED_IMAGES` stays off: a half-decoded image
  would hash to something that matches nothing, which is a silent `allow`);
- non-images and formats Pillow does not know.

What it accepts comes out as plain 8-bit RGB, the way a viewer would show it: EXIF orientation
applied, alpha composited on white (a transparent image is shown on the forum's background,
not on black), CMYK/16-bit/palette/greyscale converted. Animated GIF/WebP/APNG give their first
`max_frames` frames, within a total pixel budget so 8 huge frames are not 8 bombs. Large images
are shrunk to `max_side` before hashing (JPEG via DCT scaling while decoding, which is most of
the speed-up): perceptual hashes are computed on tiny versions anyway (PDQ: 64×64) and are
robust to scaling, which is their point.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError


class ImageRejected(ValueError):
    """An image that cannot be checked; `str()` is the human reason (goes into the signal).

    `kind` is a short, bounded class of the reason for metrics labels: empty, too_large,
    too_many_pixels, not_image, corrupt.
    """

    def __init__(self, reason: str, kind: str = "corrupt") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds on one image (settings: VIGIL_IMAGE_MAX_BYTES, _MAX_PIXELS, _MAX_FRAMES)."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_frames: int = 8
    #: Longest side of the frames handed to the hashers (0 = keep the decoded size).
    max_side: int = 600


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """What `decode` gives back: RGB frames ready to hash, and facts for the evidence."""

    frames: list[Image.Image]
    format: str
    width: int
    height: int
    frames_total: int


def decode(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode `data` into at most `limits.max_frames` RGB frames; raise `ImageRejected`."""
    try:
        return _decode(data, limits)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's global guard, if set below ours
        raise ImageRejected(f"decompression bomb: {exc}", "too_many_pixels") from None
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise ImageRejected(
            f"not an image Pillow can read ({type(exc).__name__})", "not_image") from None
    except (OSError, EOFError) as exc:
        # Truncated/corrupt data ("image file is truncated", "broken data stream", ...).
        raise ImageRejected(f"corrupt or truncated image: {exc}") from None
    except (ValueError, MemoryError, TypeError, IndexError, KeyError, ZeroDivisionError,
            OverflowError, NotImplementedError, AttributeError) as exc:
        # Pillow's plugins raise a zoo of types on hostile input; none may escape (fail closed).
        raise ImageRejected(f"cannot decode image ({type(exc).__name__}: {exc})") from None


def _decode(data: bytes, limits: DecodeLimits) -> DecodedImage:
    if not data:
        raise ImageRejected("zero bytes", "empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            f"image is {len(data)} bytes, over the {limits.max_bytes} limit", "too_large")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EXIF/ICC chatter is not our business here
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageRejected(f"image has no pixels ({width}×{height})", "corrupt")
        if width * height > limits.max_pixels:
            raise ImageRejected(
                f"image is {width}×{height} = {width * height} pixels, over the "
                f"{limits.max_pixels} limit (decompression bomb?)", "too_many_pixels"
            )
        fmt = image.format or "unknown"
        frames_total = max(1, int(getattr(image, "n_frames", 1) or 1))
        frames: list[Image.Image] = []
        budget = limits.max_pixels  # total decoded pixels over all frames
        for index in range(min(frames_total, max(1, limits.max_frames))):
            if index:
                budget -= width * height
                if budget < width * height:
                    break
                image.seek(index)
            frames.append(_to_rgb(image, limits, first=index == 0))
    return DecodedImage(frames, fmt, width, height, frames_total)


def _to_rgb(image: Image.Image, limits: DecodeLimits, *, first: bool) -> Image.Image:
    """One frame as 8-bit RGB, oriented, alpha on white, at most `max_side` on its long side."""
    if first and limits.max_side and image.format == "JPEG":
        # DCT scaling while decoding: a 4000×3000 JPEG decodes at 1/8 the work.
        image.draft("RGB", (limits.max_side, limits.max_side))
    image.load()  # the actual decode: raises on truncated/corrupt data
    frame = image
    if first:
        # EXIF orientation: a phone photo shown upright must hash like its upright copy.
        frame = ImageOps.exif_transpose(frame) or frame
    frame = _flatten(frame)
    if frame is image:
        # Never hand out the open image itself: the next seek() decodes over it in place.
        frame = frame.copy()
    if limits.max_side and max(frame.size) > limits.max_side:
        frame.thumbnail((limits.max_side, limits.max_side), Image.Resampling.BILINEAR,
                        reducing_gap=2.0)
    return frame


def _flatten(frame: Image.Image) -> Image.Image:
    mode = frame.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit greyscale: scale the actual range to 0–255 (a plain convert("L") clips).
        frame = frame.convert("I") if mode != "F" else frame
        lo, hi = frame.getextrema()  # type: ignore[misc]
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        frame = frame.point(lambda v: (v - lo) * scale).convert("L")  # type: ignore[operator]
        mode = "L"
    if mode == "P":
        frame = frame.convert("RGBA" if "transparency" in frame.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        frame = frame.convert("RGBA")
    elif mode == "RGBA" and frame.getextrema()[3][0] == 255:
        frame = frame.convert("RGB")  # fully opaque: skip the composite
    if frame.mode == "RGBA":
        background = Image.new("RGB", frame.size, (255, 255, 255))
        background.paste(frame, mask=frame.getchannel("A"))
        return background
    if frame.mode != "RGB":
        frame = frame.convert("RGB")  # CMYK, YCbCr, L, 1, LAB, HSV ...
    return frame


def trim_borders(img: Image.Image, tolerance: int = 12) -> Image.Image:
    """The image without uniform borders (the corner pixel's colour, ± `tolerance`), or the
    image itself when trimming would leave less than half of either side.

    Padding (a letterbox, a frame) moves every PDQ bit; the trimmed image hashes like the
    original again (docs/hashing.md, "Threshold tuning").
    """
    rgb = img.convert("RGB")
    corners = [rgb.getpixel(p) for p in ((0, 0), (rgb.width - 1, 0), (0, rgb.height - 1),
                                         (rgb.width - 1, rgb.height - 1))]
    if max(abs(a - b) for c in corners[1:] for a, b in zip(c, corners[0], strict=True)) > tolerance:
        return rgb  # padding makes all four corners one colour: the fast, common "no" answer
    background = Image.new("RGB", rgb.size, corners[0])
    diff = ImageChops.difference(rgb, background).convert("L").point(
        lambda v: 255 if v > tolerance else 0)
    box = diff.getbbox()
    if box is None:
        return rgb
    w, h = box[2] - box[0], box[3] - box[1]
    if w < rgb.width / 2 or h < rgb.height / 2 or (w, h) == rgb.size:
        return rgb
    return rgb.crop(box)
