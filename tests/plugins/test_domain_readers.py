"""The domains' data readers (Taobao, MIND/NeMig, StackFAQ/BANKING77/conversations) on
small generated files, and on the real shared data when it is there."""

import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from temporec.data import DataError, load_dataset
from temporec.data.taobao import load_taobao
from temporec_plugins.domains.customer_service.reader import (
    load_conversation_data,
    split_by_position,
)
from temporec_plugins.domains.news.reader import load_news

SHARED = SHARED_DATA


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- Taobao -----------------------------------------------------------------------------

TAOBAO = """user_id,item_id,category_id,behavior_type,timestamp
1,10,100,pv,1511544070
1,11,100,cart,1511544000
1,10,999,buy,1511544090
2,12,200,fav,1511544000
"""


def test_taobao_events_become_retail_actions_in_time_order(tmp_path):
    dataset = load_taobao(write(tmp_path / "UserBehavior.csv", TAOBAO))
    assert [(e.item_id, e.action) for e in dataset.sequences["1"]] == [
        ("11", "cart"),
        ("10", "view"),
        ("10", "purchase"),
    ]
    assert dataset.sequences["2"][0].action == "favourite"
    assert dataset.catalog.item_ids == ["10", "11", "12"] and dataset.catalog.texts == ["", "", ""]
    assert dataset.catalog.features == {"category": ["100", "100", "200"]}  # item 10 keeps its first category


def test_taobao_reads_the_original_headerless_file_and_is_found_by_the_dispatcher(tmp_path):
    write(tmp_path / "user_behavior_sample.csv", TAOBAO.split("\n", 1)[1])
    by_directory, by_file = load_dataset(tmp_path), load_dataset(tmp_path / "user_behavior_sample.csv")
    assert len(by_directory.sequences) == len(by_file.sequences) == 2


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("1,10,100,click,5", "behavior_type 'click'"),
        ("1,10,100,pv", "expected 5 fields"),
        ("1,10,100,pv,soon", "not Unix seconds"),
    ],
)
def test_taobao_errors_name_the_file_line_and_what_is_allowed(tmp_path, row, problem):
    path = write(tmp_path / "UserBehavior.csv", TAOBAO + row + "\n")
    with pytest.raises(DataError, match=rf"UserBehavior.csv:6: .*{problem}"):
        load_taobao(path)


# -- MIND and NeMig ---------------------------------------------------------------------

MIND_NEWS = "".join(f"N{i}\tnews\tsub{i % 2}\tTitle {i}\tAbstract {i}\thttps://x/{i}\t[]\t[]\n" for i in range(1, 6))
MIND_BEHAVIORS = (
    "1\tU1\t11/12/2019 2:14:46 PM\tN1 N99 N2\tN3-1 N4-0 N98-0\n2\tU1\t11/13/2019 9:00:00 AM\tN1 N2\tN5-1 N4-0\n"
)


def test_mind_reader_keeps_times_and_labels_and_counts_ids_without_news(tmp_path):
    write(tmp_path / "news.tsv", MIND_NEWS)
    write(tmp_path / "behaviors.tsv", MIND_BEHAVIORS)
    data = load_news(tmp_path)
    assert data.layout == "mind" and data.dropped == 2  # N99 in a history, N98 in an impression
    first = data.impressions[0]
    assert first.history == ["N1", "N2"] and first.candidates == ["N3", "N4"] and first.labels == [1, 0]
    assert first.time == 1573568086.0 and first.clicked == ["N3"]
    assert data.catalog.texts[0] == "Title 1. Abstract 1"
    assert data.catalog.features["subcategory"][:2] == ["sub1", "sub0"]


def test_nemig_reader_dates_articles_and_has_no_impression_times(tmp_path):
    write(tmp_path / "news.tsv", "news_0\tsite.org\t24.05.2022\tBorder news\t\thttps://x\n")
    write(tmp_path / "behaviors.tsv", "7\tU9\t\tnews_0-1\n")
    data = load_news(tmp_path)
    assert data.layout == "nemig" and data.impressions[0].time == 0.0
    assert data.catalog.features == {"publisher": ["site.org"], "published": ["1653350400"]}
    assert data.catalog.texts == ["Border news"]


def test_a_mind_download_with_parts_tags_each_impression(tmp_path):
    for part in ("MINDsmall_train", "MINDsmall_dev"):
        write(tmp_path / part / "news.tsv", MIND_NEWS)
        write(tmp_path / part / "behaviors.tsv", MIND_BEHAVIORS)
    data = load_news(tmp_path)
    assert [i.part for i in data.impressions] == ["dev", "dev", "train", "train"]
    assert len(data.catalog) == 5  # the parts' news rows are merged


@pytest.mark.parametrize(
    ("news", "behaviors", "problem"),
    [
        (
            MIND_NEWS,
            "1\tU1\t11/12/2019 2:14:46 PM\tN1\tN3\n",
            r"behaviors.tsv:1: impression 'N3' is not <news id>-<0\|1>",
        ),
        (MIND_NEWS, "1\tU1\tyesterday\tN1\tN3-1\n", "behaviors.tsv:1: time 'yesterday'"),
        ("N1\tTitle\n", "1\tU1\t\tN1-1\n", "news.tsv:1: expected 8 .MIND. or 6 .NeMig."),
    ],
)
def test_news_errors_name_the_file_and_line(tmp_path, news, behaviors, problem):
    write(tmp_path / "news.tsv", news)
    write(tmp_path / "behaviors.tsv", behaviors)
    with pytest.raises(DataError, match=problem):
        load_news(tmp_path)


