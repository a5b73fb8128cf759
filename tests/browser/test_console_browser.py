"""The console in headless Chromium against a real worker and the embedded broker.

- log in, see a held image blurred, restore it → a `restore` takedown on the topic;
- a csam-bank-blocked image: no request the browser makes, and no response body it gets,
  carries its bytes or a URL for it (checked from Chromium's network log);
- unauthenticated requests are refused; a volunteer cannot un-blur;
- screenshots of the queue and the status page for docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from streams.codec import encode
from streams.events import AlertData
from streams.topics import ALERTS, IMAGES, POSTS, REPORTS, TAKEDOWNS
from tests.integration.console_env import (
    CSAM_IMAGE,
    PASSWORD,
    csam_image_event,
    held_image_event,
    report_event,
    start_console_worker,
)
from tests.integration.helpers import Worker, collect, post_event, produce, topic
from vigil.broker import EmbeddedBroker

pytestmark = [pytest.mark.integration, pytest.mark.browser]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = start_console_worker(broker.url, tmp_path_factory.mktemp("browser"))
    try:
        yield running
    finally:
        running.stop()


def login(driver: Any, worker: Worker, user: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(worker.url("/console/login"))
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: driver.current_url.endswith("/console/"), "login")


def wait_for(predicate: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_item(driver: Any, worker: Worker, content_id: str, text: str) -> None:
    def present() -> bool:
        driver.get(worker.url("/console/"))
        return f"image {content_id}" in driver.page_source and text in driver.page_source
    wait_for(present, f"{content_id} in the queue")


def network(driver: Any) -> list[dict[str, Any]]:
    """Chromium's DevTools network events since the last call."""
    return [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]


