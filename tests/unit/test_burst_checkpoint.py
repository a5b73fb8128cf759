"""Signed snapshots of detector groups: restoring one and re-reading the input after its offset
gives the alerts of an uninterrupted run; a snapshot that is not ours is refused."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from agents.bursts import (
    BurstConfig,
    NewAccountSwarmDetector,
    ReporterAccuracy,
    ReportSurgeDetector,
    TextBrigadeDetector,
    TextSignatures,
    ThreadRaidDetector,
    Watermarked,
)
from agents.bursts.checkpoint import Snapshots
from tests.unit.test_burst import NOON, background, flush, post, rep, young


def attack() -> list[tuple[Any, float]]:
    """Ordinary traffic with a swarm, a raid and a surge in the middle of it."""
    start = NOON + 3600
    events = background(NOON, hours=2)
    events += [post(5000 + i, "t-raid", f"new{i % 8}", start + i * 10, created=young(start))
               for i in range(24)]
    events += [rep(6000 + i, "victim", f"member{i}", start + 30 + i * 20) for i in range(8)]
    return sorted(events, key=lambda e: e[1]) + flush(NOON)


def group(config: BurstConfig, accuracy: ReporterAccuracy,
          signatures: TextSignatures) -> Watermarked:
    return Watermarked([ThreadRaidDetector(config), NewAccountSwarmDetector(config),
                        TextBrigadeDetector(config, signatures),
                        ReportSurgeDetector(config, accuracy)], config)


def snapshots(config: BurstConfig, accuracy: ReporterAccuracy,
              signatures: TextSignatures, secret: bytes = b"k") -> Snapshots:
    out = Snapshots(secret)
    for name, obj in (("config", config), ("accuracy", accuracy), ("signatures", signatures)):
        out.share(name, obj)
    return out


@pytest.mark.parametrize("cut", [0.3, 0.52, 0.8])  # 0.52: in the middle of the raid
def test_a_restored_snapshot_plus_the_rest_of_the_input_gives_the_same_alerts(
        cut: float) -> None:
    events = attack()
    config, accuracy, signatures = BurstConfig(), ReporterAccuracy(), TextSignatures(64, 3)
    whole = group(config, accuracy, signatures)
    expected = [a for data, at in events for a in whole.observe(data, at)]
    assert {a.kind for a in expected} >= {"thread_raid", "new_account_swarm", "report_surge"}

    at_cut = int(len(events) * cut)
    accuracy1 = ReporterAccuracy()
    first = group(config, accuracy1, signatures)
    before = [a for data, at in events[:at_cut] for a in first.observe(data, at)]
    if cut == 0.52:
        assert first.detectors[0].incidents.open  # the raid's incident is open at the cut
    blob = snapshots(config, accuracy1, signatures).dump(at_cut - 1, first)
    # another worker: its own config, accuracy and signer take the shared objects' places
    config2, accuracy2, signatures2 = BurstConfig(), ReporterAccuracy(), TextSignatures(64, 3)
    loaded = snapshots(config2, accuracy2, signatures2).load(blob)
    assert loaded is not None
    offset, restored = loaded
    assert offset == at_cut - 1
    assert restored.detectors[3].accuracy is accuracy2
    assert restored.detectors[2].signatures is signatures2
    assert all(d.config is config2 for d in restored.detectors)
    after = [a for data, at in events[offset + 1:] for a in restored.observe(data, at)]
    assert before + after == expected  # same ids, same contents, same order


def test_a_snapshot_signed_with_another_key_or_tampered_is_refused() -> None:
    config, accuracy, signatures = BurstConfig(), ReporterAccuracy(), TextSignatures(64, 3)
    blob = snapshots(config, accuracy, signatures).dump(7, group(config, accuracy, signatures))
    assert snapshots(config, accuracy, signatures, b"other").load(blob) is None
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert snapshots(config, accuracy, signatures).load(tampered) is None
    # a pickle that would run code is never unpickled without the signature
    evil = b"\0" * 32 + pickle.dumps(print)
    assert snapshots(config, accuracy, signatures).load(evil) is None


def test_a_snapshot_from_another_detector_version_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.bursts.checkpoint as checkpoint

    config, accuracy, signatures = BurstConfig(), ReporterAccuracy(), TextSignatures(64, 3)
    mine = snapshots(config, accuracy, signatures)
    monkeypatch.setattr(checkpoint, "_HEADER", b"vigil-burst-snapshot burst-0\n")
    old = mine.dump(1, group(config, accuracy, signatures))
    monkeypatch.undo()
    assert mine.load(old) is None
