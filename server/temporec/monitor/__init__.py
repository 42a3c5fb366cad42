"""Monitoring a stream of texts: each classified by a loaded model (sentiment, in the
``finance`` domain), tagged with its domain's topics, kept in the store, and counted per
topic in windows of time; each topic's series forecast by its own model, and an alert
raised when a window leaves the forecast (docs/finance.md).

    forecast   per-topic AR forecasts of the next window, and surges (pure)
    windows    the topics' open and closed windows, driven by the texts' time (pure)
    alerts     what an alert holds, as the store keeps it
    settings   the [monitor] table of the server's configuration
    monitor    the data plane: ingest, watch, acknowledge, series (the gRPC Monitor service's core)
"""
