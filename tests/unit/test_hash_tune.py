"""`vigil banks tune` (agents.tune) and the border-trimmed PDQ lookup it motivated."""

from __future__ import annotations

from click.testing import CliRunner
from PIL import ImageOps

from agents.banks import BankIndex, parse_bank
from agents.detectors.image_hash import PerceptualHashDetector
from agents.hashes import Pdq
from agents.imaging import trim_borders
from agents.tune import format_report, synthetic_images, tune
from streams.events import Account, ImageData
from vigil.cli import main

from .test_hash_pdq import HEADER, drawn, encode


def test_padded_copy_matches_through_the_trimmed_lookup() -> None:
    original = drawn(61)
    index = BankIndex(parse_bank(
        HEADER + f"pdq,{Pdq().compute(encode(original))},b,csam,critical\n"))
    padded = ImageOps.expand(original, border=(48, 36), fill=(255, 255, 255))
    signal = PerceptualHashDetector(lambda: index).detect_bytes(
        ImageData(image_id="pad", author=Account(id="u")), encode(padded))
    assert signal.status == "match"
    assert signal.evidence["variant"].startswith("trimmed_")


def test_trim_leaves_unpadded_images_alone() -> None:
    img = drawn(62)
    assert trim_borders(img).size == img.size
    padded = ImageOps.expand(img, border=20, fill=(0, 0, 0))
    assert trim_borders(padded).size == img.size


def test_tune_reports_recall_and_false_matches_per_hash_and_transform() -> None:
    rows = tune(synthetic_images(4), precision=0.99, schemes=("pdq", "pdq+trim"),
                transforms=("jpeg-q30", "pad-10%-white"))
    by = {(r.scheme, r.transform): r for r in rows}
    assert by["pdq", "jpeg-q30"].default_recall == 1.0
    assert by["pdq", "pad-10%-white"].default_recall == 0.0  # plain PDQ misses padding
    assert by["pdq+trim", "pad-10%-white"].default_recall == 1.0
    assert all(r.false_pairs == 12 and r.images == 4 for r in rows)
    assert "| pdq+trim | pad-10%-white | 4 |" in format_report(rows, 0.99)


def test_cli_banks_tune() -> None:
    result = CliRunner().invoke(main, ["banks", "tune", "--synthetic", "3", "--hash", "pdq",
                                       "--transform", "mirror"])
    assert result.exit_code == 0, result.output
    assert "| pdq | mirror | 3 |" in result.output
    bad = CliRunner().invoke(main, ["banks", "tune", "--synthetic", "3", "--hash", "nope"])
    assert bad.exit_code != 0 and "unknown hash type" in bad.output
