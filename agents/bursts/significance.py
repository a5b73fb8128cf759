"""How surprising a cluster of arrivals is under a Poisson rate: the swarm detector's scan test.

A fixed floor ("6 young accounts in 10 min") is too slow on a quiet board and too quick on a
busy one. The scan asks instead: of the young accounts that just arrived on a board, do the
latest k (k ≥ a minimum) sit in so short a span that the board's usual rate at this hour of the
week would almost never produce them? The first of the k opens the span; the other k − 1 are
the evidence, so the chance is P(N ≥ k − 1) for N ~ Poisson(rate × span). Pure arithmetic, no
state: the detector supplies the arrivals and the expected count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def poisson_tail(m: int, mean: float) -> float:
    """P(N ≥ m) for N ~ Poisson(`mean`), summed from m upwards (no 1 − Σ cancellation, so
    the tiny probabilities the scan compares stay exact)."""
    if m <= 0:
        return 1.0
    if mean <= 0.0:
        return 0.0
    term = math.exp(-mean + m * math.log(mean) - math.lgamma(m + 1))
    total, i = term, m
    while term > total * 1e-12 and i < m + 1000:
        i += 1
        term *= mean / i
        total += term
    return min(1.0, total)


def most_significant(arrivals: Sequence[float], now: float, min_count: int,
                     expected: Callable[[float, float], float]) -> tuple[float, int, float]:
    """The least likely cluster ending at `now`: (p, k, span) over the latest k ≥ `min_count`
    of `arrivals` (ascending event times), where `expected(start, end)` is the usual number of
    arrivals in [start, end]. (1.0, 0, 0.0) when there are fewer than `min_count`."""
    best = (1.0, 0, 0.0)
    for k in range(min_count, len(arrivals) + 1):
        start = arrivals[-k]
        p = poisson_tail(k - 1, expected(start, now))
        if p < best[0]:
            best = (p, k, now - start)
    return best
