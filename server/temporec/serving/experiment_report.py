"""An experiment's report (``temporec experiments report``): per arm, its users, exposures
and the users with an attributed outcome, and the lift over the control.

An outcome is a tracked event of one of the experiment's ``outcome_actions`` on an item an
exposure of the same experiment showed the same user, at or after the exposure and within
``attribution_window_s`` of it; it counts for that exposure's arm. An arm's rate is the
share of its users with at least one outcome. The lift is the arm's rate minus the
control's, with a 95% confidence interval from the normal approximation of the difference
of two proportions (unpooled Wald); ``relative`` is the lift over the control's rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from temporec.contract.stores import Exposure, TrackedEvent
from temporec.serving.experiments import Experiment

Z95 = 1.959963984540054  # the normal distribution's 97.5th percentile


@dataclass(frozen=True)
class ArmReport:
    arm: str
    control: bool
    users: int
    exposures: int
    converted: int  # users with at least one attributed outcome
    rate: float
    lift: float  # rate - the control's rate; 0 for the control
    low: float  # the lift's 95% confidence interval
    high: float
    relative: float  # lift / the control's rate (nan when the control has none)


def outcome_users(
    experiment: Experiment, exposures: Sequence[Exposure], histories: Mapping[str, Sequence[TrackedEvent]], until: float
) -> dict[str, set[str]]:
    """Arm -> the users with an outcome attributed to one of the arm's exposures (exposures
    and events after ``until`` left out)."""
    actions = set(experiment.outcome_actions)
    found: dict[str, set[str]] = {}
    for exposure in exposures:
        if exposure.timestamp > until:
            continue
        end = min(exposure.timestamp + experiment.attribution_window_s, until)
        shown = set(exposure.items)
        for tracked in histories.get(exposure.user_id, ()):
            event = tracked.event
            if event.action in actions and event.item_id in shown and exposure.timestamp <= event.timestamp <= end:
                found.setdefault(exposure.arm, set()).add(exposure.user_id)
                break
    return found


def report(
    experiment: Experiment,
    exposures: Sequence[Exposure],
    histories: Mapping[str, Sequence[TrackedEvent]],
    until: float = math.inf,
) -> list[ArmReport]:
    """One row per arm, in the configuration's order."""
    shown = [e for e in exposures if e.timestamp <= until]
    converted = outcome_users(experiment, shown, histories, until)
    counts = {
        arm.name: (len({e.user_id for e in shown if e.arm == arm.name}), sum(e.arm == arm.name for e in shown))
        for arm in experiment.arms
    }
    control = experiment.control.name
    n0, c0 = counts[control][0], len(converted.get(control, ()))
    p0 = c0 / n0 if n0 else 0.0
    rows = []
    for arm in experiment.arms:
        users, count = counts[arm.name]
        hits = len(converted.get(arm.name, ()))
        rate = hits / users if users else 0.0
        lift, low, high = (0.0, 0.0, 0.0) if arm.control else difference(rate, users, p0, n0)
        relative = lift / p0 if p0 else math.nan
        rows.append(ArmReport(arm.name, arm.control, users, count, hits, rate, lift, low, high, relative))
    return rows


def difference(p1: float, n1: int, p0: float, n0: int) -> tuple[float, float, float]:
    """p1 - p0 and its 95% confidence interval (nan bounds without users on either side)."""
    if not n1 or not n0:
        return p1 - p0, math.nan, math.nan
    half = Z95 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    return p1 - p0, p1 - p0 - half, p1 - p0 + half


def cumulative(
    experiment: Experiment,
    exposures: Sequence[Exposure],
    histories: Mapping[str, Sequence[TrackedEvent]],
    points: int = 50,
) -> list[tuple[float, list[ArmReport]]]:
    """The report as it stood at ``points`` times from the first exposure to the last
    exposure's window end: the cumulative lift over time."""
    if not exposures:
        return []
    start = min(e.timestamp for e in exposures)
    end = max(e.timestamp for e in exposures) + experiment.attribution_window_s
    times = [start + (end - start) * (i + 1) / points for i in range(points)]
    return [(t, report(experiment, exposures, histories, t)) for t in times]


def format_report(experiment: Experiment, rows: Iterable[ArmReport]) -> str:
    """The report as a table, the control first marked with '*'."""
    header = f"{'ARM':<16} {'USERS':>7} {'EXPOSURES':>9} {'OUTCOMES':>8} {'RATE':>7} {'LIFT':>8}  95% CI"
    lines = [
        f"experiment {experiment.name!r} (domain {experiment.domain!r}; outcomes: "
        f"{', '.join(experiment.outcome_actions)} within {experiment.attribution_window_s:g} s of an exposure)",
        header,
    ]
    for row in rows:
        name = f"{row.arm}{' *' if row.control else ''}"
        if row.control:
            lift = f"{'-':>8}  (control)"
        else:
            lift = f"{row.lift * 100:>+7.2f}%  [{row.low * 100:+.2f}%, {row.high * 100:+.2f}%]"
        lines.append(f"{name:<16} {row.users:>7} {row.exposures:>9} {row.converted:>8} {row.rate * 100:>6.2f}% {lift}")
    lines.append("lift: the arm's rate minus the control's, in percentage points (two-proportion normal approximation)")
    return "\n".join(lines)
