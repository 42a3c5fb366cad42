"""``temporec train`` and ``temporec eval`` for the domains that train and measure their
own way (``Domain.train`` / ``Domain.evaluate``): customer service (conversations,
replies ranked), news (impressions) and retail (the next purchase), on small generated
data and on the shared BANKING77 copy. The texts are embedded by the example plugin's
``hashing`` encoder (tests/plugin_example, installed with pip): real, offline and fast.
"""

import asyncio
import csv
import json
import random
from pathlib import Path

import pytest
from test_domain_news import write_nemig

from conftest import SHARED_DATA
from temporec.cli import main
from temporec.contract.registry import load_registry
from temporec.contract.types import Event, Query
from temporec.model.artifacts import read_manifest
from temporec.serving.service import RecommenderService

BANKING77 = SHARED_DATA / "banking77"
HASHING_MODEL_ID = "hashing-v1-256-pairs"

#: reply id -> (reply text, words a customer uses for it)
TOPICS = {
    "card_arrival": ("Your new card arrives by post within five working days.", ["card", "arrive", "post", "delivery"]),
    "refund": ("Refunds reach your account within ten days of the return.", ["refund", "money", "back", "return"]),
    "password": ("Reset your password from the login page link.", ["password", "login", "reset", "locked"]),
    "exchange_rate": ("We convert at the daily rate shown in the app.", ["exchange", "rate", "currency", "euros"]),
    "top_up": ("Top up with a bank transfer or a debit card in the app.", ["top", "up", "balance", "add"]),
}
GREETING = ("greeting", "Hello! How can I help you today?")
FILLER = ["please", "hi", "hello", "i", "need", "help", "with", "my", "the", "today", "thanks", "urgent"]


