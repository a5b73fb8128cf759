"""The evidence vault: AES-GCM at rest, key id with each blob, expiry, and the export that
includes the image only where the retention policy allows (never for a volunteer)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.test_console_views import Harness, harness, login, png  # noqa: F401 - fixture
from vigil.console.vault import EvidenceVault, VaultError, eligible, key_id, load_key

KEY = bytes(range(32))
IMAGE = png()


def test_blob_is_encrypted_and_names_its_key(tmp_path: Path) -> None:
    vault = EvidenceVault(tmp_path / "ev", KEY, retention_s=3600)
    vault.put("image:x", IMAGE, now=1000.0)
    (blob,) = (tmp_path / "ev").glob("*.evd")
    raw = blob.read_bytes()
    assert IMAGE[:32] not in raw and base64.b64encode(IMAGE)[:32] not in raw
    assert key_id(KEY).encode() in raw and KEY not in raw
    assert oct(blob.stat().st_mode & 0o777) == "0o600"
    kept = vault.get("image:x", now=1001.0)
    assert kept is not None and kept.image == IMAGE
    assert kept.sha256 == hashlib.sha256(IMAGE).hexdigest() and kept.key_id == key_id(KEY)


def test_tampering_and_a_wrong_key_are_refused(tmp_path: Path) -> None:
    vault = EvidenceVault(tmp_path, KEY, retention_s=3600)
    vault.put("image:x", IMAGE, now=0.0)
    (blob,) = tmp_path.glob("*.evd")
    # push the expiry out in the header: authenticated data, so decryption fails
    blob.write_bytes(blob.read_bytes().replace(b'"expires_at": 3600.0', b'"expires_at": 9e9'))
    with pytest.raises(VaultError, match="authentication"):
        vault.get("image:x", now=1.0)
    vault.put("image:x", IMAGE, now=0.0)
    other = EvidenceVault(tmp_path, os.urandom(32), retention_s=3600)
    with pytest.raises(VaultError, match="sealed with key"):
        other.get("image:x", now=1.0)


def test_expired_blobs_are_deleted(tmp_path: Path) -> None:
    vault = EvidenceVault(tmp_path, KEY, retention_s=60)
    vault.put("image:a", IMAGE, now=0.0)
    vault.put("image:b", IMAGE, now=100.0)
    assert vault.purge(now=70.0) == 1
    assert not vault.has("image:a") and vault.has("image:b")
    assert vault.get("image:b", now=200.0) is None and not vault.has("image:b")


def test_key_loading(tmp_path: Path) -> None:
    assert load_key(base64.b64encode(KEY).decode(), None) == KEY
    path = tmp_path / "key"
    path.write_text(base64.b64encode(KEY).decode() + "\n")
    assert load_key(None, path) == KEY
    for bad in (None, "not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(VaultError):
            load_key(bad, None)


async def test_export_includes_the_image_only_where_policy_allows(
        tmp_path: Path, harness: tuple[Harness, TestClient]) -> None:  # noqa: F811
    h, client = harness
    h.add_image("img-match", 1, action="block", label="csam")
    h.add_image("img-held", 2)
    original = h.images[1]
    # retention off (the default): nothing kept, nothing included
    await login(client, "mod")
    package = await (await client.get("/console/items/image/img-match/evidence.json")).json()
    assert package["image_included"] is False and "data_b64" not in package["image"]

    retainer = h.console.retainer
    retainer.policy = "hash_match"
    retainer.vault = EvidenceVault(tmp_path / "vault", KEY, retention_s=86400)
    assert await retainer.run_once() == 1  # the bank match, not the held item
    package = await (await client.get("/console/items/image/img-match/evidence.json")).json()
    assert package["image_included"] is True
    assert base64.b64decode(package["image"]["data_b64"]) == original
    assert package["image"]["key_id"] == key_id(KEY)
    held = await (await client.get("/console/items/image/img-held/evidence.json")).json()
    assert held["image_included"] is False
    audit = [e for e in h.store.audit_log() if e["action"] == "export_evidence"]
    assert all(base64.b64encode(original)[:40].decode() not in (e["detail"] or "")
               for e in audit)
    # a volunteer gets no export at all
    await client.post("/console/logout", data={"csrf": "x"})
    client.session.cookie_jar.clear()
    await login(client, "vol")
    refused = await client.get("/console/items/image/img-match/evidence.json",
                               allow_redirects=False)
    assert refused.status == 403


def test_eligibility() -> None:
    class I:  # noqa: E742 - a minimal item
        def __init__(self, status: str, bank: str | None, ctype: str = "image") -> None:
            self.status, self.content_type = status, ctype
            self.reasons = [{"bank": bank}] if bank else [{"detector": "policy"}]

    assert not eligible("off", I("open", "b"))
    assert eligible("hash_match", I("open", "b"))
    assert not eligible("hash_match", I("confirmed", None))
    assert eligible("confirmed", I("confirmed", None))
    assert not eligible("confirmed", I("restored", "b"))
    assert not eligible("confirmed", I("open", "b", "post"))
