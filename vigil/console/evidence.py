"""Evidence packages for the police or a hotline, and the retention that may put the image in.

`package` builds the JSON (pure); `Retainer` applies the operator's retention policy: it copies
eligible images into the encrypted `EvidenceVault` while the broker still has them, drops the
blobs of items no longer eligible, and hands an export the image only where the policy allows
and never to a volunteer. See docs/console.md "Evidence for the authorities".
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from vigil.console.auth import role_at_least
from vigil.console.store import ConsoleStore, Item, iso
from vigil.console.vault import EvidenceVault, Retention, VaultError, eligible

ReadImage = Callable[[Item], Awaitable[bytes | None]]
FORMAT = "vigil-evidence/1"


def _ip_hash(value: str | None) -> dict[str, str]:
    """`{"ip_hash": value}` when the forum sent one (an optional extra field), else nothing."""
    return {"ip_hash": value} if value else {}


def package(item: Item, pointer: dict[str, Any], reports: list[dict[str, Any]],
            trail: list[dict[str, Any]], image: dict[str, Any], *, user: str,
            now: float) -> dict[str, Any]:
    """The evidence package of one item (`image` from `Retainer.image_part`)."""
    return {
        "format": FORMAT,
        "generated_at": iso(now),
        "generated_by": user,
        "content": {"type": item.content_type, "id": item.content_id,
                    "post_id": item.post_id, "thread_id": item.thread_id},
        "account": {"id": item.author_id, "created_at": pointer.get("author_created_at"),
                    **_ip_hash(pointer.get("author_ip_hash"))},
        "hashes": {"sha256": pointer.get("sha256")},
        "matches": [r for r in item.reasons if r.get("bank") or r.get("label")],
        "severity": item.severity,
        "csam": item.csam,
        "first_seen": iso(item.first_seen),
        "status": item.status,
        "reports": [{"report_id": r["report_id"], "reporter_id": r["reporter_id"],
                     **_ip_hash(r.get("reporter_ip_hash")),
                     "reason": r["reason"], "created_at": iso(r["created_at"])}
                    for r in reports],
        "decision_trail": [{"at": iso(t["at"]), "kind": t["kind"], "event_id": t["event_id"],
                            **t["detail"]} for t in trail],
        "source_event": {k: pointer.get(k) for k in ("topic", "partition", "offset")},
        "image_included": image["included"],
        "image": image,
        "note": "The image is included only where the operator's retention policy allows "
                "(docs/console.md); otherwise the forum or the hotline obtains the original "
                "under its own legal process.",
    }


class Retainer:
    """The retention policy applied to the console's image items (no vault: retention off)."""

    def __init__(self, policy: Retention, vault: EvidenceVault | None, store: ConsoleStore,
                 read_image: ReadImage, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.vault = vault if policy != "off" else None
        self.store = store
        self.read_image = read_image
        self.clock = clock

    async def retain(self, item: Item) -> bool:
        """Keep this item's image if the policy allows and it is not kept yet."""
        if self.vault is None or not eligible(self.policy, item) or self.vault.has(item.key):
            return False
        image = await self.read_image(item)
        if image is None:  # gone from the broker, or a URL image the console does not fetch
            return False
        await asyncio.to_thread(self.vault.put, item.key, image, self.clock())
        return True

    async def run_once(self) -> int:
        """One round: keep what became eligible, drop restored items' and expired blobs.
        Returns how many images were stored."""
        if self.vault is None:
            return 0
        stored = 0
        for item in self.store.image_items():
            if item.status == "restored":
                self.vault.delete(item.key)
            elif await self.retain(item):
                stored += 1
        self.vault.purge(self.clock())
        return stored

    async def image_part(self, item: Item, role: str) -> dict[str, Any]:
        """The `image` of an export: the bytes only where the policy allows, never for a
        volunteer; otherwise why not."""
        if self.vault is None:
            return {"included": False, "why": "retention is off: Vigil keeps no images"}
        if not eligible(self.policy, item):
            return {"included": False,
                    "why": f"the retention policy ({self.policy}) does not cover this item"}
        if not role_at_least(role, "moderator"):
            return {"included": False, "why": "not for this role"}
        try:
            await self.retain(item)
            kept = self.vault.get(item.key, self.clock())
        except VaultError as exc:
            return {"included": False, "why": str(exc)}
        if kept is None:
            return {"included": False, "why": "not retained (gone from the broker, or expired)"}
        return {"included": True, "sha256": kept.sha256, "key_id": kept.key_id,
                "retained_at": iso(kept.stored_at), "delete_after": iso(kept.expires_at),
                "data_b64": base64.b64encode(kept.image).decode()}