def test_volunteer_restores_a_blurred_held_image(chrome: Any, worker: Worker,
                                                 broker: EmbeddedBroker) -> None:
    from selenium.webdriver.common.by import By

    asyncio.run(produce(broker.bootstrap, topic(worker, IMAGES),
                        [held_image_event("img-b-held", seed=2)]))
    login(chrome, worker, "vera")
    wait_for_item(chrome, worker, "img-b-held", "hold_for_review")
    img = chrome.find_element(By.CSS_SELECTOR, 'img[alt="Blurred thumbnail of image img-b-held"]')
    assert "view=clear" not in img.get_attribute("src")
    wait_for(lambda: chrome.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", img), "thumbnail")
    assert chrome.execute_script("return arguments[0].naturalWidth", img) <= 160

    # a volunteer has no un-blur button, and the clear view is refused
    chrome.get(worker.url("/console/items/image/img-b-held"))
    assert "Your role cannot un-blur images" in chrome.page_source
    assert not chrome.find_elements(By.XPATH, "//button[contains(., 'Un-blur')]")
    network(chrome)
    chrome.get(worker.url("/console/items/image/img-b-held/thumb?view=clear"))
    statuses = [m["params"]["response"]["status"] for m in network(chrome)
                if m["method"] == "Network.responseReceived"
                and "view=clear" in m["params"]["response"]["url"]]
    assert statuses == [403]

    chrome.get(worker.url("/console/"))
    item = chrome.find_element(By.ID, "item-image%3Aimg-b-held")
    item.find_element(By.XPATH, ".//button[starts-with(normalize-space(.), 'Restore')]").click()
    wait_for(lambda: "restore: img-b-held" in chrome.page_source, "restore confirmation")
    takedowns = asyncio.run(collect(
        broker.bootstrap, topic(worker, TAKEDOWNS),
        lambda es: any(e["data"]["target"]["id"] == "img-b-held"
                       and e["data"]["action"] == "restore" for e in es)))
    restore = next(e for e in takedowns if e["data"]["target"]["id"] == "img-b-held"
                   and e["data"]["action"] == "restore")
    assert restore["data"]["reasons"][0]["signal"] == "restore by vera"


def test_csam_blocked_image_never_reaches_the_browser(chrome: Any, worker: Worker,
                                                      broker: EmbeddedBroker) -> None:
    from selenium.webdriver.common.by import By

    asyncio.run(produce(broker.bootstrap, topic(worker, IMAGES),
                        [csam_image_event("img-b-csam")]))
    login(chrome, worker, "ada")  # admin: the most privileged role sees no more
    wait_for_item(chrome, worker, "img-b-csam", "Image withheld")
    chrome.execute_cdp_cmd("Network.enable", {})
    network(chrome)  # from here on, record everything
    chrome.get(worker.url("/console/"))
    chrome.get(worker.url("/console/items/image/img-b-csam"))
    assert not chrome.find_elements(By.XPATH, "//button[contains(., 'Un-blur')]")
    chrome.get(worker.url("/console/api/queue"))
    events = network(chrome)
    responses = [m["params"] for m in events if m["method"] == "Network.responseReceived"]
    requests = [m["params"]["request"]["url"] for m in events
                if m["method"] == "Network.requestWillBeSent"]
    assert requests, "no network events recorded"
    assert not [u for u in requests if "img-b-csam/thumb" in u or u.startswith("data:image")]
    assert not [r for r in responses if r["response"]["mimeType"].startswith("image/")
                and "img-b-csam" in r["response"]["url"]]
    needles = (CSAM_IMAGE[:64], base64.b64encode(CSAM_IMAGE)[:64])
    for params in responses:
        try:
            body = chrome.execute_cdp_cmd("Network.getResponseBody",
                                          {"requestId": params["requestId"]})
        except Exception:  # noqa: BLE001 - bodies of redirects/evicted responses are gone
            continue
        raw = (base64.b64decode(body["body"]) if body.get("base64Encoded")
               else body["body"].encode())
        assert not any(n in raw for n in needles), params["response"]["url"]
    for img in chrome.find_elements(By.TAG_NAME, "img"):
        assert "img-b-csam" not in (img.get_attribute("src") or "")


def alert_value(kind: str, target_id: str, summary: str, **evidence: Any) -> tuple[bytes | None, bytes]:
    """A `safety.alerts.v1` message, as decide/bursts would send it."""
    now = datetime.now(timezone.utc)
    data = msgspec.convert({
        "alert_id": f"a-{uuid.uuid4().hex[:8]}", "kind": kind, "severity": "high",
        "summary": summary, "target": {"type": "thread", "id": target_id},
        "evidence": evidence, "first_seen": now - timedelta(minutes=2), "last_seen": now,
        "dedup_key": f"{kind}:{target_id}"}, AlertData)
    return encode(ALERTS, data, source="vigil/test")


def test_new_incident_appears_on_an_open_page(chrome: Any, worker: Worker,
                                              broker: EmbeddedBroker) -> None:
    from selenium.webdriver.common.by import By

    login(chrome, worker, "mo")
    chrome.get(worker.url("/console/"))
    live = chrome.find_element(By.ID, "live")
    assert live.get_attribute("aria-live") == "polite"
    chrome.execute_script("window.vigilTestMarker = 'no reload';")
    summary = f"thread t-live-{uuid.uuid4().hex[:6]}: 40 posts in 5 min"
    key, value = alert_value("thread_raid", f"t-live-{uuid.uuid4().hex[:6]}", summary)
    asyncio.run(produce(broker.bootstrap, topic(worker, ALERTS), [value], key=key))
    # read in one script call: the section is replaced whenever any incident changes
    wait_for(lambda: summary in chrome.execute_script(
        "return document.getElementById('live-incidents').textContent"),
        "the new incident on the open page")
    # it arrived in place: the page was not reloaded (the marker survives a DOM swap only)
    assert chrome.execute_script("return window.vigilTestMarker") == "no reload"
    assert chrome.find_element(By.ID, "live").get_attribute("aria-live") == "polite"


def test_unauthenticated_browser_is_refused(chrome: Any, worker: Worker) -> None:
    chrome.get(worker.url("/console/"))
    assert "/console/login" in chrome.current_url
    network(chrome)
    chrome.get(worker.url("/console/api/queue"))
    assert "login required" in chrome.page_source
    statuses = [m["params"]["response"]["status"] for m in network(chrome)
                if m["method"] == "Network.responseReceived"
                and m["params"]["response"]["url"].endswith("/console/api/queue")]
    assert statuses == [401]


def test_screenshots(chrome: Any, worker: Worker, broker: EmbeddedBroker) -> None:
    """Screenshots for docs/screenshots (written when VIGIL_SCREENSHOTS=1, else to a temp dir)."""
    from selenium.webdriver.common.by import By

    out = SCREENSHOTS if os.environ.get("VIGIL_SCREENSHOTS") == "1" else None
    asyncio.run(produce(broker.bootstrap, topic(worker, IMAGES),
                        [held_image_event("img-s-1", seed=3), held_image_event("img-s-2", seed=4),
                         csam_image_event("img-s-csam")]))
    asyncio.run(produce(broker.bootstrap, topic(worker, REPORTS),
                        [report_event("img-s-1"), report_event("img-s-1")]))
    asyncio.run(collect(broker.bootstrap, topic(worker, ALERTS),
                        lambda es: any(e["data"]["target"]["id"] == "img-s-csam"
                                       for e in es if e["data"].get("target"))))
    raid = alert_value("thread_raid", "t-841", "thread t-841: 46 posts in 5 min (baseline "
                       "1.2), 31 of 33 authors young")
    lock = alert_value("mitigation", "t-841", "thread t-841: new accounts read-only",
                       mitigation="young_accounts_read_only", decision_id="dec-mit-t-841",
                       scope="thread", trigger="thread_raid", resolved=False,
                       expires_at=(datetime.now(timezone.utc) + timedelta(minutes=45)).isoformat())
    raid_posts = []
    for i in range(4):  # the raid's posts, each allowed on its own
        event = post_event(f"p-841-{i}", body=f"everyone come look {i}")
        event["data"].update(thread_id="t-841", author={"id": f"new-{i}"})
        raid_posts.append(json.dumps({**event, "time": datetime.now(timezone.utc).isoformat()})
                          .encode())
    asyncio.run(produce(broker.bootstrap, topic(worker, POSTS), raid_posts))
    for key, value in (raid, lock):
        asyncio.run(produce(broker.bootstrap, topic(worker, ALERTS), [value], key=key))
    login(chrome, worker, "mo")
    wait_for(lambda: chrome.get(worker.url("/console/")) or
             "Hide all 4 posts/images" in chrome.page_source, "the raid's posts")
    wait_for_item(chrome, worker, "img-s-2", "hold_for_review")
    wait_for_item(chrome, worker, "img-s-csam", "Image withheld")
    for img in chrome.find_elements(By.CSS_SELECTOR, "img.thumb"):
        wait_for(lambda img=img: chrome.execute_script(
            "return arguments[0].complete", img), "thumbnails")
    shots = {"console-queue.png": "/console/", "status.png": "/status"}
    for name, path in shots.items():
        chrome.get(worker.url(path))
        png = full_page(chrome, 1280)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(png)
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})  # a phone
    chrome.get(worker.url("/console/"))
    assert chrome.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
    if out is not None:
        (out / "console-queue-phone.png").write_bytes(chrome.get_screenshot_as_png())


def full_page(driver: Any, width: int) -> bytes:
    """A PNG of the whole page at `width` CSS pixels."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(int(height), 4000), "deviceScaleFactor": 1,
        "mobile": False})
    png: bytes = driver.get_screenshot_as_png()
    return png
