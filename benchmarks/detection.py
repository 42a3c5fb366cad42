"""Detection of negative surges in the dated financial headlines (issue 18): each topic's
daily series of texts and negatives runs through ``temporec.monitor.forecast.TopicSeries``,
as the server's monitor runs it, and

- **false alarms**: the alerts on the stream as it is, per topic, per month of monitored
  windows (after the warm-up); the stream holds real surges too (February-March 2020), so
  the rate is also given for the windows before 2020-02;
- **the alerts of February and March 2020**: window, topic, observed against forecast, and
  the 5 most frequent content words of that window's negative headlines (printed and
  recorded: words and counts only, never the headlines);
- **injections**: at random windows after the warm-up (seeded; windows where the stream
  alone alerts are not drawn), extra negative texts, k x the topic's median daily negatives
  (at least one text), arrive in one window or over three (gradual: 1/6, 2/6, 3/6 of them);
  detection rate (any alert of the topic within the surge's windows), median delay in
  windows (0: the first surge window), with 95% Wilson intervals;
- **intervals**: false alarms against detection (k = 4, one window) at other ``interval`` settings.

The injected texts are real negative sentences (Financial PhraseBank, all annotators agree,
test split) drawn with replacement, and go through the same labeller as the stream: every
one adds to the volume, the ones the labeller calls negative add to the negatives. So a
labeller that misses negatives detects fewer surges, as it would in service.

    .venv/bin/python benchmarks/detection.py                         # lexicon labels; topics: all + each source
    .venv/bin/python benchmarks/detection.py --labeller model:models/finance-lstm-<version>
    .venv/bin/python benchmarks/detection.py --topics tagger         # + the finance domain's topic tagger
    .venv/bin/python benchmarks/detection.py --only alerts false     # parts whose names start with these
                                                                     # (false-alarms, alerts, injections, intervals)

Section ``finance-detection`` of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import results_file
from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.data.headlines import SOURCES, read_headlines
from temporec.data.phrasebank import read_phrasebank
from temporec.monitor.forecast import DAY_S, Forecast, ForecastSettings, Surge, TopicSeries
from temporec.training.lexicon import NEGATIVE, POSITIVE, lexicon_label

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "finance-detection"
PARTS = ("false-alarms", "alerts", "injections", "intervals")
DAYS_PER_MONTH = 365.25 / 12
CALM_UNTIL = datetime(2020, 2, 1, tzinfo=timezone.utc).timestamp()  # before the pandemic's surges
ALERTS_FROM, ALERTS_UNTIL = (datetime(2020, m, 1, tzinfo=timezone.utc).timestamp() for m in (2, 4))

Labeller = Callable[[list[str]], list[str]]  # texts -> "negative" | "neutral" | "positive"
Tagger = Callable[[list[str]], list[tuple[str, ...]]]  # texts -> each text's topics

STOPWORDS = frozenset(
    "the a an and or but of to in on at for from by with as is are was were be been its it this that "
    "after over into about than more says say said new how why what who will can could would may not "
    "has have had his her their they you your our out off amid against up down us via per".split()
)
CONTENT_WORD = re.compile(r"[a-z][a-z'-]+")


# ---- the stream --------------------------------------------------------------------------


def choose_labeller(spec: str) -> Labeller:
    if spec == "lexicon":
        return lambda texts: [lexicon_label(text) for text in texts]
    if spec.startswith("model:"):
        return model_labeller(Path(spec.removeprefix("model:")))
    raise InvalidArgument(f"--labeller: {spec!r} unknown; allowed: lexicon, model:<artifact directory>")


def model_labeller(directory: Path) -> Labeller:
    """A trained ``finance`` artifact as a labeller (texts -> labels): the served path's own
    classification (``RecommenderService.classify``) in this process, a message at a time."""
    import asyncio

    from temporec.contract.registry import load_registry
    from temporec.contract.types import Query
    from temporec.model.artifacts import read_manifest
    from temporec.serving.service import RecommenderService

    version = read_manifest(directory).version
    query = Query("finance", [], model_version=version)

    async def classify(texts: list[str]) -> list[str]:
        service = RecommenderService(load_registry(), directory.parent, device="cpu")
        await service.start()
        try:
            labels = []
            for start in tqdm(range(0, len(texts), 1024), desc="classify", unit="message", disable=None):
                classified = await service.classify(query, texts[start : start + 1024])
                labels += [classified.classes[i] for i in classified.probabilities.argmax(1).tolist()]
            return labels
        finally:
            await service.close()

    return lambda texts: asyncio.run(classify(list(texts)))


def choose_tagger(spec: str) -> Tagger | None:
    """``sources``: no tagger (topics ``all`` and each source); ``tagger``: also the finance
    domain's ``TopicTagger`` (plugins/temporec_plugins/domains/finance/topics.py)."""
    if spec == "sources":
        return None
    if spec == "tagger":
        try:
            from temporec_plugins.domains.finance.topics import TopicTagger
        except ImportError as error:
            raise FailedPrecondition(
                f"--topics tagger: the finance topic tagger cannot be imported ({error})"
            ) from None
        return TopicTagger().tag
    raise InvalidArgument(f"--topics: {spec!r} unknown; allowed: sources, tagger")


