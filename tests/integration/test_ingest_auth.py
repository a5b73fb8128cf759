"""HTTP ingest with VIGIL_INGEST_TOKENS: bearer tokens required, several accepted (rotation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import (
    http,
    post_event,
    start_vigil,
    unique_prefix,
    vigil_env,
    wait_ready,
)
from vigil.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def test_ingest_requires_one_of_the_configured_tokens(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    env = vigil_env(broker.url, unique_prefix(), tmp_path,
                    VIGIL_INGEST_TOKENS="old-token, new-token")
    running = start_vigil(["worker", "--agents", "intake"], env, tmp_path)
    try:
        wait_ready(running)
        body = json.dumps(post_event("auth-post")).encode()
        url = running.url("/v1/events")
        assert http("POST", url, body)[0] == 401
        assert http("POST", url, body, {"Authorization": "Bearer wrong"})[0] == 401
        assert http("POST", url, body, {"Authorization": "Basic new-token"})[0] == 401
        assert http("POST", url, body, {"Authorization": "Bearer new-token"})[0] == 202
        assert http("POST", url, body, {"Authorization": "Bearer old-token"})[0] == 202
        assert http("GET", running.url("/healthz"))[0] == 200  # probes stay open
        _, metrics = http("GET", running.url("/metrics"))
        assert b'vigil_ingest_requests_total{status="401"} 3.0' in metrics
    finally:
        running.stop()
