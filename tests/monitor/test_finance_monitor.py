"""The monitor with the real parts it is built for: a ``finance`` model trained here by
``temporec train`` over the bundled MiniLM (frozen: seconds on a CPU), the finance
domain's topic tagger, a live server and an SQLite store."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import run_command
from temporec.cli import train as train_command
from temporec.contract.registry import load_registry
from temporec.monitor.forecast import ForecastSettings
from temporec.monitor.settings import MonitorSettings
from temporec_client import Event, MonitoredText, TemporecClient

pytestmark = pytest.mark.slow

COMPANIES = ["Boeing", "Nokia", "Tesla", "Airbus", "Apple", "Nissan"]
SENTENCES = {
    "positive": ["{} reported record profit and strong sales growth", "{} won a large new order"],
    "negative": ["{} warned of a heavy loss and will cut jobs", "Shares in {} plunged after a profit warning"],
    "neutral": ["{} will publish its interim report on Thursday", "{} has its headquarters in the city"],
}


@pytest.fixture(scope="module")
def finance_models(tmp_path_factory):
    data = tmp_path_factory.mktemp("phrasebank") / "Sentences_AllAgree.txt"
    lines = [f"{s.format(c)} .@{label}" for label, ss in SENTENCES.items() for s in ss for c in COMPANIES]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    root = tmp_path_factory.mktemp("models")
    argv = ["train", "--domain", "finance", "--data", str(data), "--out", str(root), "--dim", "16"]
    argv += ["--epochs", "30", "--lr", "1e-2", "--device", "cpu", "--threads", "1"]
    assert run_command(train_command, argv) == 0
    return root


def test_headlines_are_classified_and_followed_per_topic(finance_models, start_grpc_server, tmp_path):
    forecast = ForecastSettings(window_s=3600, max_order=1, seasons=(), warmup_windows=4, history_windows=20)
    settings = MonitorSettings(domain="finance", forecast=forecast)
    fields = {"default_encoder": "local", "store": f"sqlite://{tmp_path}/monitor.db", "monitor": settings}
    texts = [
        MonitoredText(
            f"{hour}-{c}", SENTENCES["negative" if hour == 2 else "neutral"][0].format(c) + " .", 3600 * hour + n
        )
        for hour in range(1, 4)
        for n, c in enumerate(COMPANIES)
    ]
    with start_grpc_server(load_registry(), finance_models, **fields) as server:
        with TemporecClient(server.target, timeout=120) as client:
            ingested = client.ingest([texts])
            boeing, topics = client.topic_series("company:boeing")
            served = [client.recommend("finance", [Event("", "user", text=t.text)], k=1).item_ids[0] for t in texts]
    assert ingested.stored == 18 and ingested.labels == Counter(served)  # as Recommend classifies each
    assert served[6:12].count("negative") >= 5 and served.count("negative") <= 7  # and the model learned
    assert {"all", "company:boeing", "company:tesla", "sector:travel"} <= set(topics)
    negatives = [int(served[i] == "negative") for i in (0, 6)]  # Boeing's texts of hours 1 and 2
    assert [(w.count, w.negatives) for w in boeing] == [(1, negatives[0]), (1, negatives[1])]  # hour 3 is open
