"""The results page's "who clicks what" for a contextual slot: per context feature, a banner × level table of the
model's estimated CTR with its 95% interval and the impressions and clicks behind each figure, and the same
figures for that feature's chart (static/admin/context.js).

The estimates and intervals are the serving model's own (``services.context_report``, bandits/contextual.py):
the posterior of the banner's score xᵀw in a cell with that level and every other feature at ``other``, as
mean ± 1.96 sd (Bayesian linear regression, the Gaussian posterior Thompson sampling draws from, without the
draws' exploration scaling), clipped to [0, 1] — the estimate too: a linear model's mean can fall just
below 0 where a banner is never clicked, which a rate cannot. The impressions and clicks are the slot's cumulative
context_counts summed over the cells with that level; a level the model folds into ``other`` (rare, unseen,
beyond the cap) is counted under ``other`` too, as the model sees it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from bandits.contextual import OTHER, parse_cell

FEATURE_TITLES = {"location": "Location", "referrer": "Referrer", "hour": "Hour of the day",
                  "weekday": "Day of the week", "device": "Device", "segment": "Segment"}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")   # 0 = Monday


def level_label(feature: str, level: str) -> str:
    """How a level reads on the page: hours as 09:00–09:59, weekdays by name, ``other`` said in full."""
    if level == OTHER:
        return "other (rare, unseen or none)"
    if feature == "hour" and level.isdigit():
        return f"{int(level):02d}:00–{int(level):02d}:59"
    if feature == "weekday" and level.isdigit() and int(level) < len(WEEKDAYS):
        return WEEKDAYS[int(level)]
    return level


def context_tables(context: Mapping[str, Any] | None, cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One table per feature of the slot's model, in its feature order.

    ``context``: ``services.context_report`` (features, levels as ``feature=level``, by_banner → level →
    {ctr, low, high}); ``cells``: the slot's context_counts rows (cell, banner_id, impressions, clicks).
    Each table: feature, title, levels [{key, level, label, impressions, clicks}] (the fitted levels, then
    ``other``), rows [{banner, cells [{ctr, low, high, impressions, clicks}] in the levels' order}].
    """
    if not context:
        return []
    fitted: dict[str, list[str]] = defaultdict(list)
    for key in context.get("levels", ()):
        feature, _, level = key.partition("=")
        fitted[feature].append(level)
    observed: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in cells:
        levels = parse_cell(row["cell"])
        for feature in context["features"]:
            level = levels.get(feature, OTHER)
            if level not in fitted[feature]:
                level = OTHER
            counts = observed[(feature, level, row["banner_id"])]
            counts[0] += int(row.get("impressions") or 0)
            counts[1] += int(row.get("clicks") or 0)
    tables = []
    for feature in context["features"]:
        levels = fitted[feature] or [OTHER]
        rows = []
        for banner, by_level in context["by_banner"].items():
            row_cells = []
            for level in levels:
                estimate = by_level.get(f"{feature}={level}") or {"ctr": None, "low": None, "high": None}
                impressions, clicks = observed.get((feature, level, banner), (0, 0))
                ctr = estimate["ctr"] if estimate["ctr"] is None else min(max(estimate["ctr"], 0.0), 1.0)
                row_cells.append({"ctr": ctr, "low": estimate["low"], "high": estimate["high"],
                                  "impressions": impressions, "clicks": clicks})
            rows.append({"banner": banner, "cells": row_cells})
        totals = [[sum(row["cells"][i][c] for row in rows) for c in ("impressions", "clicks")]
                  for i in range(len(levels))]
        tables.append({"feature": feature, "title": FEATURE_TITLES.get(feature, feature),
                       "levels": [{"key": f"{feature}={level}", "level": level, "label": level_label(feature, level),
                                   "impressions": totals[i][0], "clicks": totals[i][1]}
                                  for i, level in enumerate(levels)],
                       "rows": rows})
    return tables


def chart_data(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per table, what its chart draws: the level labels and, per banner, the estimates and interval ends."""
    return [{"feature": t["feature"], "labels": [level["label"] for level in t["levels"]],
             "banners": [{"id": row["banner"], "ctr": [c["ctr"] for c in row["cells"]],
                          "low": [c["low"] for c in row["cells"]], "high": [c["high"] for c in row["cells"]]}
                         for row in t["rows"]]}
            for t in tables]
