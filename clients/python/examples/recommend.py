#!/usr/bin/env python3
"""Ask a temporec server what a user should watch next.

    python recommend.py --target localhost:50051 --domain video v12 v7 v33

Each positional argument is an item id of the user's history, oldest first; use
ID:ACTION (e.g. v7:rate) to name the action, one of the domain's actions (video's are
watch and rate; without one, the domain's default).
"""

from __future__ import annotations

import argparse
import sys
import time

from temporec_client import Event, TemporecClient, TemporecError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("history", nargs="*", help="item ids, oldest first (ID or ID:ACTION)")
    parser.add_argument("--target", default="localhost:50051", help="server host:port")
    parser.add_argument("--domain", default="video")
    parser.add_argument("-k", type=int, default=5, help="how many items")
    args = parser.parse_args()

    start = time.time() - 3600 * len(args.history)
    history = []
    for hour, entry in enumerate(args.history):  # one event per hour, ending now
        item_id, _, action = entry.partition(":")
        history.append(Event(item_id, action, timestamp=start + 3600 * hour))

    with TemporecClient(args.target) as client:
        try:
            print(f"server health: {client.health()}")
            components = client.list_components()
            for model in components.models:
                print(f"model: {model.domain}/{model.head} ({model.encoder}) v{model.version}, {model.items} items")
            result = client.recommend(args.domain, history=history, k=args.k)
        except TemporecError as error:
            print(f"error {error.code.name}: {error.details}", file=sys.stderr)
            return 1

    source = "popular items (no history)" if result.cold_start else f"{result.head} on {result.encoder}"
    print(f"top {len(result.items)} for {args.domain} from {source}, model {result.model_version}:")
    for rank, item in enumerate(result.items, 1):
        print(f"{rank:3d}. {item.item_id:<12} {item.score:8.4f}  {item.text[:60]}")
    timings = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in result.timings_ms.items())
    print(f"server time: {timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
