"""Composition per request over a live gRPC server: typed domain options, the hand-off,
occlusion explanations, and head x domain compatibility.

The models are untrained (seeded) real models built in place: the rules, the hand-off
and the explanations are checked against what the model computes, not its quality."""

import math

import grpc
import pytest
import torch

import proto_helpers
import temporec_client
from conftest import TinyEncoder, TinyMeanHead, TinyPlugin
from temporec import hookimpl
from temporec.contract.errors import FailedPrecondition
from temporec.contract.registry import load_registry
from temporec.contract.types import (
    Catalog,
    Contribution,
    Dataset,
    HandOff,
    Query,
    Recommendation,
    ScoredItem,
)
from temporec.contract.types import Event as CoreEvent
from temporec.grpc import translate
from temporec.model.artifacts import Manifest, load_model, save_model
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.training import train
from temporec.v1 import recommender_pb2 as pb
from temporec.v1 import recommender_pb2_grpc
from temporec_client import Event, TemporecClient, TemporecError
from temporec_plugins.domains.customer_service import CustomerServiceDomain
from temporec_plugins.heads.lstm import LSTMHead

Code = grpc.StatusCode
T0 = 1_700_000_000.0
DAY = 86_400.0

SHOP = Catalog(
    ["tv", "milk", "shoe", "sock", "lamp"],
    ["a television", "fresh milk", "running shoe", "wool sock", "desk lamp"],
    {"category": ["electronics", "food", "wear", "wear", "home"], "in_stock": ["1", "1", "1", "1", "0"]},
)
ARTICLES = Catalog(  # published 0, 20, 27 and 28 days after T0
    ["n0", "n1", "n2", "n3"],
    ["old story", "older news", "recent news", "latest news"],
    {"published": [str(T0 + days * DAY) for days in (0, 20, 27, 28)]},
)
REPLIES = Catalog(
    ["reset", "refund", "hours", "human"],
    ["Reset your password", "Refunds take 5 days", "We open at 9", "Let me connect you"],
)
#: "s1" and "s2" share their text, so the hash encoder gives them one vector
SPACE = Catalog(
    ["a", "s1", "b", "s2", "c"], ["cooking pasta", "space rockets", "garden tools", "space rockets", "jazz"]
)


class NeedsTimeHead(TinyMeanHead):
    """A head built on the time gaps between events: it requires timestamps."""

    name = "needs-time"
    requires = frozenset({"timestamps"})


class CompositionPlugin:
    @hookimpl
    def register_heads(self, register):
        register(NeedsTimeHead)


def save(root, domain: str, actions, head, catalog: Catalog, model: SequenceRecommender | None = None):
    """An untrained model over ``catalog`` (hash-encoder text vectors), saved under ``root``."""
    torch.manual_seed(0)
    model = model or SequenceRecommender(head, TinyEncoder().encode(catalog.texts), n_actions=len(actions))
    manifest = Manifest(
        domain=domain,
        head=head.name,
        encoder="tiny-hash",
        encoder_model_id=TinyEncoder.model_id,
        dim=head.dim,
        max_len=head.max_len,
        actions=list(actions),
        use_ids=model.use_ids,
        data_name=domain,
        data_fingerprint=catalog.fingerprint(),
    )
    return save_model(root, manifest, model, catalog, torch.arange(len(catalog), dtype=torch.float))


def identity_mean_model() -> SequenceRecommender:
    """State = the mean of the history's text vectors; score = its dot product with an
    item's text vector: an item is raised most by the events that share its text."""
    head = TinyMeanHead(TinyEncoder.dim, 8)
    model = SequenceRecommender(head, TinyEncoder().encode(SPACE.texts), n_actions=2, use_ids=False, dropout=0.0)
    with torch.no_grad():
        for linear in (head.proj, model.text_proj):
            linear.weight.copy_(torch.eye(TinyEncoder.dim))
            linear.bias.zero_()
        model.actions.weight.zero_()
        model.gaps.weight.zero_()
    return model


@pytest.fixture(scope="module")
def registry():
    return load_registry(extra_plugins={"tiny": TinyPlugin(), "composition": CompositionPlugin()})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("composition-models")
    paths = {
        "retail": save(root, "retail", ("view", "cart", "favourite", "purchase"), LSTMHead(16, 8), SHOP),
        "news": save(root, "news", ("click", "impression"), LSTMHead(16, 8), ARTICLES),
        "customer_service": save(root, "customer_service", ("user", "agent"), LSTMHead(16, 8), REPLIES),
    }
    paths["tiny"] = save(root, "tiny", ("view", "like"), TinyMeanHead(TinyEncoder.dim, 8), SPACE, identity_mean_model())
    return root, paths


