"""The worker's GC settings: start-up objects frozen, a young threshold that keeps
short-lived objects out of the old generation (vigil/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from vigil.gc_tuning import MIDDLE, OLD, YOUNG, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_what_exists_and_raises_the_young_threshold(restore_gc: None) -> None:
    survivor = [object() for _ in range(10)]  # noqa: F841 - alive across the freeze
    before = gc.get_freeze_count()
    tune_gc()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold() == (YOUNG, MIDDLE, OLD)
    assert YOUNG > 700  # CPython's default, which promoted most of a batch's objects


def test_cycles_made_after_the_freeze_are_still_collected(restore_gc: None) -> None:
    tune_gc()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # the cycle collector still runs on what came later
