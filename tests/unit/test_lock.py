"""requirements.lock: every dependency pyproject.toml names is pinned there, exactly.

CI and the Docker image install with `-c requirements.lock`; a dependency missing from it would
silently float to whatever the registry has that day (msgspec 0.23 changed an error type under
an unpinned install once), and `pip-audit -r requirements.lock` would not see it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin: {line!r}"
        pins[_name(name)] = version
    return pins


def test_every_dependency_of_pyproject_is_pinned_in_the_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pins = _lock()
    assert not [r for r in wanted if _name(r) not in pins]


def test_the_lock_pins_nothing_of_this_checkout() -> None:
    assert "vigil" not in _lock()  # installed from the checkout itself (editable)