# -- customer service -------------------------------------------------------------------


def test_stackfaq_items_are_answers_and_queries_split_by_position(tmp_path):
    threads = [
        {
            "rephr": [f"query {t}.{q}" for q in range(6)] + ["*"],
            "question": f"Question {t}?",
            "answer": [f"A{t}a", f"A{t}b"],
        }
        for t in range(2)
    ]
    threads.append({"rephr": ["lonely"], "question": "Q", "answer": "only one"})  # a single answer as a string
    write(tmp_path / "stackExchange-FAQ.json", json.dumps({"root": {"qapair": threads}}))
    data = load_conversation_data(tmp_path)
    assert data.catalog.item_ids == ["0-0", "0-1", "1-0", "1-1", "2-0"]
    assert data.catalog.texts[0] == "Question 0? A0a" and data.catalog.features["thread"][-1] == "2"
    assert [len(data.train), len(data.valid), len(data.test)] == [6, 2, 5]  # the "*" placeholder is dropped
    assert data.test[0].turns[0].text == "query 0.0" and data.test[0].replies == ["0-0", "0-1"]
    assert [split_by_position(i) for i in range(6)] == ["test", "valid", "train", "train", "train", "test"]


def test_banking77_has_one_reply_template_per_intent(tmp_path):
    write(tmp_path / "categories.json", json.dumps(["card_arrival", "lost_card"]))
    rows = "".join(f"where is my card {i}?,card_arrival\n" for i in range(10))
    write(tmp_path / "train.csv", "text,category\n" + rows + '"I lost it, help",lost_card\n')
    write(tmp_path / "test.csv", "text,category\nlost my card,lost_card\n")
    data = load_conversation_data(tmp_path / "train.csv")
    assert data.catalog.texts == ["card arrival", "lost card"]
    assert [len(data.train), len(data.valid), len(data.test)] == [10, 1, 1]  # every 10th training row validates
    assert data.train[-1].turns[0].text == "I lost it, help" and data.test[0].replies == ["lost_card"]
    write(tmp_path / "test.csv", "text,category\nhello,greeting\n")
    with pytest.raises(DataError, match=r"test.csv:2: category 'greeting' is not in categories.json"):
        load_conversation_data(tmp_path)


def test_generic_conversations_have_turns_by_role_and_explicit_splits(tmp_path):
    write(tmp_path / "replies.csv", "item_id,text\nreset,How to reset your password\nrefund,Refunds take 5 days\n")
    conversation = {
        "id": "c1",
        "split": "test",
        "turns": [
            {"role": "user", "text": "I cannot log in", "timestamp": 10},
            {"role": "agent", "item_id": "reset"},
            {"role": "user", "text": "still locked", "timestamp": 30},
        ],
        "replies": ["reset"],
    }
    write(tmp_path / "conversations.jsonl", json.dumps(conversation) + "\n")
    data = load_conversation_data(tmp_path)
    turns = data.test[0].turns
    assert [(e.action, e.item_id, e.text) for e in turns] == [
        ("user", "", "I cannot log in"),
        ("agent", "reset", ""),
        ("user", "", "still locked"),
    ]
    assert turns[2].timestamp == 30.0
    conversation["turns"][1]["role"] = "bot"
    write(tmp_path / "conversations.jsonl", json.dumps(conversation) + "\n")
    with pytest.raises(DataError, match=r"conversations.jsonl:1: turns\[1\].role 'bot'; allowed: 'agent', 'user'"):
        load_conversation_data(tmp_path)


def test_customer_service_data_of_an_unknown_layout_is_refused(tmp_path):
    with pytest.raises(DataError, match="not customer-service data"):
        load_conversation_data(tmp_path)


# -- the real data ----------------------------------------------------------------------


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared data set absent: {path}")
    return path


def test_real_taobao_sample_has_its_documented_size():
    dataset = load_taobao(shared("taobao-userbehavior"))
    assert (len(dataset.sequences), len(dataset.catalog), sum(map(len, dataset.sequences.values()))) == (
        982,
        64418,
        99918,
    )
    assert len(set(dataset.catalog.features["category"])) == 3127


@pytest.mark.parametrize(("language", "news", "impressions"), [("en", 10814, 15000), ("de", 7346, 17160)])
def test_real_nemig_has_every_id_in_its_news(language, news, impressions):
    data = load_news(shared(f"nemig/{language}"))
    assert (len(data.catalog), len(data.impressions), data.dropped) == (news, impressions, 0)


def test_real_mind_sample_reads_despite_its_missing_news_rows():
    data = load_news(shared("mind-small-sample"))
    assert data.layout == "mind" and len(data.catalog) == 2000 and len(data.impressions) == 5000
    assert data.dropped > 0


def test_real_faq_sets_have_their_documented_size():
    stackfaq = load_conversation_data(shared("stackfaq"))
    assert len(stackfaq.catalog) == 719
    assert len(stackfaq.train) + len(stackfaq.valid) + len(stackfaq.test) == 1249  # 1,375 minus "*" placeholders
    banking = load_conversation_data(shared("banking77"))
    assert len(banking.catalog) == 77 and len(banking.train) + len(banking.valid) == 10003 and len(banking.test) == 3080
