"""ImageSource: inline bytes pass through, URL images go through the fetcher, failures are data."""

from __future__ import annotations

from agents.fetch import FetchError, ImageSource
from agents.metrics import Metrics
from streams.events import Account, CloudEvent, ImageData


class FakeFetcher:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def fetch(self, url: str) -> bytes:
        self.urls.append(url)
        if "refused" in url:
            raise FetchError("host is not on the allow-list", "refused")
        return b"fetched:" + url.encode()


def event(image_id: str, **fields: object) -> CloudEvent[ImageData]:
    return CloudEvent(specversion="1.0", id=f"e-{image_id}", source="t",
                      type="forum.image.uploaded",
                      data=ImageData(image_id=image_id, author=Account(id="u"), **fields))


async def test_inline_url_and_refused_images() -> None:
    fetcher = FakeFetcher()
    metrics = Metrics()
    source = ImageSource(fetcher, 2, metrics)  # type: ignore[arg-type]
    inline, by_url, refused = await source.resolve_all([
        event("a", data_b64=b"raw"),
        event("b", url="https://img.example/b.png"),
        event("c", url="https://refused.example/c.png"),
    ])
    assert fetcher.urls == ["https://img.example/b.png", "https://refused.example/c.png"]
    assert inline.data == b"raw" and inline.inline() is inline.event
    assert by_url.data == b"fetched:https://img.example/b.png"
    assert by_url.inline().data.data_b64 == by_url.data and by_url.inline().data.url is None
    assert refused.data is None and refused.problem is not None
    assert refused.problem.kind == "refused" and refused.inline().data.url is not None
    sample = metrics.registry.get_sample_value
    assert sample("vigil_image_fetches_total", {"outcome": "ok"}) == 1
    assert sample("vigil_image_fetches_total", {"outcome": "refused"}) == 1