@pytest.fixture(scope="module")
def hashing_encoder(example_plugin_path):
    """The example plugin on sys.path, so that its entry points (the ``hashing`` encoder) load."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(example_plugin_path))
        assert "hashing" in load_registry().encoders
        yield "hashing"


def temporec(capsys, *argv: str) -> str:
    """Run the ``temporec`` command in this process; its stdout."""
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    return captured.out


def training(data: Path, out: Path, domain: str, *extra: str) -> list[str]:
    return ["train", "--domain", domain, "--data", str(data), "--out", str(out), "--encoder", "hashing",
            "--cache-dir", str(out / "cache"), "--device", "cpu", "--threads", "1", *extra]  # fmt: skip


def evaluate_json(capsys, model: Path, *extra: str) -> dict:
    return json.loads(temporec(capsys, "eval", "--model", str(model), "--device", "cpu", "--json", *extra))


def serve(models: Path, query: Query):
    """Answer ``query`` with the models under ``models``, as ``temporec serve`` would."""

    async def ask():
        service = RecommenderService(load_registry(), models, device="cpu")
        await service.start()
        try:
            return await service.recommend(query)
        finally:
            await service.close()

    return asyncio.run(ask())


# -- customer service ---------------------------------------------------------------------


def write_conversations(directory: Path) -> Path:
    """replies.csv and conversations.jsonl: each conversation asks about one topic in its
    words (two of them, with filler), some over two user turns after a greeting the agent
    sent; per topic 2 test, 2 valid and 8 training conversations."""
    rng = random.Random(0)
    with open(directory / "replies.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "text"])
        writer.writerows([GREETING, *((reply, text) for reply, (text, _) in TOPICS.items())])
    lines = []
    for reply, (_, words) in TOPICS.items():
        for number in range(12):
            asked = " ".join(rng.sample(FILLER, 3) + rng.sample(words, 2))
            turns = [{"role": "user", "text": asked}]
            if number % 2:
                turns = [{"role": "agent", "item_id": GREETING[0]}, *turns, {"role": "agent", "text": "Let me look."},
                         {"role": "user", "text": " ".join(rng.sample(FILLER, 2) + rng.sample(words, 1))}]  # fmt: skip
            split = "test" if number < 2 else "valid" if number < 4 else "train"
            lines.append(json.dumps({"id": f"{reply}-{number}", "turns": turns, "replies": [reply], "split": split}))
    (directory / "conversations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def reply_model(tmp_path_factory, hashing_encoder) -> Path:
    root = tmp_path_factory.mktemp("customer-service")
    data = write_conversations(root)
    argv = training(data, root / "models", "customer_service", "--epochs", "40", "--patience", "40", "--dim", "32",
                    "--max-len", "8", "--batch-size", "8", "--lr", "0.01")  # fmt: skip
    assert main(argv) == 0
    return next((root / "models").glob("customer_service-lstm-*"))


def test_customer_service_trains_on_conversations_through_the_cli(reply_model):
    manifest = read_manifest(reply_model)
    assert (manifest.domain, manifest.head, manifest.encoder) == ("customer_service", "lstm", "hashing")
    assert manifest.encoder_model_id == HASHING_MODEL_ID and manifest.actions == ["user", "agent"]
    assert {"test.accuracy@1", "test.p@3", "test.mrr", "valid.mrr"} <= set(manifest.metrics)


def test_customer_service_eval_ranks_replies_beside_its_baselines(reply_model, capsys):
    report = evaluate_json(capsys, reply_model)
    metrics = report["metrics"]
    assert report["same_data_as_training"] and report["users"] == 10 and report["dropped_events"] == 0
    for ranker in ("", "popularity.", "bm25.", "frozen-encoder."):
        assert {f"{ranker}test.{m}" for m in ("accuracy@1", "accuracy@3", "p@1", "p@3", "mrr")} <= set(metrics)
    # the same protocol and cases as at the end of training
    assert metrics["test.accuracy@1"] == read_manifest(reply_model).metrics["test.accuracy@1"]
    baselines = [metrics[f"{ranker}.test.accuracy@1"] for ranker in ("popularity", "bm25", "frozen-encoder")]
    assert metrics["test.accuracy@1"] > max(baselines)

    table = temporec(capsys, "eval", "--model", str(reply_model), "--device", "cpu")
    assert "ACCURACY@1" in table and any(line.split()[:2] == ["test", "frozen-encoder"] for line in table.splitlines())


def compacted(capsys, model: Path, *extra: str) -> Path:
    """``temporec compact`` of ``model``: the compact copy's path."""
    return Path(temporec(capsys, "compact", "--model", str(model), *extra).strip().splitlines()[-1])


def test_a_compact_reply_model_evaluates_as_its_full_model(reply_model, capsys, tmp_path):
    """A compact artifact holds its item vectors only: the frozen-encoder baseline embeds
    the replies again, with the encoder the model was trained with."""
    compact = compacted(capsys, reply_model, "--out", str(tmp_path / "compact"), "--dtype", "float32")
    assert evaluate_json(capsys, compact)["metrics"] == evaluate_json(capsys, reply_model)["metrics"]


def test_customer_service_eval_needs_the_models_vector_space(reply_model, capsys):
    code = main(["eval", "--model", str(reply_model), "--encoder-option", "dim=64"])
    assert code == 2
    assert f"trained on '{HASHING_MODEL_ID}' embeddings" in capsys.readouterr().err


def test_the_cli_trained_reply_model_serves_recommend(reply_model):
    turns = [Event(GREETING[0], "agent"), Event("", "user", text="hello my refund money is not back")]
    answer = serve(reply_model.parent, Query("customer_service", turns, k=3))
    assert answer.head == "lstm" and answer.encoder == "hashing"
    assert answer.items[0].item_id == "refund" and GREETING[0] not in [item.item_id for item in answer.items]


