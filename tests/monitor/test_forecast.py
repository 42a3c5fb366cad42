"""Per-topic forecasts and surge alerts (temporec.monitor.forecast) on synthetic series:
the AR fit, the weekly season, surges that fire and normal windows that do not, warm-up,
small counts, empty windows, determinism."""

import copy
from functools import cache

import numpy as np
import pytest

from temporec.contract.errors import InvalidArgument
from temporec.monitor.forecast import ForecastSettings, TopicSeries, fit_ar

DAY = 86_400.0
WEEKDAYS = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.3])  # a window's number modulo 7 -> its level


def daily_series(windows=300, texts=60.0, share=0.1, weekly=True, seed=0):
    """Poisson counts (with a weekly pattern when ``weekly``) and binomial negatives."""
    rng = np.random.default_rng(seed)
    levels = texts * (WEEKDAYS[np.arange(windows) % 7] if weekly else np.ones(windows))
    counts = rng.poisson(levels)
    return counts, rng.binomial(counts, share)


def fed(counts, negatives, settings=None):
    """A TopicSeries that has observed the windows, and the surges it raised."""
    series, surges = TopicSeries(settings), []
    for window, (count, negative) in enumerate(zip(counts, negatives)):
        surges += series.observe(window * DAY, int(count), int(negative))
    return series, surges


@cache
def _fed_weekly():
    return fed(*daily_series(windows=210))


def fed_weekly():
    """A fresh copy of one 210-window weekly series (fitting it takes a fraction of a second)."""
    return copy.deepcopy(_fed_weekly())


def test_a_clean_ar1_recovers_its_coefficient():
    rng = np.random.default_rng(1)
    values = np.zeros(2000)
    for t in range(1, len(values)):
        values[t] = 0.5 + 0.7 * values[t - 1] + rng.normal(0, 0.1)
    fit = fit_ar(values, np.arange(len(values)), ForecastSettings(seasons=()))
    assert fit.order == 1
    assert fit.coef[1] == pytest.approx(0.7, abs=0.03)
    assert fit.sigma2 == pytest.approx(0.01, rel=0.1)


def test_a_weekly_pattern_is_found_and_none_is_invented():
    weekly, _ = fed_weekly()
    flat, _ = fed(*daily_series(windows=150, weekly=False))
    assert "weekly" in weekly.forecast(210 * DAY).model.split(",")[0]
    assert "weekly" not in flat.forecast(150 * DAY).model.split(",")[0]


def test_the_weekly_forecast_follows_the_weekday():
    series, _ = fed_weekly()
    assert series.forecast(210 * DAY).count == pytest.approx(60, rel=0.15)  # 210 % 7 = 0: a busy day
    series.observe(210 * DAY, 60, 6)
    series.observe(211 * DAY, 60, 6)
    series.observe(212 * DAY, 60, 6)
    series.observe(213 * DAY, 60, 6)
    series.observe(214 * DAY, 60, 6)
    assert series.forecast(215 * DAY).count == pytest.approx(15, rel=0.3)  # 215 % 7 = 5: a quiet day


def test_normal_windows_do_not_fire_and_a_planted_surge_does():
    series, surges = fed_weekly()
    assert len(surges) <= 2  # 0.99 one-sided, two kinds, ~150 windows after warm-up
    forecast = series.forecast(210 * DAY)
    normal = series.observe(210 * DAY, round(forecast.count), round(0.1 * forecast.count))
    assert normal == []
    assert [s.kind for s in series.observe(211 * DAY, 60, 25)] == ["negative_share"]
    assert [s.kind for s in series.observe(212 * DAY, 200, 20)] == ["volume"]


def test_the_surge_reports_observed_against_forecast():
    series, _ = fed_weekly()
    (surge,) = series.observe(210 * DAY, 60, 25)
    assert surge.observed == pytest.approx(25 / 60)
    assert surge.low <= surge.expected < surge.high < surge.observed
    assert surge.expected == pytest.approx(0.1, abs=0.03)


