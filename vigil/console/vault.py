"""Evidence images kept for a report to the police or a hotline, encrypted at rest.

Off by default (`VIGIL_CONSOLE_EVIDENCE_RETENTION=off`): Vigil then keeps no image at all.
When an operator turns it on, the console copies the image of each *eligible* item (a bank
match, or also a human-confirmed item) from the images topic into this vault while the broker
still has it, so the evidence export can include it later. Each image is one file:

    <one JSON header line>\\n<AES-256-GCM ciphertext of the image>

The header carries the key id, the nonce, the content key, the image's sha256 and when it
expires; it is the AEAD's associated data, so changing any of it makes the file unreadable.
The key comes from `VIGIL_CONSOLE_EVIDENCE_KEY(_FILE)` (never the repository or the data dir);
its id (a hash of the key, not the key) is stored with every blob so a rotated key is named
when an old blob cannot be read. Expired blobs are deleted. Image bytes are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Retention = Literal["off", "hash_match", "confirmed"]
FORMAT = "vigil-evidence-blob/1"
KEY_BYTES = 32


class VaultError(Exception):
    """The vault cannot be used as configured (no key, bad key, cryptography missing)."""


def load_key(value: str | None, path: Path | None) -> bytes:
    """The 32-byte key from the variable or the file (base64 either way)."""
    text = value if value else (path.read_text(encoding="utf-8") if path else None)
    if not text:
        raise VaultError("evidence retention is on but VIGIL_CONSOLE_EVIDENCE_KEY(_FILE) is "
                         "not set (32 random bytes, base64)")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError("the evidence key is not base64") from exc
    if len(key) != KEY_BYTES:
        raise VaultError(f"the evidence key must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def key_id(key: bytes) -> str:
    """A public name of the key (stored with each blob; reveals nothing about the key)."""
    return hashlib.sha256(b"vigil-evidence-key-id:" + key).hexdigest()[:16]


def eligible(policy: Retention, item: Any) -> bool:
    """Whether the retention policy allows keeping this item's image."""
    if policy == "off" or item.content_type != "image" or item.status == "restored":
        return False
    matched = any(r.get("bank") for r in item.reasons)
    return matched or (policy == "confirmed" and item.status == "confirmed")


@dataclass(frozen=True)
class Retained:
    """A decrypted evidence image and what the vault knows about it."""

    image: bytes
    sha256: str
    key_id: str
    stored_at: float
    expires_at: float


class EvidenceVault:
    """Encrypted image files under `directory`, one per content key, kept `retention_s`."""

    def __init__(self, directory: Path, key: bytes, retention_s: float) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise VaultError("evidence retention needs the cryptography package: "
                             "pip install 'vigil[evidence]'") from exc
        self.directory = directory
        self.retention_s = retention_s
        self.key_id = key_id(key)
        self._aead = AESGCM(key)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, content_key: str) -> Path:
        return self.directory / (hashlib.sha256(content_key.encode()).hexdigest() + ".evd")

    def has(self, content_key: str) -> bool:
        return self._path(content_key).exists()

    def put(self, content_key: str, image: bytes, now: float) -> None:
        """Encrypt and keep `image` until now + retention (atomic write, mode 0600)."""
        nonce = os.urandom(12)
        header = json.dumps({
            "format": FORMAT, "key_id": self.key_id,
            "nonce": base64.b64encode(nonce).decode(), "content_key": content_key,
            "sha256": hashlib.sha256(image).hexdigest(), "stored_at": now,
            "expires_at": now + self.retention_s}, sort_keys=True).encode()
        sealed = self._aead.encrypt(nonce, image, header)
        path = self._path(content_key)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(header + b"\n" + sealed)
        os.replace(tmp, path)

    def get(self, content_key: str, now: float) -> Retained | None:
        """The image, if kept and not expired (an expired one is deleted here)."""
        path = self._path(content_key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        header_bytes, _, sealed = raw.partition(b"\n")
        header = json.loads(header_bytes)
        if header["expires_at"] <= now:
            path.unlink(missing_ok=True)
            return None
        if header["key_id"] != self.key_id or header["content_key"] != content_key:
            raise VaultError(f"evidence blob of {content_key} was sealed with key "
                             f"{header['key_id']}, not the configured {self.key_id}")
        from cryptography.exceptions import InvalidTag

        try:
            image = self._aead.decrypt(base64.b64decode(header["nonce"]), sealed, header_bytes)
        except InvalidTag as exc:
            raise VaultError(f"evidence blob of {content_key} fails authentication") from exc
        return Retained(image, header["sha256"], header["key_id"], header["stored_at"],
                        header["expires_at"])

    def delete(self, content_key: str) -> None:
        self._path(content_key).unlink(missing_ok=True)

    def purge(self, now: float) -> int:
        """Delete every expired blob; returns how many."""
        removed = 0
        for path in self.directory.glob("*.evd"):
            with path.open("rb") as blob:
                header = json.loads(blob.readline())
            if header["expires_at"] <= now:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
