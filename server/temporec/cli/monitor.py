"""``temporec monitor replay``: published texts streamed through a live monitoring server
in time order (the dated financial headlines, or your own ``texts.jsonl``), then the
alert timeline and one chart per topic: its series, the forecast band, the alerts
(docs/finance.md)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from temporec.contract.errors import FailedPrecondition
from temporec.data.headlines import read_texts

WAIT_FOR_ALERTS_S = 10.0  # after the stream, how long the watcher may take to catch up


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("monitor", help="sentiment monitoring: replay published texts through a server")
    commands = parser.add_subparsers(dest="monitor_command", required=True, metavar="COMMAND")
    replay = commands.add_parser(
        "replay",
        help="stream dated texts through a live server in time order; write the alerts and a chart per topic",
    )
    replay.add_argument("data", type=Path, help="a directory of *_headlines.csv files, or a texts.jsonl file")
    replay.add_argument("--target", default="localhost:50051", help="the server (host:port)")
    replay.add_argument("--out", type=Path, default=Path("replay"), help="where the timeline and charts go")
    replay.add_argument("--batch", type=int, default=256, metavar="N", help="texts per Ingest message")
    replay.add_argument("--subscriber", default="replay", help="the subscriber id the alerts are watched as")
    replay.add_argument(
        "--charts",
        type=int,
        default=8,
        metavar="N",
        help="chart 'all' and the N topics with the most alerts (needs matplotlib; 0: none)",
    )
    replay.add_argument("--token", default=None, help="a bearer token, when the server requires one")
    replay.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from temporec_client import MonitoredText, TemporecClient

    if args.charts and importlib.util.find_spec("matplotlib") is None:
        raise FailedPrecondition("charts need matplotlib: pip install 'temporec[plot]' (or --charts 0)")
    texts = [MonitoredText(t.id, t.text, t.timestamp, t.source) for t in read_texts(args.data)]
    args.out.mkdir(parents=True, exist_ok=True)
    with TemporecClient(args.target, timeout=None, token=args.token) as client:
        watcher = AlertWatcher(client, args.subscriber)
        started = time.perf_counter()
        ingested = client.ingest(batches(texts, args.batch))
        seconds = time.perf_counter() - started
        alerts = watcher.collect(ingested.alerts)
        if alerts:
            client.acknowledge_alerts(args.subscriber, alerts[-1].sequence)
        write_timeline(args.out / "alerts.jsonl", alerts)
        charted = chart_topics(client, alerts, args.out, args.charts) if args.charts else []
    print(
        f"{ingested.stored} texts stored ({ingested.duplicates} duplicates, {ingested.late} late) in {seconds:.1f} s: "
        f"{len(texts) / seconds:.0f} texts/s; labels {dict(ingested.labels)}; {ingested.alerts} alerts fired, "
        f"{len(alerts)} received"
    )
    for alert in alerts:
        print(describe(alert))
    print(f"wrote {args.out / 'alerts.jsonl'}" + (f" and {len(charted)} charts" if charted else ""))
    return 0


def batches(texts: list, size: int):
    """``texts`` in messages of ``size``, with a progress bar (quiet when not a TTY)."""
    with tqdm(total=len(texts), desc="ingest", unit="text", disable=None) as progress:
        for start in range(0, len(texts), size):
            yield texts[start : start + size]
            progress.update(min(size, len(texts) - start))


class AlertWatcher:
    """The subscriber's alert stream, read on a thread while the texts are sent."""

    def __init__(self, client, subscriber: str):
        self.stream = client.watch_alerts(subscriber)
        self.alerts: list = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for alert in self.stream:
            with self._arrived:
                self.alerts.append(alert)
                self._arrived.notify_all()

    def collect(self, at_least: int) -> list:
        """The alerts so far, once ``at_least`` have come (or a few seconds passed)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.alerts) >= at_least, timeout=WAIT_FOR_ALERTS_S)
            alerts = list(self.alerts)
        self.stream.close()
        return alerts


def day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M")


def describe(alert) -> str:
    what = "negative share" if alert.kind == "negative_share" else "volume"
    return (
        f"#{alert.sequence} {day(alert.window_start)} {alert.topic}: {what} {alert.observed:.3g} above "
        f"{alert.high:.3g} (expected {alert.expected:.3g}; {alert.negatives} of {alert.count} negative)"
    )


def write_timeline(path: Path, alerts: list) -> None:
    with path.open("w", encoding="utf-8") as file:
        for alert in alerts:
            row = {**alert.__dict__, "texts": [t.__dict__ for t in alert.texts]}
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def chart_topics(client, alerts: list, out: Path, count: int) -> list[Path]:
    """One PNG per topic: "all" and the ``count`` topics with the most alerts."""
    busiest = [topic for topic, _ in Counter(a.topic for a in alerts if a.topic != "all").most_common(count)]
    paths = []
    for topic in ["all", *busiest]:
        windows, _ = client.topic_series(topic)
        path = out / f"{topic.replace(':', '-').replace('/', '-')}.png"
        chart(path, topic, windows, [a for a in alerts if a.topic == topic])
        paths.append(path)
    return paths


def chart(path: Path, topic: str, windows: list, alerts: list) -> None:
    """The topic's volume and negative share per window, each with its forecast and the
    upper end of its interval, and the windows that alerted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [datetime.fromtimestamp(w.start, timezone.utc) for w in windows]
    shares = [w.negatives / w.count if w.count else float("nan") for w in windows]
    figure, (volume, share) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    panels = (
        (volume, [w.count for w in windows], "count", "texts per window"),
        (share, shares, "share", "negative share"),
    )
    for axes, observed, name, label in panels:
        axes.plot(times, observed, color="black", linewidth=0.7, label="observed")
        expected = [getattr(w, f"{name}_expected") for w in windows]
        high = [getattr(w, f"{name}_high") for w in windows]
        known = [i for i, e in enumerate(expected) if e is not None]
        axes.plot(
            [times[i] for i in known], [expected[i] for i in known], color="tab:blue", linewidth=0.8, label="forecast"
        )
        axes.fill_between(
            [times[i] for i in known],
            [expected[i] for i in known],
            [high[i] for i in known],
            color="tab:blue",
            alpha=0.2,
            label="up to the alert bound",
        )
        kind = "volume" if name == "count" else "negative_share"
        fired = [a for a in alerts if a.kind == kind]
        axes.scatter(
            [datetime.fromtimestamp(a.window_start, timezone.utc) for a in fired],
            [a.observed for a in fired],
            color="tab:red",
            zorder=3,
            s=14,
            label="alert",
        )
        axes.set_ylabel(label)
    volume.set_title(f"topic {topic!r}")
    volume.legend(loc="upper left", fontsize="small")
    figure.autofmt_xdate()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