@pytest.fixture(scope="module")
def server(start_grpc_server, registry, models):
    with start_grpc_server(registry, models[0]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with TemporecClient(server.target, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield recommender_pb2_grpc.RecommenderStub(channel)


def refusal(stub, **fields) -> grpc.RpcError:
    """The error of a raw Recommend call with ``fields`` (k=5 unless given)."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Recommend(pb.RecommendRequest(**{"k": 5, **fields}), timeout=30)
    return caught.value


def timed(*events: tuple[str, str]) -> list[Event]:
    return [Event(item, action, T0 + 60 * i) for i, (item, action) in enumerate(events)]


# -- typed options ----------------------------------------------------------------------


def test_retail_options_filter_categories_and_stock(client):
    plain = client.recommend("retail", history=timed(("tv", "view")), k=5)
    assert set(plain.item_ids) == {"tv", "milk", "shoe", "sock"} and plain.rules_applied == ["exclude_out_of_stock"]
    options = {"categories": ["wear", "home"], "out_of_stock": ["sock"]}
    filtered = client.recommend("retail", history=timed(("tv", "view")), k=5, options=options)
    assert filtered.item_ids == ["shoe"]
    assert filtered.rules_applied == ["exclude_out_of_stock", "category_filter"]


def test_retail_cart_reminders_turn_off_with_a_typed_boolean(stub):
    request = dict(domain="retail", history=[pb.Event(item_id="shoe", action="cart")])
    reminded = stub.Recommend(pb.RecommendRequest(**request, k=5), timeout=30)
    assert "shoe" in [i.item_id for i in reminded.items]
    options = pb.RetailOptions(remind_cart=False)
    quiet = stub.Recommend(pb.RecommendRequest(**request, k=5, retail_options=options), timeout=30)
    assert "shoe" not in [i.item_id for i in quiet.items] and "exclude_cart" in quiet.rules_applied


@pytest.mark.parametrize(
    ("options", "expected", "rules"),
    [
        (None, ["n2"], ["exclude_history", "exclude_stale"]),  # the default: 7 days
        ({"max_age_days": 15}, ["n1", "n2"], ["exclude_history", "exclude_stale"]),
        ({"max_age_days": 0}, ["n0", "n1", "n2"], ["exclude_history"]),  # any age
    ],
)
def test_news_max_age_days_leaves_out_stale_articles(client, options, expected, rules):
    history = [Event("n3", "click", T0 + 30 * DAY)]
    answer = client.recommend("news", history=history, k=4, options=options)
    assert sorted(answer.item_ids) == expected and answer.rules_applied == rules


def test_options_by_name_reach_a_domain_as_text(stub):
    request = pb.RecommendRequest(
        domain="news",
        history=[pb.Event(item_id="n3", timestamp_ms=int((T0 + 30 * DAY) * 1000))],
        k=4,
        plugin_options={"max_age_days": "15"},
    )
    assert sorted(i.item_id for i in stub.Recommend(request, timeout=30).items) == ["n1", "n2"]


# -- refused options ----------------------------------------------------------------------


def test_an_unknown_option_is_refused_naming_it_and_the_allowed_ones(stub):
    error = refusal(stub, domain="retail", plugin_options={"colour": "red"})
    assert error.code() is Code.INVALID_ARGUMENT
    assert error.details() == (
        "options.colour: unknown option; allowed: 'categories', 'exclude_item_ids', 'out_of_stock', 'remind_cart'"
    )


def test_options_are_refused_even_for_a_domain_that_reads_none_and_has_no_model(stub):
    error = refusal(stub, domain="video", history=[pb.Event(item_id="1")], plugin_options={"max_age_days": "3"})
    assert error.code() is Code.INVALID_ARGUMENT
    assert error.details() == "options.max_age_days: unknown option; allowed: (none)"


def test_an_unreadable_option_value_is_refused(stub):
    error = refusal(stub, domain="news", news_options=pb.NewsOptions(max_age_days=-1))
    assert error.code() is Code.INVALID_ARGUMENT and error.details().startswith("options.max_age_days: -1.0 must be")
    error = refusal(stub, domain="retail", plugin_options={"remind_cart": "maybe"})
    assert error.code() is Code.INVALID_ARGUMENT and "options.remind_cart: 'maybe' is not a boolean" in error.details()


def test_another_domains_options_are_refused_naming_the_field_and_both_domains(stub):
    error = refusal(stub, domain="video", retail_options=pb.RetailOptions(categories=["wear"]))
    assert error.code() is Code.INVALID_ARGUMENT
    assert error.details().startswith("retail_options: these are the options of domain 'retail'")
    assert "for domain 'video'; use plugin_options" in error.details()
    error = refusal(stub, domain="news", customer_service_options=pb.CustomerServiceOptions())
    assert error.code() is Code.INVALID_ARGUMENT and error.details().endswith("use news_options")


def test_typed_and_named_options_together_are_refused(stub):
    error = refusal(stub, domain="news", news_options=pb.NewsOptions(max_age_days=1), plugin_options={"x": "1"})
    assert error.code() is Code.INVALID_ARGUMENT
    assert error.details() == "plugin_options: set either news_options or plugin_options, not both"


def test_the_client_checks_typed_option_names_before_calling(client):
    with pytest.raises(ValueError, match="options.colour: domain 'retail' has no such option; allowed: categories"):
        client.recommend("retail", history=["tv"], options={"colour": "red"})


# -- hand-off ----------------------------------------------------------------------------


def confidence_by_hand(models, registry, text: str) -> float:
    """The customer-service model's top-reply probability for one user turn."""
    loaded = load_model(models[1]["customer_service"], registry.heads)
    vector = TinyEncoder().encode([text])[0]
    with torch.inference_mode():
        batch = EventBatch.from_histories([[-1]], [[0]], [[0.0]], loaded.manifest.max_len, [[vector]])
        scores = loaded.model.eval().scores(batch)[0]
    return float(torch.softmax(scores, dim=0).max())


def test_below_the_threshold_customer_service_hands_off(client, models, registry):
    conversation = [Event("", "user", text="cannot log in")]
    expected = confidence_by_hand(models, registry, "cannot log in")
    assert 0.25 < expected < 1.0
    unsure = client.recommend("customer_service", history=conversation, k=4, options={"handoff_threshold": 1.0})
    assert unsure.hand_off.recommended and unsure.hand_off.threshold == 1.0
    assert math.isclose(unsure.hand_off.confidence, expected, rel_tol=1e-5)
    assert "below the hand-off threshold 1" in unsure.hand_off.reason and unsure.rules_applied == ["handoff"]
    assert len(unsure.items) == 4  # still listed, for the human to consider
    sure = client.recommend("customer_service", history=conversation, k=4, options={"handoff_threshold": 0.0})
    assert sure.hand_off == temporec_client.HandOff(False, unsure.hand_off.confidence, 0.0, "")
    assert sure.rules_applied == []


def test_domains_that_decide_no_hand_off_leave_it_unset(client):
    assert client.recommend("retail", history=timed(("tv", "view")), k=2).hand_off is None


# -- explanations ---------------------------------------------------------------------------


def occluded_scores(model, items, actions, timestamps, max_len) -> torch.Tensor:
    with torch.inference_mode():
        return model.scores(EventBatch.from_histories([items], [actions], [timestamps], max_len))[0]


def test_each_weight_is_the_score_lost_without_that_event(client, models, registry):
    history = timed(("tv", "view"), ("shoe", "cart"), ("milk", "purchase"), ("sock", "view"))
    answer = client.recommend("retail", history=history, k=3, explain=True)
    loaded = load_model(models[1]["retail"], registry.heads)
    model, catalog, actions = loaded.model.eval(), loaded.catalog, loaded.manifest.actions
    items = [catalog.index[e.item_id] for e in history]
    action_ids = [actions.index(e.action) for e in history]
    times = [e.timestamp for e in history]
    max_len = loaded.manifest.max_len
    full = occluded_scores(model, items, action_ids, times, max_len)
    drop = lambda values, t: values[:t] + values[t + 1 :]  # noqa: E731
    for item in answer.items:
        assert sorted(c.history_index for c in item.contributions) == [0, 1, 2, 3]
        weights = [c.weight for c in item.contributions]
        assert weights == sorted(weights, reverse=True)
        row = catalog.index[item.item_id]
        for c in item.contributions:
            t = c.history_index
            without = occluded_scores(model, drop(items, t), drop(action_ids, t), drop(times, t), max_len)
            assert c.item_id == history[t].item_id
            assert math.isclose(c.weight, float(full[row] - without[row]), abs_tol=1e-5)


def test_the_related_event_contributes_most(client):
    answer = client.recommend("tiny", history=["a", "s1", "b"], candidates=["s2", "c"], k=2, explain=True)
    top, *others = {item.item_id: item.contributions for item in answer.items}["s2"]
    assert (top.history_index, top.item_id) == (1, "s1")
    assert top.weight > 0.2 > max(c.weight for c in others)


def test_explain_events_weighs_the_most_recent_events_only(client):
    history = timed(("tv", "view"), ("shoe", "cart"), ("milk", "purchase"))
    answer = client.recommend("retail", history=history, k=2, explain=True, explain_events=2)
    assert all(sorted(c.history_index for c in item.contributions) == [1, 2] for item in answer.items)
    assert "explain" in answer.timings_ms
    plain = client.recommend("retail", history=history, k=2)
    assert all(item.contributions == [] for item in plain.items) and "explain" not in plain.timings_ms
    single = client.recommend("retail", history=["tv"], k=1, explain=True)  # weighed against no history at all
    assert [(c.history_index, c.item_id) for c in single.items[0].contributions] == [(0, "tv")]


def test_text_turns_are_explained_by_their_position(client):
    conversation = [Event("", "user", text="hello"), Event("", "user", text="cannot log in")]
    answer = client.recommend("customer_service", history=conversation, k=1, explain=True)
    assert sorted((c.history_index, c.item_id) for c in answer.items[0].contributions) == [(0, ""), (1, "")]


def test_too_many_explained_events_are_refused(stub):
    error = refusal(stub, domain="retail", history=[pb.Event(item_id="tv")], explain=True, explain_events=65)
    assert error.code() is Code.RESOURCE_EXHAUSTED
    assert error.details() == "explain_events: at most 64 (limits.max_explain_events), got 65"


def test_a_cold_start_has_nothing_to_explain_and_no_hand_off(client):
    answer = client.recommend("customer_service", history=[], k=2, explain=True)
    assert answer.cold_start and answer.hand_off is None and all(not i.contributions for i in answer.items)


# -- compatibility ------------------------------------------------------------------------


def test_a_head_that_needs_what_the_domains_data_lacks_is_refused(client):
    with pytest.raises(TemporecError) as caught:
        client.recommend("customer_service", history=[Event("", "user", text="hi")], head="needs-time")
    assert caught.value.code is Code.FAILED_PRECONDITION
    assert caught.value.details == (
        "head: 'needs-time' requires 'timestamps' of the data, which domain 'customer_service' does not provide "
        "(it provides: 'item_text'); choose another head"
    )


def test_a_compatible_pair_without_a_model_is_still_not_found(client):
    with pytest.raises(TemporecError) as caught:
        client.recommend("retail", history=["tv"], head="needs-time")
    assert caught.value.code is Code.NOT_FOUND and "no model is loaded" in caught.value.details


def test_training_an_incompatible_pair_is_refused(tmp_path):
    chats = Dataset("chats", REPLIES, {"u": [CoreEvent("reset", "agent"), CoreEvent("hours", "agent")]})
    with pytest.raises(FailedPrecondition, match="'needs-time' requires 'timestamps'"):
        train(
            chats,
            NeedsTimeHead,
            TinyEncoder().encode(REPLIES.texts),
            domain=CustomerServiceDomain,
            encoder_name="tiny-hash",
            encoder_model_id=TinyEncoder.model_id,
            out_dir=tmp_path,
        )
    assert not any(tmp_path.iterdir())


def test_list_components_shows_requirements_data_traits_and_options(client):
    components = client.list_components()
    heads = {c.name: c.details for c in components.heads}
    domains = {c.name: c.details for c in components.domains}
    assert heads["needs-time"]["requires"] == "timestamps" and "requires" not in heads["lstm"]
    assert domains["customer_service"]["provides"] == "item_text"
    assert domains["video"]["provides"] == "item_text,timestamps"
    assert domains["retail"]["option.remind_cart"] == "true" and domains["news"]["option.max_age_days"] == "7.0"
    assert not any(key.startswith("option.") for key in domains["video"])


# -- translation ------------------------------------------------------------------------


def test_a_query_with_options_and_explain_round_trips_through_the_proto():
    query = Query(
        "retail",
        [CoreEvent("tv", "view", T0)],
        k=3,
        options={"categories": ["wear"], "remind_cart": False},
        explain=True,
        explain_events=2,
    )
    assert translate.query_from_proto(proto_helpers.query_to_proto(query)) == query
    plugin = Query("books", [], options={"shelves": ["a", "b"], "strict": True, "limit": 2})
    proto = proto_helpers.query_to_proto(plugin)
    assert dict(proto.plugin_options) == {"shelves": "a,b", "strict": "true", "limit": "2"}
    assert translate.query_from_proto(proto).options == {"shelves": "a,b", "strict": "true", "limit": "2"}


def test_a_recommendation_with_a_hand_off_and_contributions_round_trips():
    item = ScoredItem("reset", 1.5, "Reset your password", [Contribution(1, "", 0.75), Contribution(0, "x", -0.25)])
    hand_off = HandOff(True, 0.2, 0.3, "why")
    answer = Recommendation([item], "customer_service", "lstm", "tiny-hash", "v1", hand_off=hand_off)
    assert proto_helpers.recommendation_from_proto(translate.recommendation_to_proto(answer)) == answer
    without = Recommendation([], "retail", "lstm", "tiny-hash", "v1")
    assert not translate.recommendation_to_proto(without).HasField("hand_off")
    assert proto_helpers.recommendation_from_proto(translate.recommendation_to_proto(without)) == without
