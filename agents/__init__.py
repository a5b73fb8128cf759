"""Stream agents: thin faust agents around pure detectors and policy.

Each module registers its agents on a faust app through `register(ctx)`; `REGISTRY` is the list
of roles `vigil worker --agents ...` can run. Import direction: `streams` ← `models` ← `agents`.
"""

from __future__ import annotations

from agents import decide, hashing, intake
from agents.context import Agent

#: Roles that emit signed events (verdicts, takedowns) and so need VIGIL_SIGNING_KEY.
SIGNING_ROLES: frozenset[str] = frozenset({"decide"})

REGISTRY: dict[str, Agent] = {
    intake.NAME: intake,
    hashing.NAME: hashing,
    decide.NAME: decide,
}
