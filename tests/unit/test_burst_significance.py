"""The scan test's arithmetic: Poisson tails and the least likely recent cluster."""

from __future__ import annotations

import math

import pytest

from agents.bursts.significance import most_significant, poisson_tail


@pytest.mark.parametrize("m,mean", [(1, 0.5), (2, 0.1), (3, 2.0), (6, 1.5), (10, 12.0)])
def test_poisson_tail_matches_one_minus_the_head(m: int, mean: float) -> None:
    head = sum(math.exp(-mean) * mean ** i / math.factorial(i) for i in range(m))
    assert poisson_tail(m, mean) == pytest.approx(1 - head, rel=1e-9)


def test_poisson_tail_edges_and_tiny_values() -> None:
    assert poisson_tail(0, 3.0) == 1.0 and poisson_tail(2, 0.0) == 0.0
    # 1 − head would lose this to cancellation; the summed tail keeps it
    assert poisson_tail(5, 1e-4) == pytest.approx(1e-20 / 120, rel=1e-6)


def test_most_significant_picks_the_tight_cluster_not_the_whole_window() -> None:
    arrivals = [0.0, 300.0, 500.0, 540.0, 560.0]  # three within a minute at the end
    p, k, span = most_significant(arrivals, 560.0, 3, lambda s, e: (e - s) / 600)
    assert (k, span) == (3, 60.0)
    assert p == pytest.approx(poisson_tail(2, 0.1))
    assert most_significant(arrivals[:2], 560.0, 3, lambda s, e: 1.0) == (1.0, 0, 0.0)
