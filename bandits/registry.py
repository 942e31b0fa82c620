"""The server's policies by name: a slot names one (``slots.policy``; null = DEFAULT_POLICY).

To add a policy, write a class that follows :class:`bandits.policy.Policy` in its own module here and add
one line to POLICIES (docs/extending.md).
"""

from __future__ import annotations

from bandits.city_thompson import CityThompson
from bandits.contextual import ContextualThompson
from bandits.policy import Policy

POLICIES: dict[str, type[Policy]] = {
    CityThompson.name: CityThompson,
    ContextualThompson.name: ContextualThompson,
}
DEFAULT_POLICY = CityThompson.name


class UnknownPolicy(ValueError):
    """A policy name that is not in POLICIES."""


def policy_class(name: str | None) -> type[Policy]:
    """The policy registered as ``name`` (None or '' = DEFAULT_POLICY)."""
    try:
        return POLICIES[name or DEFAULT_POLICY]
    except KeyError:
        raise UnknownPolicy(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}") from None
