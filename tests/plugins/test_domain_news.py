"""The news domain: the impression split (no test click in training), publication-date
times, the staleness rule, and a trained text-only model served on an impression list."""

import asyncio
from pathlib import Path

import pytest
import torch

import temporec_plugins.domains.news as news_plugin
import temporec_plugins.heads.lstm as lstm_plugin
from conftest import TinyEncoder
from temporec.contract.options import read_options
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Dataset, Event, Query
from temporec.model.artifacts import load_model
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig, train
from temporec.training.protocols import evaluate_impressions, model_scorer
from temporec_plugins.domains.news import NewsDomain
from temporec_plugins.domains.news.reader import load_news
from temporec_plugins.heads.lstm import LSTMHead

DAY = 86_400


def write_nemig(directory: Path, users: int = 12) -> Path:
    """Articles n0..n29 published a day apart; user u reads the articles of topic u % 3
    and, in each of 3 impressions, clicks the next one of its topic."""
    news = "".join(
        f"n{i}\tsite{i % 3}.org\t{1 + i % 28:02d}.0{1 + i // 28}.2022\tTopic {i % 3} story {i}\tAbout topic {i % 3}\thttps://x\n"
        for i in range(30)
    )
    rows = []
    for user in range(users):
        topic = user % 3
        own = [f"n{topic + 3 * k}" for k in range(10)]
        history = " ".join(own[:3])
        for shown in range(3):
            others = [f"n{(topic + 1 + j) % 3 + 3 * shown}" for j in range(2)]
            rows.append(
                f"{100 * user + shown}\tU{user}\t{history}\t{own[3 + shown]}-1 " + " ".join(f"{o}-0" for o in others)
            )
    (directory / "news.tsv").write_text(news, encoding="utf-8")
    (directory / "behaviors.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return directory


def test_each_users_last_impression_is_the_test_and_never_trained_on(tmp_path):
    domain = NewsDomain()
    data = load_news(write_nemig(tmp_path))
    split = domain.split(data)
    assert len(split.test) == 12 and len(split.train) == 12
    train_u0 = [e.item_id for e in split.train["U0"]]
    assert train_u0 == ["n0", "n3", "n6", "n9", "n12"]  # history, then the clicks of impressions 1 and 2
    passed = [e.passed_over for e in split.train["U0"]]
    assert passed == [(), (), (), ("n1", "n2"), ("n4", "n5")]  # each click's unclicked impression neighbours
    assert split.test[0].candidates[0] == "n15" and "n15" not in train_u0
    assert split.test[0].history == split.train["U0"]
    times = [e.timestamp for e in split.train["U0"]]
    assert times == sorted(times) and times[0] > 0
    assert domain.load_dataset(str(tmp_path)).sequences == split.train


def test_minds_dev_part_is_the_test(tmp_path):
    for part in ("MINDsmall_train", "MINDsmall_dev"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "news.tsv").write_text("".join(f"N{i}\tc\ts\tT{i}\tA\tu\t[]\t[]\n" for i in range(4)))
    (tmp_path / "MINDsmall_train" / "behaviors.tsv").write_text("1\tU1\t11/12/2019 2:14:46 PM\tN0\tN1-1 N2-0\n")
    (tmp_path / "MINDsmall_dev" / "behaviors.tsv").write_text("2\tU1\t11/15/2019 2:14:46 PM\tN0 N1\tN3-1 N2-0\n")
    split = NewsDomain().split(load_news(tmp_path))
    assert [e.item_id for e in split.train["U1"]] == ["N0", "N1"]
    assert [c.candidates for c in split.test] == [["N3", "N2"]]
    assert split.train["U1"][1].timestamp == 1573568086.0  # the training impression's time


def stale_rules(history, candidates=(), **options):
    catalog = Catalog(["old", "new", "undated"], ["a", "b", "c"], {"published": [str(0), str(100 * DAY), ""]})
    query = Query("news", history, candidates=list(candidates), options=options or None)
    query.options = read_options(query, NewsDomain.request_options)  # as the service hands them over
    allowed = torch.ones(3, dtype=torch.bool)
    rules = NewsDomain().apply_rules(query, [], catalog, allowed)
    return [item for item, ok in zip(catalog.item_ids, allowed.tolist()) if ok], rules


def test_stale_articles_are_left_out_of_catalog_candidates_only():
    history = [Event("x", "click", 101 * DAY)]
    assert stale_rules(history) == (["new", "undated"], ["exclude_stale"])
    assert stale_rules(history, max_age_days="0") == (["old", "new", "undated"], [])
    assert stale_rules(history, candidates=["old", "new"]) == (["old", "new", "undated"], [])
    assert stale_rules([Event("x", "click")]) == (["old", "new", "undated"], [])  # no time to measure age from


def test_news_models_read_text_and_learn_from_impressions_as_negatives_never_as_targets():
    config = NewsDomain().training_config(None, TrainConfig())
    assert not config.use_ids and config.use_text and config.target_weights == {"impression": 0.0}
    assert config.passed_over_weight == 20.0
    assert NewsDomain().training_config(None, TrainConfig(passed_over_weight=0.0)).passed_over_weight == 0.0


def test_the_split_rates_each_article_by_its_training_impressions_and_models_read_it(tmp_path):
    data = load_news(write_nemig(tmp_path))
    split = NewsDomain().split(data)
    rates = dict(zip(split.catalog.item_ids, split.catalog.features["click_rate"]))
    assert rates["n28"] == "unshown" and rates["n9"] > rates["n1"]  # clicked each time, and never
    assert split.catalog.features["publisher"] == data.catalog.features["publisher"]
    dataset = NewsDomain().load_dataset(str(tmp_path))
    assert dataset.catalog.features["click_rate"] == split.catalog.features["click_rate"]
    assert NewsDomain().training_config(dataset, TrainConfig()).item_features == ["click_rate"]
    chosen = NewsDomain().training_config(dataset, TrainConfig(item_features=["publisher"]))
    assert chosen.item_features == ["publisher"]


def test_the_click_rate_baseline_counts_clicks_per_showing(tmp_path):
    data = load_news(write_nemig(tmp_path))
    split = NewsDomain().split(data)
    rates = NewsDomain().baselines(data, split)["click-rate"]([[]])[0]
    index = data.catalog.index
    # n9 was clicked each time it was shown (topic-0 users' first impressions); n1 and n2
    # were shown as often as each other beside clicks, and never clicked.
    assert rates[index["n9"]] > rates[index["n1"]] and rates[index["n1"]] == rates[index["n2"]]
    assert rates[index["n29"]] == rates[index["n28"]]  # never shown: the overall rate


@pytest.mark.slow
def test_a_trained_news_model_ranks_an_impression_and_is_served_on_it(tmp_path):
    domain = NewsDomain()
    (tmp_path / "data").mkdir()
    data = load_news(write_nemig(tmp_path / "data"))
    split = domain.split(data)
    dataset = Dataset(data.name, data.catalog, split.train)
    embeddings = TinyEncoder().encode(data.catalog.texts)
    config = domain.training_config(dataset, TrainConfig(dim=16, max_len=16, epochs=3, batch_size=4))
    path = train(
        dataset,
        LSTMHead,
        embeddings,
        domain=domain,
        encoder_name="tiny-hash",
        encoder_model_id=TinyEncoder.model_id,
        out_dir=tmp_path / "models",
        config=config,
    )
    loaded = load_model(path, {"lstm": LSTMHead})
    rankers = domain.baselines(data, split, embeddings)
    rankers["lstm"] = model_scorer(loaded.model, loaded.catalog, loaded.manifest.actions, 16, loaded.popularity)
    results, skipped = evaluate_impressions(rankers, split.test, data.catalog)
    assert skipped == 0 and set(results) == {"popularity", "click-rate", "recency", "bm25", "frozen-encoder", "lstm"}
    assert all(0 <= metrics["auc"] <= 1 for metrics in results.values())

    registry = load_registry(extra_plugins={"news": news_plugin, "lstm": lstm_plugin}, env={"TEMPOREC_PLUGINS": ""})
    case = split.test[0]

    async def ask():
        service = RecommenderService(registry, tmp_path / "models", device="cpu")
        await service.start()
        try:
            return await service.recommend(Query("news", case.history, candidates=case.candidates + ["n0"], k=10))
        finally:
            await service.close()

    answer = asyncio.run(ask())
    assert answer.candidate_source == "request" and answer.rules_applied == ["exclude_history"]
    assert sorted(item.item_id for item in answer.items) == sorted(case.candidates)  # n0 was clicked before
