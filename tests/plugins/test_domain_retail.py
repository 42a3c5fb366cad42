"""The retail domain: shop rules, request options, text-less items (id + category
features), target weights, and a trained model served through the service."""

import asyncio
import random
from dataclasses import replace

import pytest
import torch

import temporec_plugins.domains.retail as retail_plugin
import temporec_plugins.heads.lstm as lstm_plugin
from temporec.contract.errors import InvalidArgument
from temporec.contract.options import read_options
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Dataset, Event, Query
from temporec.model.artifacts import load_model, read_manifest
from temporec.model.recommender import SequenceRecommender
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig, train
from temporec.training.next_item import build_model
from temporec.training.splits import encode, training_examples
from temporec_plugins.domains.retail import RetailDomain
from temporec_plugins.heads.lstm import LSTMHead

CATALOG = Catalog(
    ["tv", "milk", "shoe", "sock", "lamp"],
    [""] * 5,
    {
        "category": ["electronics", "food", "wear", "wear", "home"],
        "durable": ["1", "0", "1", "1", "1"],
        "in_stock": ["1", "1", "1", "1", "0"],
    },
)


def query(history, allow_repeats=False, **options) -> Query:
    q = Query("retail", history, allow_repeats=allow_repeats)
    q.options = options or None  # as the API layer carries them
    q.options = read_options(q, RetailDomain.request_options)  # as the service hands them to the domain
    return q


def allowed_after(q: Query) -> tuple[list[str], list[str]]:
    allowed = torch.ones(len(CATALOG), dtype=torch.bool)
    history = [CATALOG.index[e.item_id] for e in q.history]
    rules = RetailDomain().apply_rules(q, history, CATALOG, allowed)
    return [item for item, ok in zip(CATALOG.item_ids, allowed.tolist()) if ok], rules


BOUGHT = [Event("tv", "view"), Event("tv", "purchase"), Event("milk", "purchase"), Event("shoe", "cart")]


def test_purchased_durables_go_consumables_and_carted_items_stay_out_of_stock_never_returns():
    items, rules = allowed_after(query(BOUGHT))
    assert items == ["milk", "shoe", "sock"]
    assert rules == ["exclude_purchased", "exclude_out_of_stock"]


def test_repeats_allowed_keeps_purchases_but_never_out_of_stock_items():
    items, rules = allowed_after(query(BOUGHT, allow_repeats=True))
    assert items == ["tv", "milk", "shoe", "sock"] and rules == ["exclude_out_of_stock"]


def test_request_options_filter_categories_items_stock_and_cart_reminders():
    carted = [Event("shoe", "cart")]
    items, rules = allowed_after(query(carted, categories="wear,food", exclude_item_ids=["sock"], remind_cart="false"))
    assert items == ["milk"]
    assert rules == ["exclude_cart", "exclude_out_of_stock", "exclude_filtered", "category_filter"]
    items, rules = allowed_after(query([], out_of_stock=["shoe"]))
    assert items == ["tv", "milk", "sock"] and rules == ["exclude_out_of_stock"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, r"options.colour: unknown option; allowed: 'categories', 'exclude_item_ids'"),
        ({"remind_cart": "maybe"}, r"options.remind_cart: 'maybe' is not a boolean; allowed: "),
    ],
)
def test_bad_request_options_name_the_option_and_what_is_allowed(options, message):
    with pytest.raises(InvalidArgument, match=message):
        allowed_after(query([], **options))


def shop(users: int = 30, length: int = 12, seed: int = 0) -> Dataset:
    """Shoppers browsing one category each (ids without text), ending with a purchase."""
    rng = random.Random(seed)
    items = [f"i{n}" for n in range(40)]
    catalog = Catalog(items, [""] * len(items), {"category": [f"c{n % 4}" for n in range(40)]})
    sequences = {}
    for user in range(users):
        category = user % 4
        picks = [f"i{category + 4 * rng.randrange(10)}" for _ in range(length)]
        actions = ["view"] * (length - 2) + ["cart", "purchase"]
        sequences[f"u{user}"] = [Event(i, a, 1_511_000_000 + 60 * t) for t, (i, a) in enumerate(zip(picks, actions))]
    return Dataset("shop", catalog, sequences)


def test_training_config_fits_text_less_data():
    config = RetailDomain().training_config(shop(), TrainConfig())
    assert (config.use_text, config.use_ids, config.item_features) == (False, True, ["category"])
    assert config.negatives == 39 and config.target_weights == RetailDomain.target_weights


@pytest.mark.parametrize(
    ("users", "chosen", "repeat_aware", "used"),
    [
        (30, None, None, True),  # 9 events an item: ids
        (4, None, None, False),  # 1.2 an item: the repeat bonus and the categories
        (4, None, False, True),  # not repeat-aware: only ids name the items
        (4, True, None, True),  # the user's choice
        (30, False, None, False),
    ],
)
def test_ids_only_where_items_recur_enough_to_learn_one(users, chosen, repeat_aware, used):
    config = TrainConfig(use_ids=chosen, repeat_aware=repeat_aware)
    assert RetailDomain().training_config(shop(users=users), config).use_ids is used


def test_a_sparse_catalog_that_nothing_else_describes_keeps_its_ids():
    sparse = shop(users=4)
    bare = Dataset(sparse.name, Catalog(sparse.catalog.item_ids, sparse.catalog.texts), sparse.sequences)
    config = RetailDomain().training_config(bare, TrainConfig())
    assert (config.use_ids, config.item_features) == (True, [])