@dataclass
class TopicStream:
    """One topic's daily windows, from its first text's day to the stream's last day."""

    name: str
    first_window: int  # days since the epoch
    counts: np.ndarray
    negatives: np.ndarray
    negative_texts: dict[int, list[str]] = field(default_factory=dict)  # window offset -> its negative texts

    def start(self, offset: int) -> float:
        return (self.first_window + offset) * DAY_S


def topic_streams(data: Path, labeller: Labeller, tagger: Tagger | None) -> list[TopicStream]:
    headlines = read_headlines(data)
    texts = [headline.text for headline in headlines]
    labels = labeller(texts)
    topics = [("all", headline.source) for headline in headlines]
    if tagger is not None:
        topics = [(*own, *tagged) for own, tagged in zip(topics, tagger(texts))]
    windows = [int(headline.timestamp // DAY_S) for headline in headlines]
    last = max(windows)
    names = ["all", *SOURCES, *sorted({t for tags in topics for t in tags} - {"all", *SOURCES})]
    streams = []
    for name in names:
        members = [i for i, tags in enumerate(topics) if name in tags]
        first = min(windows[i] for i in members)
        counts, negatives = np.zeros(last - first + 1, int), np.zeros(last - first + 1, int)
        stream = TopicStream(name, first, counts, negatives)
        for i in members:
            counts[windows[i] - first] += 1
            if labels[i] == "negative":
                negatives[windows[i] - first] += 1
                stream.negative_texts.setdefault(windows[i] - first, []).append(texts[i])
        streams.append(stream)
    return streams


# ---- the stream as it is ---------------------------------------------------------------------


@dataclass
class Replay:
    """A topic's windows run through the monitor: the alerts, and what each cost."""

    alerts: dict[int, list[Surge]]  # window offset -> its surges
    forecasts: dict[int, Forecast]  # window offset -> the forecast it was checked against
    monitored: list[int]  # offsets after the warm-up
    seconds_per_window: float


def replay(stream: TopicStream, settings: ForecastSettings) -> Replay:
    series, alerts, forecasts, monitored = TopicSeries(settings), {}, {}, []
    started = time.perf_counter()
    for offset, (count, negatives) in enumerate(zip(stream.counts, stream.negatives)):
        forecast = series.forecast(stream.start(offset), int(count))
        if forecast is not None:
            monitored.append(offset)
            forecasts[offset] = forecast
        surges = series.observe(stream.start(offset), int(count), int(negatives))
        if surges:
            alerts[offset] = surges
    return Replay(alerts, forecasts, monitored, (time.perf_counter() - started) / len(stream.counts))


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default)."""
    if not trials:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def per_month(windows: list[int], alerts: dict[int, list[Surge]]) -> str:
    alarmed = sum(1 for offset in windows if offset in alerts)
    low, high = wilson(alarmed, len(windows))
    rate = alarmed / len(windows) if windows else 0.0
    return f"{rate * DAYS_PER_MONTH:.2f} ({low * DAYS_PER_MONTH:.2f}-{high * DAYS_PER_MONTH:.2f})"


def false_alarms_part(streams, replays, settings) -> str:
    lines = [
        "| topic | texts/day (median) | negatives/day (median) | model at the end | windows monitored | "
        "alert windows: volume / share | alert windows per month (95% CI) | before 2020-02 | ms per window |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stream, run in zip(streams, replays):
        calm = [o for o in run.monitored if stream.start(o) < CALM_UNTIL]
        kinds = Counter(s.kind for surges in run.alerts.values() for s in surges)
        last = run.forecasts[max(run.forecasts)].model if run.forecasts else "-"
        lines.append(
            f"| {stream.name} | {np.median(stream.counts):.0f} | {np.median(stream.negatives):.0f} | {last} | "
            f"{len(run.monitored)} | {kinds['volume']} / {kinds['negative_share']} | "
            f"{per_month(run.monitored, run.alerts)} | {per_month(calm, run.alerts)} | {run.seconds_per_window * 1e3:.2f} |"
        )
    return (
        f"### False alarms: the stream as it is\n\nDaily windows (UTC days), {describe(settings)}. An alert window "
        "is a window with at least one alert (volume or negative share); per month = per 30.4 monitored windows. "
        "The stream's own surges (COVID-19, from late February 2020) count here too, hence the rate before "
        "2020-02 beside it.\n\n" + "\n".join(lines)
    )


def describe(settings: ForecastSettings) -> str:
    return (
        f"AR order {settings.min_order}-{settings.max_order} and season (none or {settings.seasons} windows) by BIC, "
        f"warm-up {settings.warmup_windows} windows, fits on the last {settings.history_windows}, "
        f"one-sided {settings.interval} upper bounds, no share alert under {settings.min_count} texts"
    )


def content_words(texts: list[str], top: int = 5) -> str:
    """The most frequent words of ``texts`` that are neither stop words nor the lexicon's polarity words."""
    words = Counter(
        word
        for text in texts
        for word in set(CONTENT_WORD.findall(text.lower()))
        if word not in STOPWORDS and word not in NEGATIVE and word not in POSITIVE
    )
    return ", ".join(f"{word} {count}" for word, count in words.most_common(top))


def alerts_part(streams, replays) -> str:
    lines = [
        "| window | topic | alert | observed | forecast [low, high] | texts / negatives | top words of its negative headlines |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for stream, run in zip(streams, replays):
        for offset, surges in sorted(run.alerts.items()):
            if not ALERTS_FROM <= stream.start(offset) < ALERTS_UNTIL:
                continue
            day = datetime.fromtimestamp(stream.start(offset), timezone.utc).strftime("%Y-%m-%d %a")
            words = content_words(stream.negative_texts.get(offset, []))
            for surge in surges:
                shown = (lambda v: f"{v:.0f}") if surge.kind == "volume" else (lambda v: f"{v:.1%}")
                lines.append(
                    f"| {day} | {stream.name} | {surge.kind} | {shown(surge.observed)} | "
                    f"{shown(surge.expected)} [{shown(surge.low)}, {shown(surge.high)}] | "
                    f"{stream.counts[offset]} / {stream.negatives[offset]} | {words} |"
                )
    return (
        "### The alerts of February and March 2020\n\nWords: the 5 most frequent content words (stop words and "
        "the lexicon's polarity words left out) of the window's headlines that the labeller called negative, "
        "with the number of those headlines holding each.\n\n" + "\n".join(lines)
    )


# ---- injections ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    parts: tuple[float, ...]  # the share of the surge's texts in each of its windows


SHAPES = (Shape("1 window", (1.0,)), Shape("3 windows, gradual", (1 / 6, 2 / 6, 3 / 6)))


def split_texts(total: int, parts: tuple[float, ...]) -> list[int]:
    """``total`` texts over the windows in proportion to ``parts``, largest remainders rounding."""
    quotas = [total * part for part in parts]
    counts = [int(quota) for quota in quotas]
    for i in sorted(range(len(parts)), key=lambda i: counts[i] - quotas[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


def eligible_offsets(stream: TopicStream, run: Replay, length: int) -> list[int]:
    """Monitored windows where a surge of ``length`` windows fits and the stream alone raises no alert."""
    monitored = set(run.monitored)
    return [
        offset
        for offset in run.monitored
        if all(o in monitored and o not in run.alerts for o in range(offset, offset + length))
    ]


def injected_delay(
    stream: TopicStream, offset: int, extra: list[int], pool_negative: np.ndarray, settings, rng
) -> int | None:
    """The first surge window (from 0) with an alert, or None: the series as it stood before
    ``offset``, then the surge's windows with ``extra`` texts drawn from the pool."""
    history = max(offset - settings.history_windows, 0)
    series = TopicSeries.restore(
        settings,
        stream.start(history),
        stream.counts[history:offset].tolist(),
        stream.negatives[history:offset].tolist(),
    )
    for step, texts in enumerate(extra):
        negatives = int(pool_negative[rng.integers(len(pool_negative), size=texts)].sum())
        window = offset + step
        count = int(stream.counts[window]) + texts
        if series.observe(stream.start(window), count, int(stream.negatives[window]) + negatives):
            return step
    return None


def surge_base(stream: TopicStream, run: Replay) -> int:
    """The unit of surge size: the topic's median negatives per monitored window, at least 1."""
    return max(int(np.median(stream.negatives[run.monitored])), 1)


@dataclass(frozen=True)
class Injection:
    topic: int  # the stream's position (it seeds the draws)
    shape: int  # in SHAPES
    k: float


def detection_trials(injection: Injection, stream, run, pool_negative, trials, seed, settings) -> tuple[int, list[int]]:
    """The surge's texts in all, and the delays of the trials that detected it. The windows
    are drawn from the topic and shape's seed alone: every k and setting meets the same ones."""
    shape = SHAPES[injection.shape]
    offsets = eligible_offsets(stream, run, len(shape.parts))
    draws = np.random.default_rng([seed, injection.topic, injection.shape]).choice(offsets, size=trials)
    total = max(round(injection.k * surge_base(stream, run)), 1)
    rng = np.random.default_rng([seed, injection.topic, injection.shape, round(injection.k * 1000)])
    extra = split_texts(total, shape.parts)
    delays = [injected_delay(stream, int(offset), extra, pool_negative, settings, rng) for offset in draws]
    return total, [delay for delay in delays if delay is not None]


def detected_cells(found: list[int], trials: int) -> str:
    low, high = wilson(len(found), trials)
    delay = f"{np.median(found):.0f}" if found else "-"
    return f"{len(found) / trials:.0%} ({low:.0%}-{high:.0%}) | {delay}"


def injections_part(streams, replays, pool_negative, sizes, trials, seed, settings) -> str:
    lines = [
        "| topic | surge | k | texts injected (labelled negative, mean) | detected (95% CI) | median delay (windows) | "
        "alert windows per month |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    recall = pool_negative.mean()
    jobs = [Injection(t, s, k) for t in range(len(streams)) for s in range(len(SHAPES)) for k in sizes]
    for job in tqdm(jobs, desc="injections", disable=None):
        stream, run = streams[job.topic], replays[job.topic]
        total, found = detection_trials(job, stream, run, pool_negative, trials, seed, settings)
        lines.append(
            f"| {stream.name} | {SHAPES[job.shape].name} | {job.k:g} | {total} ({total * recall:.1f}) | "
            f"{detected_cells(found, trials)} | {per_month(run.monitored, run.alerts)} |"
        )
    return (
        f"### Injected surges\n\n{trials} trials per row, at windows drawn at random (seed {seed}) among the monitored "
        "windows where the stream alone raises no alert in the surge's windows (the same windows for every k). "
        "k: the surge's size in the topic's median negatives per window (at least 1 text in all). The injected "
        f"texts: {len(pool_negative)} negative PhraseBank sentences (AllAgree, test split), of which the labeller "
        f"calls {recall:.0%} negative: the others add volume only. Detected: an alert of the topic (volume or "
        "negative share) in one of the surge's windows; delay 0: the first of them. The last column: the same "
        "topic's alert windows per month on the stream without injections.\n\n" + "\n".join(lines)
    )


def intervals_part(streams, pool_negative, intervals, k, trials, seed) -> str:
    """How the interval trades false alarms for detection: one surge size, one window."""
    lines = [
        f"| interval | topic | alert windows per month | before 2020-02 | detected, k = {k:g} in 1 window (95% CI) | "
        "median delay |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for interval in tqdm(intervals, desc="intervals", disable=None):
        settings = ForecastSettings(interval=interval)
        for topic, stream in enumerate(streams):
            run = replay(stream, settings)
            calm = [o for o in run.monitored if stream.start(o) < CALM_UNTIL]
            _, found = detection_trials(Injection(topic, 0, k), stream, run, pool_negative, trials, seed, settings)
            lines.append(
                f"| {interval:g} | {stream.name} | {per_month(run.monitored, run.alerts)} | "
                f"{per_month(calm, run.alerts)} | {detected_cells(found, trials)} |"
            )
    return (
        "### The interval: false alarms against detection\n\nThe same runs at other `interval` settings (the "
        "other settings as above; the windows drawn for the injections depend on where each setting's stream "
        "alone alerts).\n\n" + "\n".join(lines)
    )


# ---- the run ------------------------------------------------------------------------------------


def injected_streams(streams: list[TopicStream], names: list[str]) -> list[int]:
    known = [stream.name for stream in streams]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InvalidArgument(f"--inject-topics: {unknown} unknown; allowed: {', '.join(known)}")
    return [known.index(name) for name in names]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", nargs="*", default=[], help=f"run the parts whose names start with these ({', '.join(PARTS)})"
    )
    parser.add_argument("--data", type=Path, default=DATA, help=f"shared data folder (default {DATA})")
    parser.add_argument("--labeller", default="lexicon", help="lexicon (default) or model:<finance artifact directory>")
    parser.add_argument("--topics", default="sources", help="sources (default: all + each source) or tagger")
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=[0.5, 1, 2, 4, 8], help="surge sizes k (default 0.5 1 2 4 8)"
    )
    parser.add_argument(
        "--intervals", type=float, nargs="+", default=[0.95, 0.99, 0.999], help="the intervals part's settings"
    )
    parser.add_argument(
        "--inject-topics",
        nargs="+",
        default=["all", *SOURCES],
        help="the topics of the injections and intervals parts (default: all and each source)",
    )
    parser.add_argument("--trials", type=int, default=200, help="injections per topic, shape and size (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=ForecastSettings.interval, help="the alerts' upper quantile")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    headlines, phrasebank = args.data / "financial-headlines", args.data / "financial-phrasebank"
    if not headlines.is_dir() or not phrasebank.is_dir():
        print(f"no shared data at {headlines} or {phrasebank}: nothing to benchmark", file=sys.stderr)
        return 1
    started = time.monotonic()
    torch.set_num_threads(1)  # nothing here needs more (the machine is shared)
    wanted = [part for part in PARTS if not args.only or any(part.startswith(p) for p in args.only)]
    settings = ForecastSettings(interval=args.interval)
    labeller = choose_labeller(args.labeller)
    streams = topic_streams(headlines, labeller, choose_tagger(args.topics))
    replays = [replay(stream, settings) for stream in tqdm(streams, desc="replay", disable=None)]
    pool = [s.text for s in read_phrasebank(phrasebank, "AllAgree")["test"] if s.label == "negative"]
    pool_negative = np.array([label == "negative" for label in labeller(pool)])
    injected = injected_streams(streams, args.inject_topics)
    parts = {
        "false-alarms": lambda: false_alarms_part(streams, replays, settings),
        "alerts": lambda: alerts_part(streams, replays),
        "injections": lambda: injections_part(
            [streams[i] for i in injected],
            [replays[i] for i in injected],
            pool_negative,
            args.sizes,
            args.trials,
            args.seed,
            settings,
        ),
        "intervals": lambda: intervals_part(
            [streams[i] for i in injected], pool_negative, args.intervals, 4, args.trials, args.seed
        ),
    }
    body = f"Labeller: {args.labeller}; topics: {args.topics}.\n\n" + "\n\n".join(parts[p]() for p in wanted)
    print(body)
    results_file.record(args.out, SECTION, "detection.py", argv, started, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
