"""Stream agents: thin faust agents around pure detectors and policy.

Each module registers its agents on a faust app through `register(ctx)`; `REGISTRY` is the list
of roles `vigil worker --agents ...` can run. Import direction: `streams` ← `models` ← `agents`.
"""

from __future__ import annotations

from agents import burst, classify, decide, forum_webhook, hashing, intake, notify
from agents.context import Agent
from streams.topics import TopicSpec

#: Roles that emit signed events (verdicts, takedowns) and so need VIGIL_SIGNING_KEY.
SIGNING_ROLES: frozenset[str] = frozenset({"decide"})

#: Roles that checkpoint their state and so get VIGIL_BURST_CHECKPOINT_KEY.
CHECKPOINT_ROLES: frozenset[str] = frozenset({burst.NAME})

#: Topics a role keeps for itself (not contract), created at start-up with the contract topics
#: so that they get their intended partition count rather than the broker's auto-create default.
INTERNAL_TOPICS: dict[str, tuple[TopicSpec, ...]] = {burst.NAME: burst.INTERNAL_TOPICS}

REGISTRY: dict[str, Agent] = {
    intake.NAME: intake,
    hashing.NAME: hashing,
    classify.NAME: classify,
    decide.NAME: decide,
    notify.NAME: notify,
    burst.NAME: burst,
    forum_webhook.NAME: forum_webhook,
}
