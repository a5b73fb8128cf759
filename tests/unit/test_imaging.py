"""agents.imaging: hostile and odd images are decoded safely or refused with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageDraw

from agents.banks import BankIndex
from agents.detectors.image_hash import PerceptualHashDetector
from agents.imaging import DecodeLimits, ImageRejected, decode
from streams.events import Account, ImageData


def picture(mode: str = "RGB", size: tuple[int, int] = (120, 90)) -> Image.Image:
    img = Image.new("RGB", size, (30, 60, 90))
    draw = ImageDraw.Draw(img)
    draw.ellipse([10, 10, size[0] - 20, size[1] - 10], fill=(220, 40, 40))
    draw.rectangle([5, size[1] // 2, size[0] // 2, size[1] - 5], fill=(240, 240, 20))
    return img if mode == "RGB" else img.convert(mode)


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def png_header_only(width: int, height: int, bit_depth: int = 1, colour: int = 0) -> bytes:
    """A PNG that claims a size but whose pixel data is a tiny compressed stream."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width * bit_depth + 7) // 8)
    data = zlib.compress(row * 16, 9)  # far fewer rows than claimed
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def bomb_png() -> bytes:
    """A real 20000×20000 1-bit PNG, all zeros: ~50 KB compressed, 400 Mpx decoded."""
    width = height = 20_000
    raw_row = b"\x00" + b"\x00" * (width // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(raw_row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("data", "kind", "words"),
    [
        pytest.param(b"", "empty", "zero bytes", id="zero-bytes"),
        pytest.param(b"hello, I am not an image at all" * 10, "not_image", "not an image",
                     id="text"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, None, "", id="png-signature-only"),
        pytest.param(encode(picture())[:300], "corrupt", "truncated", id="truncated-png"),
        pytest.param(encode(picture(), "JPEG")[:400], "corrupt", "", id="truncated-jpeg"),
        pytest.param(png_header_only(100_000, 100_000), "too_many_pixels", "pixels",
                     id="header-claims-10-gigapixels"),
    ],
)
def test_hostile_inputs_are_refused_with_a_reason(data: bytes, kind: str | None,
                                                  words: str) -> None:
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert str(info.value)
    if kind is not None:
        assert info.value.kind == kind
    assert words in str(info.value)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = bomb_png()
    assert len(data) < 200_000
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert info.value.kind == "too_many_pixels"
    assert "pixels" in str(info.value)  # ours or Pillow's own guard (past 2 × 89 Mpx)


def test_pixel_limit_is_ours_and_checked_from_the_header() -> None:
    data = png_header_only(8000, 8000)  # 64 Mpx claimed, data for 16 rows
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert info.value.kind == "too_many_pixels" and "8000×8000" in str(info.value)


def test_too_many_bytes_is_refused_before_opening() -> None:
    with pytest.raises(ImageRejected) as info:
        decode(encode(picture(size=(400, 300))), DecodeLimits(max_bytes=1024))
    assert info.value.kind == "too_large"


def test_very_long_thin_image_gives_a_hash_or_a_reason_never_an_exception() -> None:
    data = encode(Image.new("L", (1, 100_000), 128))
    signal = PerceptualHashDetector(lambda: BankIndex()).detect_bytes(
        ImageData(image_id="thin", author=Account(id="u")), data)
    assert signal.status in ("clear", "unchecked")
    if signal.status == "clear":
        assert signal.evidence["low_quality"] is True


def test_many_frame_gif_hashes_only_the_first_frames() -> None:
    frames = [picture(size=(40, 30)).rotate(i * 7) for i in range(40)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=20)
    decoded = decode(out.getvalue(), DecodeLimits(max_frames=5))
    assert len(decoded.frames) == 5 and decoded.frames_total == 40
    assert all(f.mode == "RGB" for f in decoded.frames)


def test_frames_share_one_pixel_budget() -> None:
    frames = [picture(size=(100, 100)).rotate(i * 30) for i in range(6)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode(out.getvalue(), DecodeLimits(max_frames=8, max_pixels=25_000))
    assert len(decoded.frames) == 2


def test_animated_webp_frames() -> None:
    frames = [picture(size=(64, 48)).rotate(i * 40) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:])
    decoded = decode(out.getvalue())
    assert decoded.format == "WEBP" and len(decoded.frames) == 3


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: encode(picture("CMYK"), "JPEG"), id="cmyk-jpeg"),
        pytest.param(lambda: encode(picture("L").convert("I;16")), id="16-bit-png"),
        pytest.param(lambda: encode(picture("P")), id="palette"),
        pytest.param(lambda: encode(picture("1")), id="1-bit"),
        pytest.param(lambda: encode(picture("LA")), id="grey-alpha"),
        pytest.param(lambda: encode(picture("RGBA"), "WEBP"), id="rgba-webp"),
        pytest.param(lambda: encode(picture(), "BMP"), id="bmp"),
        pytest.param(lambda: encode(picture(), "TIFF"), id="tiff"),
    ],
)
def test_odd_modes_become_rgb(make) -> None:  # type: ignore[no-untyped-def]
    decoded = decode(make())
    assert decoded.frames[0].mode == "RGB" and decoded.frames[0].size == (120, 90)


def test_sixteen_bit_keeps_its_contrast() -> None:
    grey = Image.linear_gradient("L").resize((64, 64))
    wide = grey.point(lambda v: v * 257, mode="I").convert("I;16")
    frame = decode(encode(wide)).frames[0]
    lo, hi = frame.convert("L").getextrema()
    assert lo < 10 and hi > 245  # not clipped to white


def test_palette_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0] * 256)
    img.info["transparency"] = 0
    frame = decode(encode(img, transparency=0)).frames[0]
    assert frame.getpixel((5, 5)) == (255, 255, 255)


def test_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert decode(encode(img)).frames[0].getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    img = picture(size=(120, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    frame = decode(encode(img, "JPEG", exif=exif.tobytes())).frames[0]
    assert frame.size == (60, 120)


def test_large_jpeg_is_shrunk_for_hashing() -> None:
    img = picture(size=(3000, 2000))
    decoded = decode(encode(img, "JPEG"), DecodeLimits(max_side=600))
    assert max(decoded.frames[0].size) <= 600 and (decoded.width, decoded.height) == (3000, 2000)
