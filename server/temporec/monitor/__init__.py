"""Monitoring a stream of classified texts per topic: per-topic forecasts of the next window and
surge alerts (``forecast``)."""