@pytest.mark.slow
@pytest.mark.skipif(not BANKING77.is_dir(), reason=f"needs the BANKING77 copy in {BANKING77}")
def test_customer_service_trains_and_evaluates_on_banking77(tmp_path, hashing_encoder, capsys):
    argv = training(BANKING77, tmp_path, "customer_service", "--epochs", "1", "--dim", "32", "--lr", "0.01")
    path = Path(temporec(capsys, *argv).strip().splitlines()[-1])
    report = evaluate_json(capsys, path, "--cache-dir", str(tmp_path / "cache"))
    metrics = report["metrics"]
    assert report["users"] == 3080 and report["data"] == str(BANKING77.resolve())
    assert metrics["test.accuracy@1"] == read_manifest(path).metrics["test.accuracy@1"]
    assert metrics["test.mrr"] > metrics["popularity.test.mrr"]


# -- news -----------------------------------------------------------------------------------


def test_news_trains_on_clicks_and_evaluates_impressions(tmp_path, hashing_encoder, capsys):
    data = write_nemig(tmp_path)
    out = tmp_path / "models"
    printed = temporec(capsys, *training(data, out, "news", "--epochs", "5", "--dim", "16", "--max-len", "10"))
    path = Path(printed.strip().splitlines()[-1])
    manifest = read_manifest(path)
    assert manifest.domain == "news" and not manifest.use_ids  # the domain's training_config

    report = evaluate_json(capsys, path)
    assert report["same_data_as_training"] and report["users"] == 12  # each user's last impression
    for ranker in ("", "popularity.", "recency.", "bm25.", "frozen-encoder."):
        assert {f"{ranker}test.{m}" for m in ("auc", "mrr", "ndcg@5", "ndcg@10")} <= set(report["metrics"])
    # the frozen hashing vectors of "Topic t story n" already tell a reader's topic
    assert report["metrics"]["frozen-encoder.test.auc"] == 1.0
    compact = compacted(capsys, path, "--out", str(tmp_path / "compact"), "--dtype", "float32")
    assert evaluate_json(capsys, compact)["metrics"] == report["metrics"]

    history = [Event("n0", "click"), Event("n3", "click"), Event("n6", "click")]
    answer = serve(out, Query("news", history, candidates=["n15", "n16", "n17"], k=3))
    assert answer.candidate_source == "request" and {item.item_id for item in answer.items} == {"n15", "n16", "n17"}


# -- retail ---------------------------------------------------------------------------------


