"""What the plain consume loop commits: never past an undelivered or held record."""

from __future__ import annotations

from aiokafka import TopicPartition

from agents.consumer import Offsets

P0 = TopicPartition("t", 0)
P1 = TopicPartition("t", 1)


def test_commits_one_past_the_last_delivered_record() -> None:
    offsets = Offsets()
    offsets.delivered(P0, 9)
    offsets.delivered(P1, 3)
    assert offsets.committable() == {P0: 10, P1: 4}


def test_a_held_record_keeps_the_commit_at_its_offset_until_released() -> None:
    offsets = Offsets()
    first = offsets.hold(P0, 4)
    offsets.hold(P0, 7)
    offsets.delivered(P0, 9)
    assert offsets.committable() == {P0: 4}
    offsets.release(first)
    assert offsets.committable() == {P0: 7}
    offsets.release((P0, 7, 0))
    assert offsets.committable() == {P0: 10}


def test_a_record_held_twice_needs_two_releases() -> None:
    offsets = Offsets()
    token = offsets.hold(P0, 2)
    offsets.hold(P0, 2)  # held by two owners
    offsets.delivered(P0, 5)
    offsets.release(token)
    assert offsets.committable() == {P0: 2}
    offsets.release(token)
    assert offsets.committable() == {P0: 6}


def test_delivered_never_moves_backwards() -> None:
    offsets = Offsets()
    offsets.delivered(P0, 9)
    offsets.delivered(P0, 5)  # an older batch's bookkeeping arriving late
    assert offsets.committable() == {P0: 10}


def test_a_revoked_partition_is_forgotten_and_its_late_releases_ignored() -> None:
    offsets = Offsets()
    token = offsets.hold(P0, 1)
    offsets.delivered(P0, 3)
    offsets.delivered(P1, 3)
    offsets.forget([P0])
    offsets.release(token)  # the handler released after the rebalance: no error, no effect
    assert offsets.committable() == {P1: 4}
    assert offsets.held(P0) == 0


def test_a_hold_from_before_a_revoke_cannot_release_a_new_hold_on_the_same_offset() -> None:
    offsets = Offsets()
    stale = offsets.hold(P0, 5)
    offsets.forget([P0])  # revoked, then assigned back: the record is read and held again
    offsets.hold(P0, 5)
    offsets.delivered(P0, 8)
    offsets.release(stale)  # the old window's late release
    assert offsets.committable() == {P0: 5}
