"""PDQ through the perceptual detector: transformed copies match, unrelated images do not.

Images are drawn with Pillow in the test (shapes, gradients, text: never a flat colour, whose
PDQ quality is too low to match anything).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from agents.banks import BankIndex, parse_bank, parse_banks_config
from agents.detectors.image_hash import PerceptualHashDetector
from agents.hashes import ALL_HASH_TYPES, HASH_TYPES, DHash, PHash, Pdq
from agents.hashes.pdq import DIHEDRAL_VARIANTS
from streams.events import Account, ImageData, SignalData

HEADER = "signal_type,signal,bank,label,severity\n"


def drawn(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A picture with structure: a gradient, shapes and a line of text."""
    rnd = random.Random(seed)
    w, h = size
    gradient = Image.linear_gradient("L").resize(size).rotate(rnd.randrange(360))
    base = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                               Image.new("L", size, rnd.randrange(256))))
    draw = ImageDraw.Draw(base)
    for _ in range(10):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        box = [x0, y0, x0 + rnd.randrange(20, w // 2), y0 + rnd.randrange(20, h // 2)]
        colour = tuple(rnd.randrange(256) for _ in range(3))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)(box, fill=colour)
    draw.text((rnd.randrange(w // 2), rnd.randrange(h // 2)), f"picture {seed}", fill=(0, 0, 0))
    return base


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def overlay_text(img: Image.Image) -> Image.Image:
    img = img.copy()
    ImageDraw.Draw(img).text((10, img.height - 20), "repost lol", fill=(255, 255, 255))
    return img


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "identity-png": lambda i: encode(i),
    "resize-50": lambda i: encode(i.resize((i.width // 2, i.height // 2))),
    "jpeg-q30": lambda i: encode(i, "JPEG", quality=30),
    "rotate-90": lambda i: encode(i.rotate(90, expand=True)),
    "rotate-180": lambda i: encode(i.rotate(180)),
    "mirror": lambda i: encode(i.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "flip": lambda i: encode(i.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
    "text-overlay": lambda i: encode(overlay_text(i)),
    "brighter": lambda i: encode(ImageEnhance.Brightness(i).enhance(1.3)),
    "darker": lambda i: encode(ImageEnhance.Brightness(i).enhance(0.75)),
    "png-to-jpeg": lambda i: encode(i, "JPEG", quality=85),
    "jpeg-to-png": lambda i: encode(Image.open(io.BytesIO(encode(i, "JPEG", quality=70)))),
    "resize-50-jpeg-q30": lambda i: encode(i.resize((i.width // 2, i.height // 2)), "JPEG",
                                           quality=30),
    "blur": lambda i: encode(i.filter(ImageFilter.GaussianBlur(1.5))),
}
SEEDS = (1, 2, 3)


def image_data(image_id: str = "img-1") -> ImageData:
    return ImageData(image_id=image_id, post_id="p-1", thread_id="t-1", author=Account(id="u-1"))


@pytest.fixture(scope="module")
def banked() -> tuple[BankIndex, dict[int, str]]:
    """A bank with the PDQ of each seed's original image."""
    pdq = Pdq()
    hashes = {seed: pdq.compute(encode(drawn(seed))) for seed in SEEDS}
    rows = "".join(f"pdq,{h},bank-{seed},csam,critical\n" for seed, h in hashes.items())
    return BankIndex(parse_bank(HEADER + rows)), hashes


def detect(index: BankIndex, data: bytes) -> SignalData:
    return PerceptualHashDetector(lambda: index).detect_bytes(image_data(), data)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_transformed_copy_matches_its_original(
    banked: tuple[BankIndex, dict[int, str]], transform: str, seed: int
) -> None:
    index, hashes = banked
    signal = detect(index, TRANSFORMS[transform](drawn(seed)))
    assert signal.status == "match", signal.evidence
    assert signal.evidence["bank"] == f"bank-{seed}"
    assert signal.distance is not None and signal.distance <= 31
    assert signal.evidence["severity"] == "critical"
    # the image's own hashes are left out of a signal that touched a bank (= bank content)
    assert hashes[seed] not in repr(signal.evidence)
    assert "pdq" not in signal.evidence


def test_rotation_matches_through_a_dihedral_variant(
    banked: tuple[BankIndex, dict[int, str]]
) -> None:
    index, _ = banked
    signal = detect(index, encode(drawn(1).rotate(90, expand=True)))
    assert signal.evidence["variant"] in DIHEDRAL_VARIANTS[1:]


def test_unrelated_images_do_not_match(banked: tuple[BankIndex, dict[int, str]]) -> None:
    index, _ = banked
    for seed in range(100, 130):
        signal = detect(index, encode(drawn(seed)))
        assert signal.status == "clear", (seed, signal.evidence)
        assert len(signal.evidence["pdq"]) == 64  # the image's own PDQ, for the spray detector
        assert len(signal.evidence["phash"]) == 16 and len(signal.evidence["dhash"]) == 16
        assert signal.evidence["quality"] >= 50


def test_flat_image_is_low_quality_and_never_matches_perceptually() -> None:
    flat = encode(Image.new("RGB", (200, 200), (128, 128, 128)))
    pdq = Pdq().compute(flat)
    index = BankIndex(parse_bank(HEADER + f"pdq,{pdq},blank,csam,critical\n"))
    signal = detect(index, flat)
    assert signal.status == "clear"
    assert signal.evidence["low_quality"] is True and signal.evidence["quality"] < 50
    assert signal.distance is None


def test_per_bank_threshold_and_disabled_bank() -> None:
    original = drawn(7)
    pdq = Pdq().compute(encode(original))
    copy = encode(ImageEnhance.Brightness(original).enhance(1.3))
    distance = Pdq().distance(pdq, Pdq().compute(copy))
    assert 0 < distance <= 31
    rows = parse_bank(HEADER + f"pdq,{pdq},strict,csam,critical\n")
    strict = parse_banks_config(f"[banks.strict]\npdq_threshold = {distance - 1}\n")
    assert detect(BankIndex(rows, strict), copy).status == "clear"
    loose = parse_banks_config(f"[banks.strict]\npdq_threshold = {distance}\n")
    signal = detect(BankIndex(rows, loose), copy)
    assert signal.status == "match" and signal.threshold == distance
    off = parse_banks_config("[banks.strict]\nenabled = false\n")
    assert detect(BankIndex(rows, off), encode(original)).status == "clear"


def test_negative_bank_suppresses_a_match() -> None:
    original = encode(drawn(8))
    pdq = Pdq().compute(original)
    rows = parse_bank(HEADER + f"pdq,{pdq},partner,csam,critical\n"
                      f"pdq,{pdq},known-fp,meme,low\n")
    config = parse_banks_config('[banks.known-fp]\nkind = "negative"\n')
    signal = detect(BankIndex(rows, config), original)
    assert signal.status == "clear"
    assert signal.evidence["suppressed_by"] == ["known-fp"]
    assert "pdq" not in signal.evidence


def test_tombstone_removes_a_hash_from_its_bank() -> None:
    original = encode(drawn(9))
    pdq = Pdq().compute(original)
    rows = parse_bank(HEADER + f"pdq,{pdq},partner,csam,critical\n"
                      f"pdq,{pdq},partner-removals,-,low\n")
    config = parse_banks_config(
        '[banks.partner-removals]\nkind = "tombstone"\nremoves = "partner"\n')
    assert detect(BankIndex(rows), original).status == "match"
    index = BankIndex(rows, config)
    assert detect(index, original).status == "clear"
    assert dict(index.sizes()) == {}


def test_animated_gif_every_frame_is_checked() -> None:
    banned = drawn(11, (200, 150))
    frames = [drawn(50 + i, (200, 150)) for i in range(3)] + [banned]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    pdq = Pdq().compute(encode(banned))
    index = BankIndex(parse_bank(HEADER + f"pdq,{pdq},gifs,csam,high\n"))
    signal = detect(index, out.getvalue())
    assert signal.status == "match", signal.evidence
    assert signal.evidence["frame"] == 3 and signal.evidence["frames_total"] == 4


def test_hash_type_registry_and_protocol_members() -> None:
    assert set(HASH_TYPES) == {"sha256", "md5", "pdq"}  # what a bank may list (DESIGN §5)
    assert {"phash", "dhash"} <= set(ALL_HASH_TYPES)
    for hash_type in ALL_HASH_TYPES.values():
        assert hash_type.name and hash_type.version and hash_type.threshold >= 0
    data = encode(drawn(3))
    for hash_type in (Pdq(), PHash(), DHash()):
        value = hash_type.compute(data)
        assert hash_type.is_valid(value) and value == value.lower()
        assert hash_type.distance(value, value) == 0
        flipped = format(int(value, 16) ^ 0b101, f"0{len(value)}x")
        assert hash_type.distance(value, flipped) == 2
    assert not Pdq().is_valid("ab" * 31) and not Pdq().is_valid("zz" * 32)


def test_pdq_hex_is_msb_first_like_threatexchange() -> None:
    import numpy as np
    import pdqhash

    img = drawn(4)
    bits, _ = pdqhash.compute(np.asarray(img))
    expected = "%064x" % int("".join(str(int(b)) for b in bits), 2)
    assert Pdq().hash_image(img).hex == expected
