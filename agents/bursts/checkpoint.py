"""Signed snapshots of detector state: how burst detection survives a restart or rebalance.

A snapshot is a whole detector group (windows, baselines, hour-of-week profiles, open incidents,
watermark) with the last input offset folded into it. Detectors are deterministic, so restoring
it and re-reading the input from the next offset rebuilds exactly the state an uninterrupted
run would have: an incident open at the restart continues under its `dedup_key`, alerts sent
again for the re-read events carry the same ids (consumers dedup by id), and it resolves.

Objects a worker shares between groups — the thresholds in force, reporter accuracy, the MinHash
signer — are not copied into a group's snapshot: they are written as named references and the
restoring worker's own objects take their place (reporter accuracy has a snapshot of its own).

The format is pickle, because the state is many small Python objects (and a datasketch index)
that would each need a codec otherwise. Unpickling runs code its input names, so a snapshot is
signed (HMAC-SHA256 under `VIGIL_BURST_CHECKPOINT_KEY`, a secret of its own) and carries the
detector version; one that does not verify or is of another version is ignored and the state starts empty, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import pickle
import zlib
from typing import Any

from agents.bursts.base import VERSION

_HEADER = f"vigil-burst-snapshot {VERSION}\n".encode()
_MAC = hashlib.sha256().digest_size


class Snapshots:
    """Dumps and loads `(offset, state)` pairs as signed bytes; `shared` objects by name."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("snapshots need a non-empty signing secret")
        self._secret = secret
        self.shared: dict[str, object] = {}

    def __repr__(self) -> str:  # never print the secret
        return f"Snapshots(shared={sorted(self.shared)})"

    def share(self, name: str, obj: object) -> None:
        """`obj` is the worker's own `name` (written as a reference, restored as ours)."""
        self.shared[name] = obj

    def dump(self, offset: int, state: object) -> bytes:
        names = {id(obj): name for name, obj in self.shared.items()}
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.persistent_id = lambda obj: names.get(id(obj))  # type: ignore[method-assign]
        pickler.dump((offset, state))
        body = _HEADER + zlib.compress(buffer.getvalue(), 1)
        return hmac.new(self._secret, body, hashlib.sha256).digest() + body

    def load(self, blob: bytes) -> tuple[int, Any] | None:
        """`(offset, state)`, or None when the snapshot is not ours: a bad signature, another
        detector version, or a reference to a shared object this worker does not have."""
        mac, body = blob[:_MAC], blob[_MAC:]
        # a signed snapshot is one this code wrote; the header's detector version is what
        # says its layout is ours (bump VERSION when detector state changes shape)
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected) or not body.startswith(_HEADER):
            return None
        # nosec B301: unpickled only after the HMAC under the checkpoint key (VIGIL_BURST_CHECKPOINT_KEY) verified
        try:
            unpickler = pickle.Unpickler(  # nosec B301
                io.BytesIO(zlib.decompress(body[len(_HEADER):])))
            unpickler.persistent_load = self._shared  # type: ignore[method-assign]
            offset, state = unpickler.load()
        except (KeyError, AttributeError, ImportError, EOFError, ValueError, TypeError,
                pickle.UnpicklingError, zlib.error):
            return None  # a shared object we lack, or classes that moved: start empty
        return int(offset), state

    def _shared(self, name: str) -> object:
        return self.shared[name]
