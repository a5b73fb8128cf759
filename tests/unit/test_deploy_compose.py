"""docker-compose.yml, the Dockerfile and the Alertmanager config.

No Docker engine or Compose binary here: the Compose file is validated against the official
Compose specification JSON schema as vendored by the `check-jsonschema` package (test extra),
plus what the schema cannot know: role services match `agents.REGISTRY`, Prometheus discovers
every role, mounted paths exist, no secret values.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agents import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose_spec_schema() -> dict[str, Any]:
    """The compose-spec JSON schema vendored in check-jsonschema (found without importing it)."""
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None and spec.submodule_search_locations, (
        "check-jsonschema is not installed (pip install -e '.[test]')")
    path = Path(spec.submodule_search_locations[0]) / "builtin_schemas/vendor/compose-spec.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def service_name(role: str) -> str:
    """Service (and DNS) name of a role: underscores are not valid in host names."""
    return role.replace("_", "-")


def role_services(doc: dict[str, Any]) -> dict[str, str]:
    """service name -> the role it runs (`vigil worker --agents <role>`)."""
    roles = {}
    for name, service in doc["services"].items():
        command = service.get("command") or []
        if command[:2] == ["worker", "--agents"]:
            roles[name] = command[2]
    return roles


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_schema_check_rejects_a_broken_file() -> None:
    """The schema is strict enough to catch a typo (so the check above means something)."""
    schema = compose_spec_schema()
    doc = compose()
    doc["services"]["decide"]["enviroment"] = {"X": "1"}
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(doc)


def test_one_service_per_role_exactly_the_registered_roles() -> None:
    roles = role_services(compose())
    assert sorted(roles.values()) == sorted(REGISTRY), (
        f"compose role services {sorted(roles.values())} != agents.REGISTRY {sorted(REGISTRY)}: "
        "add (or remove) the service in docker-compose.yml and deploy/prometheus/prometheus.yml")
    assert all(name == service_name(role) for name, role in roles.items())


def test_prometheus_scrapes_every_role_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    vigil = next(j for j in config["scrape_configs"] if j["job_name"] == "vigil")
    names = {n for sd in vigil["dns_sd_configs"] for n in sd["names"]}
    assert names == set(role_services(compose()))


def test_role_services_share_the_image_take_secrets_from_a_file_and_probe_healthz() -> None:
    doc = compose()
    for name in role_services(doc):
        service = doc["services"][name]
        assert service["image"] == "vigil:local", name
        assert service["env_file"][0]["path"] == "deploy/vigil.env", name
        env = service["environment"]
        assert not any(k in env for k in ("VIGIL_SIGNING_KEY", "VIGIL_WEBHOOK_SECRET",
                                          "VIGIL_PAGERDUTY_ROUTING_KEY",
                                          "VIGIL_FORUM_WEBHOOK_SECRET")), name
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), name
    assert doc["services"]["notify"]["environment"]["VIGIL_ALERTMANAGER_URL"].startswith(
        "http://alertmanager:")


def test_bind_mounts_exist_and_the_vigil_env_file_is_not_committed() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    assert not (ROOT / "deploy/vigil.env").exists() or "vigil.env" in (
        ROOT / ".gitignore").read_text() + (ROOT / ".dockerignore").read_text()


def test_dockerfile_is_multi_stage_non_root_and_builds_the_models() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+", text, re.M)
    assert len(stages) >= 2
    final = text.rsplit("\nFROM ", 1)[1]
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "python -m models.build" in text
    assert "HEALTHCHECK" in final


def test_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        message = "amtool not found (Debian package `prometheus-alertmanager`; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(  # noqa: S603
        [amtool, "check-config", str(ROOT / "deploy/alertmanager/alertmanager.yml")],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
