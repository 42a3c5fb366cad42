"""The monitor's settings: the server's ``[monitor]`` table (serving/config.py reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporec.monitor.forecast import ForecastSettings


@dataclass(frozen=True)
class MonitorSettings:
    """The server's ``[monitor]`` table (docs/finance.md)."""

    domain: str = "finance"  # whose model classifies and whose topics tag
    head: str = ""  # selects the model, as a Recommend request would; "": the domain's default
    model_version: str = ""
    negative_label: str = "negative"  # the catalog item (class) that counts as negative
    alert_texts: int = 5  # texts an alert carries: its window's most confidently negative
    forecast: ForecastSettings = field(default_factory=ForecastSettings)
