"""HMAC-SHA256 signatures on output events, and the verifier forums use (DESIGN §4).

A signed event carries two CloudEvents extension attributes: `sigkeyid` names the secret and
`signature` is the lowercase hex HMAC-SHA256 of the canonical JSON of `data`. Canonical JSON is
exactly ``json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded
as UTF-8, so a verifier in any language can rebuild the bytes from the parsed event.

This module has no dependency beyond the standard library, so a forum can copy it (or
`pip install vigil` and import `streams.signing`) to check takedowns before acting on them.
Verification accepts several key ids at once: that is how keys are rotated without a gap.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(data: Any) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, non-ASCII kept as UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(data: Any, secret: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `canonical_json(data)` under `secret`."""
    return hmac.new(secret, canonical_json(data), hashlib.sha256).hexdigest()


def verify(event: Mapping[str, Any] | bytes | str, keys: Mapping[str, bytes | str]) -> bool:
    """True when `event` carries a valid signature by one of `keys` (key id → secret).

    `event` is the parsed CloudEvent or its raw JSON. An unknown key id, a missing signature or
    any change to `data` gives False; the comparison is constant-time.
    """
    if isinstance(event, (bytes, str)):
        try:
            event = json.loads(event)
        except ValueError:
            return False
    if not isinstance(event, Mapping):
        return False
    key_id, signature = event.get("sigkeyid"), event.get("signature")
    if not isinstance(key_id, str) or not isinstance(signature, str) or "data" not in event:
        return False
    secret = keys.get(key_id)
    if secret is None:
        return False
    if isinstance(secret, str):
        secret = secret.encode()
    # Compare bytes: `compare_digest` raises on non-ASCII str, and a crafted event must not crash
    # the verifier a forum runs on everything it receives.
    return hmac.compare_digest(
        sign(event["data"], secret).encode(), signature.encode("utf-8", "replace")
    )


class Signer:
    """Signs `data` payloads with one key id; the key itself never leaves this object."""

    def __init__(self, key_id: str, secret: bytes) -> None:
        if not key_id or not secret:
            raise ValueError("a signing key id and a non-empty secret are required")
        self.key_id = key_id
        self._secret = secret

    def __repr__(self) -> str:  # never print the secret
        return f"Signer(key_id={self.key_id!r})"

    def sign(self, data: Any) -> str:
        """Signature of a JSON-able `data` payload."""
        return sign(data, self._secret)