@pytest.mark.parametrize(("chosen", "used"), [(None, 39), (0, 0), (7, 7)])
def test_the_users_negatives_win_over_the_domains_and_0_is_the_full_softmax(chosen, used):
    assert RetailDomain().training_config(shop(), TrainConfig(negatives=chosen)).negatives == used


@pytest.mark.parametrize(("chosen", "used"), [(None, True), (False, False), (True, True)])
def test_retail_models_are_repeat_aware_unless_the_user_says_not(chosen, used):
    assert RetailDomain().training_config(shop(), TrainConfig(repeat_aware=chosen)).repeat_aware is used


@pytest.mark.parametrize(("chosen", "used"), [(None, False), (False, False), (True, True)])
def test_retail_ids_are_unscaled_unless_the_user_says_so(chosen, used):
    assert RetailDomain().training_config(shop(), TrainConfig(scale_ids=chosen)).scale_ids is used


def test_a_model_no_domain_chose_for_has_scaled_ids():
    model = build_model(LSTMHead, torch.zeros(3, 4), 1, TrainConfig(dim=8, max_len=4))
    assert model.scale_ids


def test_purchase_view_cuts_each_history_after_its_last_purchase():
    data = Dataset("d", CATALOG, {"a": BOUGHT, "b": [Event("tv", "view"), Event("tv", "purchase")], "c": BOUGHT[:1]})
    cut = RetailDomain().purchase_dataset(data)
    assert list(cut.sequences) == ["a"] and cut.sequences["a"] == BOUGHT[:3]


def test_items_without_text_share_their_category_embedding():
    features = {"category": torch.tensor([0, 0, 1])}
    model = SequenceRecommender(
        LSTMHead(8, 4), torch.zeros(3, 0), 2, use_text=False, use_ids=False, item_features=features
    )
    vectors = model.item_vectors()
    assert torch.equal(vectors[0], vectors[1]) and not torch.equal(vectors[0], vectors[2])


def test_training_examples_know_each_targets_action():
    data = shop(users=2, length=6)
    examples = training_examples(encode(data, RetailDomain.actions), max_len=8)
    # targets are events 1..3 of 6 (the last two are held out): view, view, view
    assert examples.target_actions[examples.targets != -100].tolist() == [0, 0, 0, 0, 0, 0]


def test_a_target_weight_of_zero_removes_those_targets_from_the_loss(tmp_path):
    data, domain = shop(users=8, length=6), RetailDomain()
    config = TrainConfig(dim=8, max_len=8, epochs=1, batch_size=4, use_ids=True)
    config = replace(domain.training_config(data, config), negatives=0)
    silent = replace(config, target_weights={action: 0.0 for action in domain.actions})
    no_text = torch.zeros(len(data.catalog), 0)

    def weights_after_training(config, name):
        path = train(
            data,
            LSTMHead,
            no_text,
            domain=domain,
            encoder_name="local",
            encoder_model_id="none",
            out_dir=tmp_path / name,
            config=config,
        )
        return load_model(path, {"lstm": LSTMHead}).model

    trained = weights_after_training(silent, "silent")
    categories = {"category": trained.item_features["category"].values}
    untouched = build_model(LSTMHead, no_text, len(domain.actions), silent, categories).state_dict()
    assert all(torch.equal(value, trained.state_dict()[key]) for key, value in untouched.items())
    moved = weights_after_training(config, "moved").state_dict()
    assert not torch.equal(moved["item_ids.weight"], untouched["item_ids.weight"])


def test_target_weights_and_features_must_name_what_exists(tmp_path):
    data, domain = shop(users=4), RetailDomain()
    base = domain.training_config(data, TrainConfig(dim=8, epochs=1))
    for bad, message in [
        (replace(base, target_weights={"click": 1.0}), r"target_weights: action 'click'; allowed: 'cart', 'favourite'"),
        (replace(base, target_weights={"view": 2.0}), r"target_weights\['view'\]: 2.0; must be between 0 and 1"),
        (
            replace(base, item_features=["brand"]),
            r"item_features: 'brand' is not a feature of shop; its features: 'category'",
        ),
        (replace(base, use_text=True), r"shop: no item has text"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            train(
                data,
                LSTMHead,
                torch.zeros(len(data.catalog), 0),
                domain=domain,
                encoder_name="local",
                encoder_model_id="none",
                out_dir=tmp_path,
                config=bad,
            )


@pytest.mark.slow
def test_a_trained_retail_model_is_served_with_the_shop_rules(tmp_path):
    data, domain = shop(), RetailDomain()
    config = domain.training_config(data, TrainConfig(dim=16, max_len=16, epochs=2, batch_size=8))
    path = train(
        data,
        LSTMHead,
        torch.zeros(len(data.catalog), 0),
        domain=domain,
        encoder_name="local",
        encoder_model_id="none",
        out_dir=tmp_path,
        config=config,
    )
    manifest = read_manifest(path)
    assert (manifest.use_text, manifest.item_features, manifest.training["target_weights"]) == (
        False,
        ["category"],
        RetailDomain.target_weights,
    )
    registry = load_registry(extra_plugins={"retail": retail_plugin, "lstm": lstm_plugin}, env={"TEMPOREC_PLUGINS": ""})
    history = [Event("i0", "view", 1_600_000_000), Event("i4", "purchase", 1_600_000_060)]

    async def ask():
        service = RecommenderService(registry, tmp_path, device="cpu")
        await service.start()
        try:
            return await service.recommend(Query("retail", history, k=40))
        finally:
            await service.close()

    answer = asyncio.run(ask())
    returned = [item.item_id for item in answer.items]
    assert answer.head == "lstm" and answer.rules_applied == ["exclude_purchased"]
    assert "i4" not in returned and "i0" in returned and len(returned) == 39