def write_shop(directory: Path, users: int = 30) -> Path:
    """items.csv (text, category) and events.csv: each shopper views three items of one
    category, carts one and buys it; every third shopper's last event is that purchase."""
    with open(directory / "items.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "text", "category"])
        writer.writerows([f"i{i}", f"{kind} model {i}", kind] for i, kind in enumerate(["kettle", "lamp", "chair"] * 6))
    rows = []
    for user in range(users):
        items = [f"i{(user % 3) + 3 * k}" for k in range(4)]
        actions = [("view", item) for item in items[:3]] + [("cart", items[3]), ("purchase", items[3])]
        if user % 3:
            actions.append(("view", items[0]))
        rows += [(f"u{user}", item, action, 1_700_000_000 + 60 * t) for t, (action, item) in enumerate(actions)]
    with open(directory / "events.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "item_id", "action", "timestamp"])
        writer.writerows(rows)
    return directory


def test_retail_eval_adds_the_next_purchase_under_the_shop_rules(tmp_path, hashing_encoder, capsys):
    out = tmp_path / "models"
    printed = temporec(capsys, *training(write_shop(tmp_path), out, "retail", "--epochs", "2", "--dim", "16"))
    path = Path(printed.strip().splitlines()[-1])
    manifest = read_manifest(path)
    assert manifest.item_features == ["category"] and manifest.training["target_weights"]["view"] == 0.2

    metrics = evaluate_json(capsys, path)["metrics"]
    assert {"test.hr@10", "popularity.test.mrr"} <= set(metrics)  # leave-one-out, as every domain
    for ranker in ("", "popularity.", "recent."):  # every baseline on every split
        assert {f"{ranker}{split}.hr@10" for split in ("valid", "test", "purchase")} <= set(metrics)
    compact = compacted(capsys, path, "--out", str(tmp_path / "compact"), "--dtype", "float32")
    assert evaluate_json(capsys, compact)["metrics"] == pytest.approx(metrics, abs=1e-6)
    table = temporec(capsys, "eval", "--model", str(path), "--device", "cpu")
    assert any(line.split()[:2] == ["purchase", "recent"] for line in table.splitlines())


def test_retail_honours_negatives_0_the_full_softmax(tmp_path, hashing_encoder, capsys):
    out = tmp_path / "models"
    printed = temporec(capsys, *training(write_shop(tmp_path), out, "retail", "--epochs", "1", "--negatives", "0"))
    assert read_manifest(Path(printed.strip().splitlines()[-1])).training["negatives"] == 0


# -- events: a shop log as it comes ------------------------------------------------------------


def write_shop_log(directory: Path, users: int = 30) -> Path:
    """A RetailRocket-style log: its own column names, its own action names, times in
    milliseconds, item ids without any text, and events.toml naming the columns."""
    (directory / "events.toml").write_text(
        'columns = { user_id = "visitorid", item_id = "itemid", action = "event" }\n'
    )
    rows = []
    for user in range(users):
        items = [f"{100 + (user % 3) + 3 * k}" for k in range(4)]
        actions = [("view", item) for item in items[:3]] + [("addtocart", items[3]), ("transaction", items[3])]
        rows += [
            (1_433_221_332_000 + 60_000 * t, f"v{user}", event, item, "") for t, (event, item) in enumerate(actions)
        ]
    with open(directory / "events.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "visitorid", "event", "itemid", "transactionid"])
        writer.writerows(rows)
    return directory


def test_the_events_domain_trains_a_shop_log_as_it_comes_and_serves_its_actions(tmp_path, hashing_encoder, capsys):
    out = tmp_path / "models"
    printed = temporec(capsys, *training(write_shop_log(tmp_path), out, "events", "--epochs", "2", "--dim", "16"))
    path = Path(printed.strip().splitlines()[-1])
    manifest = read_manifest(path)
    assert manifest.actions == ["view", "addtocart", "transaction"]  # the data's, in order of appearance
    assert (manifest.use_text, manifest.use_ids) == (False, True)  # no item has text: known by ids
    assert {"test.hr@10", "popularity.test.hr@10"} <= set(evaluate_json(capsys, path)["metrics"])
    history = [Event("100", "view", 1_433_221_332.0), Event("103", "addtocart", 1_433_221_392.0)]
    answer = serve(out, Query("events", history, k=3))
    assert answer.head == "lstm" and len(answer.items) == 3 and not {"100", "103"} & {i.item_id for i in answer.items}


def test_recbole_sequential_files_train_and_evaluate_on_their_split(tmp_path, hashing_encoder, capsys):
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    users = [[f"{(u + t) % 12}" for t in range(6)] for u in range(24)]  # each user walks the 12 items in order
    for split, (start, stop) in {"train": (1, 4), "valid": (4, 5), "test": (5, 6)}.items():
        rows = [
            f"u{u}\t{' '.join(seq[max(0, t - 3) : t])}\t{seq[t]}\n"
            for u, seq in enumerate(users)
            for t in range(start, stop)
        ]
        (tmp_path / f"X.{split}.inter").write_text(header + "".join(rows))
    (tmp_path / "X.text").write_text(
        "item_id:token\ttext:token_seq\n" + "".join(f"{i}\tstop {i} of the line\n" for i in range(12))
    )
    out = tmp_path / "models"
    printed = temporec(capsys, *training(tmp_path / "X.train.inter", out, "events", "--epochs", "3", "--dim", "16"))
    report = evaluate_json(capsys, Path(printed.strip().splitlines()[-1]))
    assert report["users"] == 24 and report["same_data_as_training"] and "test.hr@10" in report["metrics"]


# -- errors ---------------------------------------------------------------------------------


def test_train_and_eval_name_missing_data(tmp_path, capsys):
    assert main(["train", "--domain", "news", "--data", str(tmp_path / "absent")]) == 2
    assert f"--data '{tmp_path / 'absent'}': no such file or directory" in capsys.readouterr().err
