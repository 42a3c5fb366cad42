"""Per-topic forecasts of the next window and surge alerts: each topic's series of closed
windows (texts, negatives) gets its own autoregressive model, refitted on its own history
whenever a window closes, and an alert fires when a window's volume or negative share lies
above the forecast's interval. Surges only: a quiet window is data, not an alert.

The method, and why:

- **Volume**: AR(p) by least squares on ``log1p(count)`` (counts are roughly Poisson-like
  and a surge is multiplicative; the log makes the noise about even across levels and keeps
  empty windows defined). The interval is the residual spread plus the fit's own
  uncertainty at the new row, never narrower than Poisson noise at the forecast count.
- **Negative share**: AR(p) on the logit of each window's share, smoothed with
  ``prior_texts`` pseudo-texts at the topic's mean share (so that empty or tiny windows are
  defined and pulled to the mean instead of to 0 or 1), its intercept then shifted so that the
  fitted rates reproduce the history's negatives (the logit of a noisy share is biased low).
  The shares' scatter around the fitted rates mixes the topic's real day-to-day variation
  with binomial noise; the variation (``tau2``, on the logit scale) is what is left after
  the binomial part is taken out, by moments. The window is then judged at its *observed* count:
  negatives ~ Binomial(count, rate), rate ~ logit-normal(forecast, tau2 + fit uncertainty),
  the exact upper quantile of that mixture (Gauss-Hermite over the rate). So 2 negatives
  out of 3 texts is not a surge, and 30 out of 100 against 9% expected is.
- **Gradual surges**: a surge spread over a few windows may show in none alone, so the
  negatives of the latest 2..``span_windows`` windows are also judged together (the sum of
  their forecast distributions, each at its own count), when the newest window is at least
  at its expected share and none of the earlier ones alerted already; the alert names its
  span (``Surge.windows``).
- **Seasonality**: a season (weekly for daily windows: headlines are ~4x as many on a
  weekday as on a Sunday) enters as one dummy per phase. For each series the order p in
  ``[min_order, max_order]`` and the season (none or one of ``seasons``) are chosen by BIC
  on the same rows, so a topic is given a season only where it pays.
- **Outliers**: windows more than ``outlier_sigmas`` robust standard deviations off a first
  fit (data gaps, past surges) are left out of the fit, so that one dead day does not widen
  every interval after it.
- **Interval**: one-sided, ``interval`` is the upper bound's quantile (0.99: a calibrated
  model alerts on about 1% of normal windows per test); the lower bound, for display, is the
  ``1 - interval`` quantile.

The share's bounds depend on the count they are judged at: ``observe`` uses the window's
observed count, ``forecast(window_start, count)`` any count (by default the forecast one).

Cost: a fit solves ``(max_order - min_order + 1) x (1 + len(seasons)) x 2`` small
least-squares problems (one Gram matrix of at most ``history_windows`` rows and ~10 columns
per series): about 2 ms per closed window and topic with the defaults on a quiet core, 4-7 ms
on the shared 2-core machine that benchmarks/detection.py measured it on. Fits are cached
until the next window is added; a topic keeps ``history_windows`` windows, nothing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from temporec.contract.errors import InvalidArgument

DAY_S = 86_400.0
MAX_TAU2 = 4.0  # a logit sd of 2: a sparse topic's few negatives can make the moments blow up
QUADRATURE = np.polynomial.hermite_e.hermegauss(24)  # nodes, weights for a standard normal (x sqrt(2 pi))


@dataclass(frozen=True)
class ForecastSettings:
    """How each topic's model is fitted and when it alerts (defaults for daily windows)."""

    window_s: float = DAY_S  # a window's length in seconds
    min_order: int = 1  # AR order bounds, chosen by BIC within them
    max_order: int = 3
    seasons: tuple[int, ...] = (7,)  # candidate periods in windows (7 daily windows: weekly); () for none
    warmup_windows: int = 56  # no forecast, so no alert, before this many windows of history
    history_windows: int = 365  # the most recent windows a fit reads
    interval: float = 0.99  # the upper bound's quantile (one-sided); alerts fire above it
    min_count: int = 10  # no alert (volume or negative share) on a window with fewer texts
    prior_texts: float = 2.0  # pseudo-texts at the topic's mean share that smooth a window's share
    outlier_sigmas: float = 8.0  # windows further off a first fit (robust sigmas) are left out; 0: none
    span_windows: int = 3  # also judge the negatives of the last 2..span_windows windows together; 1: alone

    def __post_init__(self):
        checks = (
            ("window_s", self.window_s > 0, "> 0"),
            ("min_order", 0 <= self.min_order <= self.max_order, "between 0 and max_order"),
            ("seasons", all(period >= 2 for period in self.seasons), "periods of at least 2 windows"),
            ("warmup_windows", self.warmup_windows > self.max_order, "> max_order"),
            ("history_windows", self.history_windows >= self.warmup_windows, ">= warmup_windows"),
            ("interval", 0.5 < self.interval < 1, "between 0.5 and 1 (exclusive)"),
            ("min_count", self.min_count >= 0, ">= 0"),
            ("prior_texts", self.prior_texts > 0, "> 0"),
            ("outlier_sigmas", self.outlier_sigmas >= 0, ">= 0 (0: keep every window)"),
            ("span_windows", self.span_windows >= 1, ">= 1 (1: each window alone)"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise InvalidArgument(f"{name}: {getattr(self, name)!r} is not allowed; it must be {allowed}")


@dataclass(frozen=True)
class Forecast:
    """One topic's next window: volume and negative share, each with its interval."""

    count: float
    count_low: float
    count_high: float
    share: float
    share_low: float  # the share's bounds hold at the count it was forecast for (see TopicSeries.forecast)
    share_high: float
    model: str  # e.g. "volume AR(2)+weekly, share AR(1)"


@dataclass(frozen=True)
class Surge:
    kind: str  # "volume" | "negative_share"
    observed: float
    expected: float
    low: float
    high: float
    windows: int = 1  # the windows, ending with the one observed, that the values are over


@dataclass(frozen=True)
class ArFit:
    """An AR(order) with an intercept and, when ``period``, one dummy per phase but the first."""

    order: int
    period: int  # 0: no season
    coef: np.ndarray
    sigma2: float  # residual variance
    xtx_inv: np.ndarray  # for the fit's uncertainty at a new row
    bic: float
    residuals: np.ndarray  # of the rows kept
    kept: np.ndarray  # the targets (after the first max_order values) that the fit read: not outliers

    def predict(self, lags: np.ndarray, phase: int) -> tuple[float, float]:
        """The mean of the next value (``lags``: the latest values, newest last) and its variance from the fit."""
        row = np.concatenate(([1.0], lags[::-1][: self.order], seasonal_dummies(np.array([phase]), self.period)[0]))
        return float(row @ self.coef), float(row @ self.xtx_inv @ row) * self.sigma2


def seasonal_dummies(phases: np.ndarray, period: int) -> np.ndarray:
    """One column per phase of ``period`` but the first (the intercept's); no columns when 0."""
    if not period:
        return np.zeros((len(phases), 0))
    return (phases[:, None] % period == np.arange(1, period)[None, :]).astype(float)


def fit_ar(values: np.ndarray, phases: np.ndarray, settings: ForecastSettings) -> ArFit | None:
    """The BIC-best AR over orders ``min_order..max_order`` and seasons (none, ``settings.seasons``),
    all scored on the same targets (those after ``max_order`` lags); None when no candidate has
    enough rows (three per coefficient). ``phases[t]``: the window number of ``values[t]``.
    Every candidate's columns are a subset of one design, so one Gram matrix serves them all;
    the rows that the full design fits worst (``outliers``) are left out of it."""
    first = settings.max_order
    lags = [values[first - 1 - j : len(values) - 1 - j, None] for j in range(first)]  # j + 1 windows back
    seasonal = [seasonal_dummies(phases[first : len(values)], period) for period in settings.seasons]
    design = np.hstack([np.ones((len(values) - first, 1)), *lags, *seasonal])
    kept = ~outliers(design, values[first:], settings.outlier_sigmas)
    design, targets = design[kept], values[first:][kept]
    gram, moments = design.T @ design, design.T @ targets
    best = None
    for season, period in enumerate((0, *settings.seasons)):
        start = 1 + first + sum(period - 1 for period in settings.seasons[: season - 1])
        seasonal_columns = list(range(start, start + period - 1)) if period else []
        for order in range(settings.min_order, settings.max_order + 1):
            columns = [0, *range(1, 1 + order), *seasonal_columns]
            if len(targets) < 3 * len(columns):
                continue
            coef = _solve(gram[np.ix_(columns, columns)], moments[columns])
            residuals = targets - design[:, columns] @ coef  # not y'y - b'X'y: exact when columns are collinear
            rss = max(float(residuals @ residuals), 1e-12)
            bic = len(targets) * np.log(rss / len(targets)) + len(columns) * np.log(len(targets))
            if best is None or bic < best[0]:
                best = (bic, order, period, columns, coef, rss, residuals)
    if best is None:
        return None
    bic, order, period, columns, coef, rss, residuals = best
    return ArFit(
        order=order,
        period=period,
        coef=coef,
        sigma2=rss / max(len(targets) - len(columns), 1),
        xtx_inv=np.linalg.pinv(gram[np.ix_(columns, columns)]),
        bic=float(bic),
        residuals=residuals,
        kept=kept,
    )


def outliers(design: np.ndarray, targets: np.ndarray, sigmas: float) -> np.ndarray:
    """The rows whose residual under the full design lies more than ``sigmas`` robust standard
    deviations (1.4826 MAD) from the median one; none when ``sigmas`` is 0 or the spread is 0."""
    if not sigmas or len(targets) < 2 * design.shape[1]:
        return np.zeros(len(targets), bool)
    residuals = targets - design @ _solve(design.T @ design, design.T @ targets)
    deviations = np.abs(residuals - np.median(residuals))
    spread = 1.4826 * float(np.median(deviations))
    return deviations > sigmas * spread if spread > 1e-9 else np.zeros(len(targets), bool)


def _solve(gram: np.ndarray, moments: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(gram, moments)
    except np.linalg.LinAlgError:  # collinear columns (a constant series): the minimum-norm solution
        return np.linalg.pinv(gram) @ moments


def rate_shift(fitted: np.ndarray, counts: np.ndarray, negatives: np.ndarray, steps: int = 8) -> float:
    """The shift of the fitted logits that makes their rates reproduce the history's negatives
    (the logit of a noisy share is biased low: its mean lies below the logit of the mean share)."""
    shift = 0.0
    for _ in range(steps):  # Newton on sum(counts * expit(fitted + shift)) = sum(negatives)
        rates = expit(fitted + shift)
        slope = float(counts @ (rates * (1 - rates)))
        if slope <= 0:
            return 0.0
        shift += (float(negatives.sum()) - float(counts @ rates)) / slope
    return shift


def extra_binomial_variance(rates: np.ndarray, counts: np.ndarray, negatives: np.ndarray) -> float:
    """The variance of the rate's logit beyond binomial noise, by moments on the share scale:
    E[(share - rate)^2] = rate (1 - rate) / n + (rate (1 - rate))^2 tau2, rows weighted by n."""
    observed = counts > 0
    rates, counts, negatives = rates[observed], counts[observed], negatives[observed]
    spread = rates * (1 - rates)
    excess = float(counts @ ((negatives / counts - rates) ** 2) - spread.sum())
    if not len(counts):
        return 0.0
    return min(max(excess / float(counts @ spread**2), 0.0), MAX_TAU2)


def binomial_log_pmf(count: int, rates: np.ndarray) -> np.ndarray:
    """log P(k of ``count``) for k = 0..count, one row per rate in ``rates`` (each in (0, 1))."""
    k = np.arange(count + 1)
    log_choose = np.concatenate(([0.0], np.cumsum(np.log(count - k[1:] + 1) - np.log(k[1:]))))
    rates = np.clip(rates, 1e-9, 1 - 1e-9)[:, None]
    return log_choose + k * np.log(rates) + (count - k) * np.log1p(-rates)


def logit(p):
    return np.log(p) - np.log1p(-p)


def expit(x):
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x), without overflow


def quantile(pmf: np.ndarray, q: float) -> int:
    """The smallest k with P(X <= k) >= q."""
    return int(np.searchsorted(np.cumsum(pmf), q - 1e-12))


@dataclass(frozen=True)
class _Models:
    volume: ArFit
    share: ArFit
    mean_share: float  # the topic's share over the history (the smoothing's prior)
    tau2: float  # the share's logit variance beyond binomial noise
    volume_mean: float  # forecasts on the model scales for the next window, with their variances
    volume_var: float
    share_mean: float
    share_var: float


@dataclass(frozen=True)
class _Judged:
    """A closed window as its share was judged: for the spans of several windows."""

    count: int
    negatives: int
    rate: float  # the expected share
    pmf: np.ndarray  # of its negatives at its count
    alerted: bool  # a negative-share alert fired on it (alone or over a span)


def negatives_pmf(models: _Models, count: int) -> tuple[float, np.ndarray]:
    """The expected share and the distribution of the negatives among ``count`` texts:
    Binomial(count, rate), rate ~ logit-normal(share_mean, share_var) (Gauss-Hermite)."""
    nodes, weights = QUADRATURE
    rates = expit(models.share_mean + np.sqrt(models.share_var) * nodes)
    weights = weights / weights.sum()
    return float(weights @ rates), weights @ np.exp(binomial_log_pmf(count, rates))


class TopicSeries:
    """One topic's closed windows (count, negatives); fits its AR model on its own history.

    Windows are numbered ``floor(window_start / window_s)``; a window not observed between
    two observed ones is empty (count 0) and enters the history as such."""

    def __init__(self, settings: ForecastSettings | None = None):
        self.settings = settings or ForecastSettings()
        self.first_index: int | None = None  # the number of the oldest window kept
        self.counts: list[int] = []
        self.negatives: list[int] = []
        self._cached: tuple[int, _Models | None] | None = None  # (window number, its models)
        self._judged: list[_Judged] = []  # the latest consecutive judged windows (span_windows - 1 at most)

    @classmethod
    def restore(
        cls, settings: ForecastSettings, window_start: float, counts: list[int], negatives: list[int]
    ) -> TopicSeries:
        """A series whose history is ``counts``/``negatives``, one window each from the one that
        starts at ``window_start`` (say, from the store after a restart), added without alerts."""
        if len(counts) != len(negatives):
            raise InvalidArgument(f"counts, negatives: {len(counts)} and {len(negatives)} windows; allowed: as many")
        series = cls(settings)
        if counts:
            series.first_index = series.window_index(window_start)
            series.counts, series.negatives = [int(c) for c in counts], [int(n) for n in negatives]
            series._trim()
        return series

    @property
    def next_index(self) -> int | None:
        return None if self.first_index is None else self.first_index + len(self.counts)

    def window_index(self, window_start: float) -> int:
        return int(np.floor(window_start / self.settings.window_s + 1e-9))

    def forecast(self, window_start: float, count: int | None = None) -> Forecast | None:
        """The forecast of the window starting at ``window_start`` (the next one, or a later one with
        the windows in between empty), or None while the history is shorter than ``warmup_windows``.
        The share's bounds are those at ``count`` texts: pass the observed count when it is known
        (``observe`` does); by default, the forecast count, rounded."""
        index = self._checked_index(window_start)
        models = self._models(index)
        if models is None:
            return None
        z = NormalDist().inv_cdf(self.settings.interval)
        spread = np.sqrt(models.volume_var)
        expected_count = float(np.expm1(models.volume_mean))
        at_count = max(int(round(expected_count)), 0) if count is None else count
        share, low, high = self._share_bounds(models, at_count)
        return Forecast(
            count=max(expected_count, 0.0),
            count_low=max(float(np.expm1(models.volume_mean - z * spread)), 0.0),
            count_high=float(np.expm1(models.volume_mean + z * spread)),
            share=share,
            share_low=low,
            share_high=high,
            model=f"volume {self._name(models.volume)}, share {self._name(models.share)}",
        )

    def observe(self, window_start: float, count: int, negatives: int) -> list[Surge]:
        """Check the closed window against the forecast made before it, then add it to the history."""
        return self.judge(window_start, count, negatives)[1]

    def judge(self, window_start: float, count: int, negatives: int) -> tuple[Forecast | None, list[Surge]]:
        """``observe``, also returning the forecast the window was checked against (None
        during the warm-up), so that a caller keeping it computes it once."""
        if count < 0 or not 0 <= negatives <= count:
            raise InvalidArgument(f"count, negatives: {count}, {negatives}; allowed: 0 <= negatives <= count")
        index = self._checked_index(window_start)
        forecast = self.forecast(window_start, count)
        surges = [] if forecast is None else self._surges(forecast, self._models(index), count, negatives)
        if self.first_index is None:
            self.first_index = index
        if index != self.next_index:
            self._judged = []  # a span is of consecutive windows
        self._add_empty_until(index)
        self.counts.append(count)
        self.negatives.append(negatives)
        self._trim()
        return forecast, surges

    def _surges(self, forecast: Forecast, models: _Models, count: int, negatives: int) -> list[Surge]:
        rate, pmf = negatives_pmf(models, count)
        surges = self._window_surges(forecast, _Judged(count, negatives, rate, pmf, alerted=False))
        judged = _Judged(count, negatives, rate, pmf, alerted=any(s.kind == "negative_share" for s in surges))
        keep = self.settings.span_windows - 1
        self._judged = [*self._judged, judged][-keep:] if keep else []
        return surges

    def _window_surges(self, forecast: Forecast, window: _Judged) -> list[Surge]:
        if window.count < self.settings.min_count:
            return []  # a handful of texts is no surge, of either kind
        surges = []
        if window.count > forecast.count_high:
            surges.append(Surge("volume", window.count, forecast.count, forecast.count_low, forecast.count_high))
        share = window.negatives / window.count
        if share > forecast.share_high:
            surges.append(Surge("negative_share", share, forecast.share, forecast.share_low, forecast.share_high))
        elif window.negatives >= window.rate * window.count:
            surges += self._span_surge(window)
        return surges

    def _span_surge(self, latest: _Judged) -> list[Surge]:
        """A negative-share surge over the latest 2..span_windows windows together (a gradual
        surge that no window shows alone), the shortest span that shows it; spans over a window
        that alerted already are not judged again."""
        for span in range(2, self.settings.span_windows + 1):
            windows = [*self._judged[-(span - 1) :], latest]
            if len(windows) < span or any(window.alerted for window in windows[:-1]):
                return []
            count = sum(window.count for window in windows)
            pmf = windows[0].pmf
            for window in windows[1:]:
                pmf = np.convolve(pmf, window.pmf)
            negatives = sum(window.negatives for window in windows)
            high = quantile(pmf, self.settings.interval)
            if negatives > high:
                expected = sum(window.rate * window.count for window in windows) / count
                low = quantile(pmf, 1 - self.settings.interval)
                return [Surge("negative_share", negatives / count, expected, low / count, high / count, span)]
        return []

    def _checked_index(self, window_start: float) -> int:
        if not math.isfinite(window_start):
            raise InvalidArgument(f"window_start: {window_start}; allowed: a finite time in seconds")
        index = self.window_index(window_start)
        if self.next_index is not None and index < self.next_index:
            raise InvalidArgument(
                f"window_start: {window_start} is window {index}, already closed; allowed: window {self.next_index} or later"
            )
        return index

    def _add_empty_until(self, index: int) -> None:
        missing = index - self.next_index
        if missing >= self.settings.history_windows:  # a long silence: the fits read only empty windows
            self.first_index, self.counts, self.negatives = index, [], []
            missing = self.settings.history_windows
            self.first_index -= missing
        self.counts.extend([0] * missing)
        self.negatives.extend([0] * missing)

    def _trim(self) -> None:
        extra = len(self.counts) - self.settings.history_windows
        if extra > 0:
            del self.counts[:extra], self.negatives[:extra]
            self.first_index += extra
        self._cached = None

    def _models(self, index: int) -> _Models | None:
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, self._fit(index))
        return self._cached[1]

    def _fit(self, index: int) -> _Models | None:
        """The models fitted on the history, with the windows before ``index`` that were not
        observed taken as empty, and their forecasts for window ``index``."""
        if self.first_index is None:
            return None
        gap = min(index - self.next_index, self.settings.history_windows)
        counts = np.array(self.counts + [0] * gap, dtype=float)[-self.settings.history_windows :]
        negatives = np.array(self.negatives + [0] * gap, dtype=float)[-self.settings.history_windows :]
        if len(counts) < self.settings.warmup_windows:
            return None
        phases = np.arange(index - len(counts), index + 1)  # one more: the forecast window's
        volume = fit_ar(np.log1p(counts), phases, self.settings)
        mean_share = float(np.clip((negatives.sum() + 0.5) / (counts.sum() + 1.0), 1e-4, 1 - 1e-4))
        prior = self.settings.prior_texts
        shares = logit((negatives + prior * mean_share) / (counts + prior))
        share = fit_ar(shares, phases, self.settings)
        if volume is None or share is None:
            return None
        order = self.settings.max_order
        volume_mean, volume_fit_var = volume.predict(np.log1p(counts[-order:]), int(phases[-1]))
        poisson = max(np.expm1(volume_mean), 0.0) / (1 + max(np.expm1(volume_mean), 0.0)) ** 2
        share_mean, share_fit_var = share.predict(shares[-order:], int(phases[-1]))
        fitted = shares[order:][share.kept] - share.residuals
        kept_counts, kept_negatives = counts[order:][share.kept], negatives[order:][share.kept]
        shift = rate_shift(fitted, kept_counts, kept_negatives)
        tau2 = extra_binomial_variance(expit(fitted + shift), kept_counts, kept_negatives)
        return _Models(
            volume=volume,
            share=share,
            mean_share=mean_share,
            tau2=tau2,
            volume_mean=volume_mean,
            volume_var=max(volume.sigma2, poisson) + volume_fit_var,
            share_mean=share_mean + shift,
            share_var=tau2 + share_fit_var,
        )

    def _share_bounds(self, models: _Models, count: int) -> tuple[float, float, float]:
        """The expected share and the negatives' quantiles over ``count`` texts, as shares."""
        expected, pmf = negatives_pmf(models, count)
        if count == 0:
            return expected, 0.0, 1.0
        interval = self.settings.interval
        return expected, quantile(pmf, 1 - interval) / count, quantile(pmf, interval) / count

    def _name(self, fit: ArFit) -> str:
        if not fit.period:
            return f"AR({fit.order})"
        span = fit.period * self.settings.window_s
        season = {7 * DAY_S: "weekly", DAY_S: "daily"}.get(span, f"period {fit.period}")
        return f"AR({fit.order})+{season}"
