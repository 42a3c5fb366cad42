"""Domain options: typed values are checked before calling, and sent in the typed message.

No server is needed: a refused option raises ValueError before any call (a call to the
unreachable target would raise TemporecError instead).
"""

from __future__ import annotations

import math

import pytest

from temporec_client import TemporecClient
from temporec_client.client import _options
from temporec_client.v1 import recommender_pb2 as pb

UNREACHABLE = "127.0.0.1:1"


def sent(domain: str, options: dict) -> pb.RecommendRequest:
    """The request the client would send for ``options``."""
    return pb.RecommendRequest(domain=domain, **_options(domain, options))


@pytest.mark.parametrize(
    ("domain", "options", "message"),
    [
        ("retail", {"categories": "shoes"}, "options.categories: expected a list of strings, got 'shoes'"),
        ("retail", {"out_of_stock": b"sku1"}, "options.out_of_stock: expected a list of strings, got b'sku1'"),
        ("retail", {"categories": {"shoes": 1}}, "options.categories: expected a list of strings, got {'shoes': 1}"),
        ("retail", {"categories": 7}, "options.categories: expected a list of strings, got 7"),
        (
            "retail",
            {"exclude_item_ids": ["a", 2]},
            "options.exclude_item_ids: expected a list of strings, got ['a', 2]",
        ),
        ("retail", {"remind_cart": "false"}, "options.remind_cart: expected a boolean (True or False), got 'false'"),
        ("retail", {"remind_cart": 0}, "options.remind_cart: expected a boolean (True or False), got 0"),
        ("news", {"max_age_days": "abc"}, "options.max_age_days: expected a finite number, not negative, got 'abc'"),
        ("news", {"max_age_days": True}, "options.max_age_days: expected a finite number, not negative, got True"),
        ("news", {"max_age_days": -1}, "options.max_age_days: expected a finite number, not negative, got -1"),
        ("news", {"max_age_days": math.inf}, "options.max_age_days: expected a finite number, not negative, got inf"),
        (
            "customer_service",
            {"handoff_threshold": math.nan},
            "options.handoff_threshold: expected a finite number, not negative, got nan",
        ),
    ],
)
def test_a_typed_option_of_the_wrong_type_is_refused_before_calling(domain, options, message):
    with TemporecClient(UNREACHABLE, timeout=5) as client, pytest.raises(ValueError) as caught:
        client.recommend(domain, history=["1"], options=options)
    assert str(caught.value) == message


def test_an_unknown_typed_option_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"^options\.colour: domain 'news' has no such option; allowed: max_age_days$"):
        _options("news", {"colour": "red"})


def test_typed_options_are_sent_in_the_domain_message():
    request = sent("retail", {"categories": ["shoes", "hats"], "out_of_stock": ("sku1",), "remind_cart": False})
    assert request.WhichOneof("domain_options") == "retail_options"
    options = request.retail_options
    assert list(options.categories) == ["shoes", "hats"] and list(options.out_of_stock) == ["sku1"]
    assert options.HasField("remind_cart") and options.remind_cart is False
    assert not request.plugin_options


def test_any_iterable_of_strings_is_a_list():
    request = sent("customer_service", {"exclude_item_ids": (item for item in ["human", "bye"])})
    assert list(request.customer_service_options.exclude_item_ids) == ["human", "bye"]


@pytest.mark.parametrize("days", [0, 3, 2.5])
def test_whole_and_fractional_numbers_are_numbers(days):
    options = sent("news", {"max_age_days": days}).news_options
    assert options.HasField("max_age_days") and options.max_age_days == days


def test_none_leaves_an_option_unset():
    options = sent("retail", {"remind_cart": None, "categories": None}).retail_options
    assert not options.HasField("remind_cart") and not options.categories


def test_a_domain_without_a_typed_message_gets_its_options_as_text():
    request = sent("video", {"genre": "drama", "tags": ["a", "b"], "fresh": False, "limit": 3})
    assert request.WhichOneof("domain_options") is None
    assert dict(request.plugin_options) == {"genre": "drama", "tags": "a,b", "fresh": "false", "limit": "3"}
