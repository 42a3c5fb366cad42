"""Taobao user behaviour (Alibaba Tianchi "User Behavior Data from Taobao for
Recommendation"), a CSV of shop events:

    user_id,item_id,category_id,behavior_type,timestamp

with or without that header line (the original ``UserBehavior.csv`` has none). Behaviour
types are ``pv`` (page view), ``cart``, ``fav`` and ``buy``; they become the retail
actions ``view``, ``cart``, ``favourite`` and ``purchase``. Timestamps are Unix seconds.

Items have no text: the catalog's texts are empty and each item keeps its category as the
feature ``category`` (the category of its first event, should later events differ).
"""

from __future__ import annotations

from pathlib import Path

from temporec.contract.errors import allowed
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data.base import (
    DataError,
    at,
    group_histories,
    numbered_lines,
    split_fields,
)

ACTIONS = {"pv": "view", "cart": "cart", "fav": "favourite", "buy": "purchase"}
HEADER = "user_id,item_id,category_id,behavior_type,timestamp"
LAYOUT = "user_id,item_id,category_id,behavior_type,timestamp"


def is_taobao_file(path: Path) -> bool:
    """Whether ``path`` is named like a Taobao behaviour file (``UserBehavior.csv``,
    ``user_behavior_982_users.csv``, ...)."""
    return path.suffix == ".csv" and path.name.lower().replace("_", "").startswith("userbehavior")


def find_taobao_file(directory: Path) -> Path | None:
    """The one Taobao behaviour file in ``directory``, if there is exactly one."""
    found = sorted(p for p in directory.glob("*.csv") if is_taobao_file(p))
    return found[0] if len(found) == 1 else None


def load_taobao(path: str | Path) -> Dataset:
    """The data set of a Taobao behaviour CSV (or of the directory holding one)."""
    path = Path(path)
    if path.is_dir():
        found = find_taobao_file(path)
        if found is None:
            raise DataError(f"{path}: expected one UserBehavior*.csv / user_behavior*.csv file")
        path = found
    item_ids: list[str] = []
    categories: dict[str, str] = {}
    rows = []
    for number, line in numbered_lines(path):
        if number == 1 and line.strip().lower() == HEADER:
            continue
        user, item, category, behaviour, stamp = (f.strip() for f in split_fields(path, number, line, ",", 5, LAYOUT))
        if behaviour not in ACTIONS:
            raise at(path, number, f"behavior_type {behaviour!r}; allowed: {allowed(ACTIONS)}")
        if not (user and item):
            raise at(path, number, "empty user_id or item_id")
        try:
            timestamp = float(stamp)
        except ValueError:
            raise at(path, number, f"timestamp {stamp!r} is not Unix seconds") from None
        if item not in categories:
            categories[item] = category
            item_ids.append(item)
        rows.append((user, Event(item, ACTIONS[behaviour], timestamp)))
    catalog = Catalog(item_ids, [""] * len(item_ids), {"category": [categories[i] for i in item_ids]})
    return Dataset(str(path.resolve()), catalog, group_histories(rows))