def test_no_forecast_and_no_alert_during_warm_up():
    settings = ForecastSettings(warmup_windows=30)
    series = TopicSeries(settings)
    for window in range(30):
        assert series.forecast(window * DAY) is None
        assert series.observe(window * DAY, 1000 if window == 29 else 50, 900 if window == 29 else 5) == []
    assert series.forecast(30 * DAY) is not None


def test_few_texts_do_not_fire_a_share_alert():
    series, _ = fed_weekly()
    assert series.forecast(210 * DAY, count=3).share_high >= 2 / 3  # 2 negatives of 3 texts is no surge
    assert series.settings.min_count == 10
    assert series.observe(210 * DAY, 5, 5) == []  # all negative, but under min_count


def test_the_share_interval_narrows_with_the_count():
    series, _ = fed_weekly()
    widths = [series.forecast(210 * DAY, count=n).share_high for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2] > 0.1


def test_empty_windows_are_data():
    counts, negatives = daily_series(windows=120, texts=3.0, weekly=False)
    assert (counts == 0).any()
    series, _ = fed(counts, negatives)
    assert series.forecast(120 * DAY).count < 6
    gap = TopicSeries(ForecastSettings(warmup_windows=10, seasons=()))
    gap.observe(0.0, 5, 1)
    gap.observe(20 * DAY, 5, 1)  # the 19 windows between are empty
    assert gap.counts == [5] + [0] * 19 + [5]
    assert gap.forecast(21 * DAY).count < 2


def test_deterministic():
    first, second = (fed(*daily_series(windows=100, seed=3)) for _ in range(2))
    assert first[0].forecast(100 * DAY) == second[0].forecast(100 * DAY)
    assert first[1] == second[1]


def test_bad_inputs_are_refused_with_the_field_named():
    series = TopicSeries()
    series.observe(10 * DAY, 5, 1)
    with pytest.raises(InvalidArgument, match="window_start"):
        series.observe(9 * DAY, 5, 1)
    with pytest.raises(InvalidArgument, match="negatives"):
        series.observe(11 * DAY, 5, 6)
    with pytest.raises(InvalidArgument, match="interval"):
        ForecastSettings(interval=1.5)


def test_a_restored_series_forecasts_as_the_one_that_observed():
    counts, negatives = daily_series(windows=120, seed=4)
    observed, _ = fed(counts, negatives)
    restored = TopicSeries.restore(ForecastSettings(), 0.0, counts.tolist(), negatives.tolist())
    assert restored.forecast(120 * DAY) == observed.forecast(120 * DAY)


def test_a_gradual_surge_fires_over_its_windows_and_once():
    counts, negatives = daily_series(windows=120, texts=100.0, weekly=False, seed=5)
    spans = TopicSeries.restore(ForecastSettings(), 0.0, counts.tolist(), negatives.tolist())
    alone = TopicSeries.restore(ForecastSettings(span_windows=1), 0.0, counts.tolist(), negatives.tolist())
    fired = [[s.windows for s in spans.observe(w * DAY, 100, 17)] for w in range(120, 123)]  # 17%: none alone
    assert fired == [[], [2], []]  # the two windows together; the third's spans hold an alerted window
    assert not any(alone.observe(w * DAY, 100, 17) for w in range(120, 123))


def test_a_sparse_topic_needs_min_count_texts_for_a_volume_alert():
    counts, negatives = daily_series(windows=100, texts=0.3, weekly=False, seed=6)
    series = TopicSeries.restore(ForecastSettings(), 0.0, counts.tolist(), negatives.tolist())
    assert series.observe(100 * DAY, 8, 0) == []  # 8 texts against ~0.3 expected: a handful
    assert [s.kind for s in series.observe(101 * DAY, 40, 0)] == ["volume"]


def test_a_long_silence_keeps_the_history_bounded():
    series = TopicSeries(ForecastSettings(warmup_windows=10, history_windows=20, seasons=()))
    series.observe(0.0, 5, 1)
    series.observe(1e6 * DAY, 5, 1)  # a million windows later
    assert series.counts == [0] * 19 + [5]
    assert series.next_index == 1_000_001
    with pytest.raises(InvalidArgument, match="window_start"):
        series.forecast(float("nan"))
