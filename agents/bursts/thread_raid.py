"""`thread_raid` (per thread) and `new_account_swarm` (per board) over posts.

Both compare a short window with the key's own baseline and never alert below a floor. The
baseline is seasonal: an exponentially decayed rate of the key's events, each counted as
1 / the board's hour-of-week factor (`WeeklyProfile`), times the factor of the hour at hand. So a
busy evening is expected to be busy (not a raid) and a quiet night quiet (an attack there is
measured against the night, not against the evening before). The rate stops learning while an
incident is open, so a raid does not become the baseline; an open raid goes on while both its
bars (posts, young authors) are at least half met, so it ends when the raiders stop even if the
thread's members post on.

`new_account_swarm` also opens on a scan test (`significance.py`): the latest k ≥
`scan_min_accounts` young accounts arrived within a span the board's usual rate at this hour of
the week makes improbable (p ≤ `scan_p`). So three newcomers within two minutes on a board that
sees one an hour at night open a swarm without waiting for the floor, while a busy evening with
the same three does not (its rate makes them likely). The usual rate never counts below
`prior_rate`, so a board with no history yet does not make every newcomer look improbable.

Only authors known to be young count as young in both: the age is what tells a raid from a
lively thread (a thread's baseline starts at zero, so a thread the detector has not seen for long
is judged against the floor alone), and an account whose age the forum did not send is not
evidence either way. The time-boxed mitigations decide the other way round (decide holds authors
of unknown age while a restriction lasts): holding is the cautious side of an action, not
alerting.

`thread_raid` is keyed by `thread_id`, which is the key of `forum.posts.v1`: partition-local.
`new_account_swarm` is keyed by board: the agent feeds it from posts re-keyed by board
(docs/burst.md), so one detector sees all of a board's posts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agents.bursts.base import BurstConfig, DecayingRate, Incidents, WeeklyProfile, account_age
from agents.bursts.significance import most_significant
from streams.events import AlertData, PostData, Target


@dataclass(slots=True)
class _ThreadState:
    board: str | None
    baseline: DecayingRate = field(default_factory=DecayingRate)
    # None while the thread is quiet: an empty deque costs ≈ 770 B, 70 % of an idle thread
    window: deque[tuple[float, str, bool, str]] | None = None
    last_at: float = 0.0
    raid_posts: int = 0


class ThreadRaidDetector:
    """Posts in a thread far above its baseline, mostly from young accounts."""

    kinds: ClassVar[tuple[str, ...]] = ("thread_raid",)

    def __init__(self, config: BurstConfig | None = None) -> None:
        self.config = config or BurstConfig()
        self.threads: dict[str, _ThreadState] = {}
        self.profiles: dict[str, WeeklyProfile] = {}  # by board (few): seasonality
        self.incidents = Incidents("thread_raid")
        self._swept = float("-inf")

    def observe(self, data: Any, at: float) -> list[AlertData]:
        if not isinstance(data, PostData):
            return []
        c = self.config.at(at).thread_raid
        key = data.thread_id
        state = self.threads.get(key)
        if state is None:
            state = self.threads[key] = _ThreadState(data.board)
        profile = self.profiles.get(data.board or "-")
        if profile is None:
            profile = self.profiles[data.board or "-"] = WeeklyProfile()
        profile.add(at)
        season = profile.over(at - c.window_s, at)
        state.last_at = max(state.last_at, at)
        age = account_age(data.author, at)
        # unknown age is no evidence of youth (as for new_account_swarm): counted as young, a
        # forum that sends no `created_at` turned every lively thread into a raid (issue 9)
        young = not data.author.is_staff and age is not None and age < c.young_age_s
        window = state.window = state.window if state.window is not None else deque()
        window.append((at, data.author.id, young, data.post_id))
        if len(window) > c.max_window_posts:
            window.popleft()
        since = at - c.window_s
        while window and window[0][0] <= since:
            window.popleft()

        raiding = self.incidents.is_open(key)
        expected = state.baseline.rate(at, c.baseline_tau_s) * season * c.window_s
        if not raiding:
            state.baseline.add(at, c.baseline_tau_s, 1.0 / profile.factor(at))
        threshold = max(float(c.floor), c.factor * expected)
        posts = len(window)
        authors: dict[str, bool] = {}
        for _, author, is_young, _ in window:
            authors[author] = is_young
        young_authors = sum(authors.values())
        hot = (posts >= threshold and len(authors) >= c.min_authors
               and young_authors >= c.young_fraction * len(authors))
        # an open raid goes on at half of both bars: members posting at half the threshold
        # without the raiders kept it open for hours, their posts counted as the raid's
        going_on = (raiding and posts >= threshold / 2
                    and young_authors >= c.young_fraction / 2 * len(authors))
        if not hot and not going_on:
            return []
        state.raid_posts = state.raid_posts + 1 if raiding else posts
        return self.incidents.touch(
            key, first_seen=window[0][0] if not raiding else at, last_seen=at,
            count=state.raid_posts,
            severity="high" if posts >= 2 * threshold else "medium",
            summary=f"thread {key}: {posts} posts in {c.window_s / 60:g} min "
                    f"(baseline {expected:.1f}), {young_authors} of {len(authors)} authors young",
            target=Target(type="thread", id=key, thread_id=key),
            evidence={"board": state.board, "posts_in_window": posts,
                      "baseline_in_window": round(expected, 2), "threshold": threshold,
                      "season_factor": round(season, 2), "authors": len(authors),
                      "young_authors": young_authors,
                      "window_s": c.window_s,
                      "sample_post_ids": [p for *_, p in list(window)[:10]]})

    def advance(self, watermark: float) -> list[AlertData]:
        c = self.config.thresholds.thread_raid
        # windows are pruned on every post; the full sweep (idle keys) runs once per window
        resolved = self.incidents.resolve_quiet(watermark, c.window_s)
        if watermark - self._swept < c.window_s:
            return resolved
        self._swept = watermark
        for key in list(self.threads):
            state = self.threads[key]
            window = state.window
            while window and window[0][0] <= watermark - c.window_s:
                window.popleft()
            if not window:
                state.window = None
            if watermark - state.last_at > c.idle_s and not self.incidents.is_open(key):
                del self.threads[key]
        return resolved

    def state_size(self) -> int:
        return (len(self.threads) + sum(len(s.window or ()) for s in self.threads.values())
                + len(self.profiles))


@dataclass(slots=True)
class _BoardState:
    baseline: DecayingRate = field(default_factory=DecayingRate)
    profile: WeeklyProfile = field(default_factory=WeeklyProfile)  # all the board's posts
    # young account id → (latest post time, post id, thread id, time it entered the window),
    # insertion = latest-post order
    accounts: dict[str, tuple[float, str, str, float]] = field(default_factory=dict)
    last_at: float = 0.0


class NewAccountSwarmDetector:
    """Many accounts younger than A posting on one board within W."""

    kinds: ClassVar[tuple[str, ...]] = ("new_account_swarm",)

    def __init__(self, config: BurstConfig | None = None) -> None:
        self.config = config or BurstConfig()
        self.boards: dict[str, _BoardState] = {}
        self.incidents = Incidents("new_account_swarm")
        self._swept = float("-inf")

    def observe(self, data: Any, at: float) -> list[AlertData]:
        if not isinstance(data, PostData):
            return []
        c = self.config.at(at).new_account_swarm
        key = data.board or "-"
        state = self.boards.get(key)
        if state is None:
            state = self.boards[key] = _BoardState()
        state.last_at = max(state.last_at, at)
        state.profile.add(at)
        age = account_age(data.author, at)
        if data.author.is_staff or age is None or age >= c.young_age_s:
            return []  # unknown age is not evidence of a swarm (it is for trust weighting)
        profile = state.profile
        season = profile.over(at - c.window_s, at)
        swarming = self.incidents.is_open(key)
        rate = state.baseline.rate(at, c.baseline_tau_s)
        expected = rate * season * c.window_s
        since = at - c.window_s
        previous = state.accounts.pop(data.author.id, None)
        arrived = previous is None or previous[0] <= since
        if arrived:
            if not swarming:
                state.baseline.add(at, c.baseline_tau_s, 1.0 / profile.factor(at))
            if len(state.accounts) >= c.max_accounts:
                state.accounts.pop(next(iter(state.accounts)))
        entered = at if previous is None or arrived else previous[3]
        state.accounts[data.author.id] = (at, data.post_id, data.thread_id, entered)
        active = [(a, v) for a, v in state.accounts.items() if v[0] > since]
        threshold = max(float(c.floor), c.factor * expected)
        scan: dict[str, Any] = {}
        if arrived and not swarming and c.scan_min_accounts <= len(active) < threshold:
            usual = max(rate, c.prior_rate)
            p, k, span = most_significant(
                sorted(v[3] for _, v in active), at, c.scan_min_accounts,
                lambda start, end: usual * profile.over(start, end) * (end - start))
            if p <= c.scan_p:
                scan = {"scan_accounts": k, "scan_span_s": round(span, 1),
                        "scan_p": float(f"{p:.3g}")}
        if (len(active) < threshold and not scan
                and not (swarming and len(active) >= threshold / 2)):
            return []
        threads = {v[2] for _, v in active}
        return self.incidents.touch(
            key, first_seen=min(v[0] for _, v in active), last_seen=at, count=len(active),
            severity="high" if len(active) >= 2 * threshold else "medium",
            summary=f"board {key}: {len(active)} accounts younger than "
                    f"{c.young_age_s / 3600:g} h posted within {c.window_s / 60:g} min "
                    f"in {len(threads)} threads",
            target=None,
            evidence={"board": key, "young_accounts": len(active), "threads": len(threads),
                      "baseline_in_window": round(expected, 2), "threshold": threshold,
                      "season_factor": round(season, 2), **scan,
                      "window_s": c.window_s,
                      "sample_account_ids": [a for a, _ in active[:10]],
                      "sample_post_ids": [v[1] for _, v in active[:10]]})

    def advance(self, watermark: float) -> list[AlertData]:
        c = self.config.thresholds.new_account_swarm
        resolved = self.incidents.resolve_quiet(watermark, c.window_s)
        if watermark - self._swept < c.window_s:
            return resolved
        self._swept = watermark
        for key in list(self.boards):
            state = self.boards[key]
            for account in [a for a, v in state.accounts.items()
                            if v[0] <= watermark - c.window_s]:
                del state.accounts[account]
            if watermark - state.last_at > c.idle_s and not self.incidents.is_open(key):
                del self.boards[key]
        return resolved

    def state_size(self) -> int:
        return len(self.boards) + sum(len(s.accounts) for s in self.boards.values())
