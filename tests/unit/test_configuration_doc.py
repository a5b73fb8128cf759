"""docs/configuration.md documents every setting (operators configure Vigil from that page)."""

from __future__ import annotations

import re
from pathlib import Path

from vigil.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_has_a_row_and_no_row_names_a_missing_setting() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(VIGIL_[A-Z0-9_]+)` \|", text, flags=re.M))
    fields = {f"VIGIL_{name.upper()}" for name in Settings.model_fields}
    assert sorted(fields - documented) == [], "settings missing from docs/configuration.md"
    assert sorted(documented - fields - {"VIGIL_CONFIG"}) == [], "doc rows for no setting"
