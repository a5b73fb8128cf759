"""The decision policy: a versioned TOML file, validated into frozen values, and a pure engine.

- `model`: the policy as data (rules, thresholds, staffed hours, paging routes);
- `loader`: TOML → `Policy` with errors naming file/line/key, the shipped default, hot reload;
- `engine`: signals (or a review) → `Decision` / `ReviewEffect`, with no I/O and no clock.

See docs/policy.md for the file format.
"""

from __future__ import annotations

from agents.policy.engine import (
    SHADOW_PREFIX,
    AlertSpec,
    Decision,
    ReviewEffect,
    ShadowEffect,
    decide_content,
    decision_id,
    review_decision_id,
    review_effect,
)
from agents.policy.loader import (
    PolicyError,
    PolicyStore,
    default_policy_text,
    load_default_policy,
    load_policy,
    parse_policy,
)
from agents.policy.model import Mitigation, Paging, Policy, Route, Rule, StaffedHours, Thresholds

__all__ = [
    "SHADOW_PREFIX",
    "AlertSpec",
    "Decision",
    "Mitigation",
    "Paging",
    "Policy",
    "PolicyError",
    "PolicyStore",
    "ReviewEffect",
    "Route",
    "Rule",
    "ShadowEffect",
    "StaffedHours",
    "Thresholds",
    "decide_content",
    "decision_id",
    "default_policy_text",
    "load_default_policy",
    "load_policy",
    "parse_policy",
    "review_decision_id",
    "review_effect",
]
