"""Garbage-collector settings for a long-running worker: short and rare full collections.

A worker's heap is mostly long-lived and acyclic: decide's decided contents (up to
`VIGIL_DECIDE_MEMORY`), burst's windows, hashing's recent images, the loaded models and modules.
CPython 3.11's full collection walks every tracked object, and it ran every few seconds under
load (each time the objects promoted since the last one reached a quarter of the old
generation): measured in `vigil run` under `bench.load`, 14 full collections of 175–335 ms in
two and a half minutes, ≈ 700 000 tracked objects, none of them garbage. Each one stops the event
loop, so every verdict in flight waits: at 150 posts/s one pause is ≈ 50 posts, more than the
1 % that make the p99.

Two changes, both standard for servers (the cycle collector still runs; reference counting
frees everything else as before):

- `gc.freeze()` once the worker is built: what exists then (modules, models, the app) lives
  for the process, so full collections stop walking it.
- a young-generation threshold of `YOUNG` allocations instead of 700: short-lived objects
  (a batch's events, a decision's intermediates) die before they are promoted, so far fewer
  reach the old generation, and full collections, gated on those promotions, become rare.

Measured the same way with both: no full collection between start-up and shutdown, the
longest pause 55 ms (a middle-generation collection; young ones ≤ 23 ms), and post → verdict
p99 at 150 events/s 395 ms against 559 ms (docs/performance.md, "Garbage-collector pauses").
With `YOUNG` = 50 000 the middle generation grew to half a million objects and one of its
collections took 244 ms: the threshold bounds what a young and a middle collection walk.
"""

from __future__ import annotations

import gc

#: Net allocations between young collections (CPython's default: 700).
YOUNG = 10_000
#: Young collections per middle one, middle ones per (gated) full one: CPython's defaults.
MIDDLE, OLD = 10, 10


def tune_gc() -> None:
    """Collect once, freeze what the start-up built, raise the young threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
