"""The replay benchmark's bookkeeping (``benchmarks/replay.py``): the time split and the
order of its calls, on tiny generated data; the replay itself is a benchmark, not a test."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from replay import Step, replay_order, time_split  # noqa: E402


def steps(*events: tuple[str, float]) -> list[Step]:
    counts: dict[str, int] = {}
    out = []
    for user, timestamp in events:
        out.append(Step(user, f"i{len(out)}", "pv", timestamp, counts.setdefault(user, 0)))
        counts[user] += 1
    return out


def test_the_split_is_by_time_and_keeps_equal_timestamps_together():
    data = steps(("a", 1), ("b", 2), ("a", 3), ("b", 3), ("c", 4), ("a", 5))
    first, rest = time_split(data, 0.5)
    assert [s.timestamp for s in first] == [1, 2, 3, 3] and [s.timestamp for s in rest] == [4, 5]
    assert time_split(data, 1.0) == (data, [])
    assert time_split([], 0.8) == ([], [])


def test_each_recommend_sees_the_users_earlier_events_and_none_of_the_later():
    data = steps(("a", 10), ("b", 11), ("a", 12), ("c", 13), ("b", 14), ("a", 15), ("d", 16))
    known = {"a", "b"}
    tracked: set[tuple[str, int]] = set()
    recommended = []
    for kind, what in replay_order(data, set(known), batch=3):
        if kind == "track":
            assert 0 < len(what) <= 3
            tracked.update((s.user_id, s.index) for s in what)
        else:
            earlier = {(s.user_id, s.index) for s in data if s.user_id == what.user_id and s.timestamp < what.timestamp}
            assert earlier <= tracked and (what.user_id, what.index) not in tracked
            recommended.append(what)
    assert tracked == {(s.user_id, s.index) for s in data}
    # every event of a user with a history (a known user, or one seen earlier in the replay)
    assert [s.timestamp for s in recommended] == [10, 11, 12, 14, 15]
