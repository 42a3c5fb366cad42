"""The finance domain's topic tagger on made-up headlines, and the annotated sample it is
measured on (``benchmarks/annotations/headline_topics.tsv``: ids only, all resolving)."""

import re
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SHARED_DATA
from temporec import InvalidArgument
from temporec.data.headlines import read_headlines
from temporec_plugins.domains.finance.topics import (
    TAXONOMY,
    TopicTagger,
    literal_prefix,
    split_alternatives,
)

ANNOTATIONS = ROOT / "benchmarks" / "annotations" / "headline_topics.tsv"
HEADLINES = SHARED_DATA / "financial-headlines"


@pytest.fixture(scope="module")
def tagger():
    return TopicTagger()


def topics_of(tagger, text):
    return set(tagger.tag([text])[0])


def test_taxonomy_names_and_descriptions(tagger):
    assert tagger.topics == {name: topic.description for name, topic in TAXONOMY.items()}
    assert all(re.fullmatch(r"(macro|sector|corporate|company):[a-z]+", name) for name in tagger.topics)
    assert all(description.strip() for description in tagger.topics.values())
    assert {implied for topic in TAXONOMY.values() for implied in topic.implies} <= set(tagger.topics)


@pytest.mark.parametrize(
    "text, absent",
    [
        ("Stanford and Oxford economists meet", "sector:autos"),  # Ford inside a word
        ("Taxi drivers protest in Paris", "macro:fiscal"),  # tax inside a word
        ("Farmers toil through a wet spring", "sector:energy"),  # oil inside a word
        ("Fed up with Facebook, fund managers look elsewhere", "macro:rates"),  # "Fed up" is no central bank
        ("Shellfish exports to Spain recover", "sector:energy"),  # Shell inside a word
    ],
)
def test_word_boundaries_and_phrases(tagger, text, absent):
    assert absent not in topics_of(tagger, text)


def test_names_that_are_also_words_keep_their_case(tagger):
    assert "company:apple" in topics_of(tagger, "Apple shares hit a record")
    assert "company:apple" not in topics_of(tagger, "An apple a day keeps the doctor away")
    assert "company:gm" in topics_of(tagger, "GM recalls 1 million trucks")
    assert "company:gm" not in topics_of(tagger, "GM crops approved in Europe")
    assert "company:amazon" not in topics_of(tagger, "Amazon rainforest fires spread")


@pytest.mark.parametrize(
    "text, company",
    [
        ("iPhone sales slump in China", "company:apple"),
        ("Zuckerberg to testify before Congress", "company:facebook"),
        ("Regulators ground the 737 MAX worldwide", "company:boeing"),
        ("Alphabet beats revenue estimates", "company:google"),
        ("Audi chief arrested in diesel probe", "company:volkswagen"),
        ("Ghosn jumps bail and flees Japan", "company:nissan"),
    ],
)
def test_aliases(tagger, text, company):
    assert company in topics_of(tagger, text)


def test_multi_label_with_a_company_s_sector(tagger):
    found = tagger.tag(["Boeing shares fall as U.S.-China tariffs bite"])[0]
    assert set(found) == {"company:boeing", "sector:travel", "macro:markets", "macro:trade"}
    assert list(found) == [name for name in tagger.topics if name in found]  # taxonomy order


def test_none(tagger):
    assert tagger.tag(["A recipe for lemon cake", ""]) == [(), ()]


def test_the_cheap_test_changes_nothing(tagger):
    texts = [
        "Bank of England holds rates as Brexit talks stall",
        "J . Crew CEO steps down; Walmart same-store sales beat estimates",
        "Furloughed workers go on strike over pay",
        "Rouble and rupee slide; e-commerce firms agree to merge",
        "Coronavirus lockdown hits airlines, hotels and oil demand",
    ]
    for text in texts:
        bare = {name for name, matcher in tagger.matchers.items() if matcher and matcher.pattern.search(text)}
        assert tagger.match(text) == bare


def test_literal_prefixes():
    assert split_alternatives("econom(y|ies)|GDP") == ["econom(y|ies)", "GDP"]
    assert split_alternatives(r"a[|]b|c\|d|e") == ["a[|]b", r"c\|d", "e"]
    assert literal_prefix("econom(y|ies)") == "econom"
    assert literal_prefix("bonds?") == "bond"
    assert literal_prefix("(?<!profit )(?<!job )growth") == "growth"
    assert literal_prefix("J ?\\. ?Crew") == "J"


def test_refuses_unknown_methods_and_embeddings_without_an_encoder():
    with pytest.raises(InvalidArgument, match="method: 'ner' unknown; allowed: rules, embeddings, union"):
        TopicTagger("ner")
    with pytest.raises(InvalidArgument, match="encoder: method 'embeddings' needs an encoder"):
        TopicTagger("embeddings")


@pytest.mark.slow
def test_embeddings_from_the_monitor_s_vectors():
    from temporec_plugins.encoders.local import LocalEncoder

    encoder = LocalEncoder(device="cpu")
    tagger = TopicTagger("embeddings", encoder=encoder)
    texts = ["Oil prices jump as OPEC agrees deeper output cuts", "Brexit talks between London and Brussels stall"]
    scores = tagger.scores(texts, encoder.encode(texts))
    names = list(tagger.topics)
    assert [names[i] for i in scores.argmax(1).tolist()] == ["sector:energy", "macro:brexit"]
    assert tagger.tag(texts) == tagger.tag(texts, encoder.encode(texts))  # vectors given or encoded here
    with pytest.raises(InvalidArgument, match=r"vectors: shape \(1, 384\); expected \(2, 384\)"):
        tagger.tag(texts, torch.zeros(1, 384))


# ---- the annotated sample -------------------------------------------------------------------


def annotation_rows(path: Path = ANNOTATIONS) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "id\tsplit\ttopics"
    return [line.split("\t") for line in lines[1:]]


def test_annotations_hold_ids_splits_and_topics_only():
    rows = annotation_rows()
    assert len(rows) == 400 and all(len(row) == 3 for row in rows)
    assert all(re.fullmatch(r"(cnbc|guardian|reuters):[0-9a-f]{12}", id_) for id_, _, _ in rows)
    assert len({id_ for id_, _, _ in rows}) == 400
    assert sorted(split for _, split, _ in rows) == ["dev"] * 200 + ["test"] * 200
    used = {topic for _, _, topics in rows for topic in topics.split("|") if topic}
    assert used <= set(TAXONOMY)
    assert (ANNOTATIONS.parent / "README.md").is_file()


@pytest.mark.skipif(not HEADLINES.is_dir(), reason="needs ../shared/data/financial-headlines")
def test_annotation_ids_resolve_and_no_text_is_in_the_file():
    headlines = {headline.id: headline for headline in read_headlines(HEADLINES)}
    ids = [id_ for id_, _, _ in annotation_rows()]
    assert [id_ for id_ in ids if id_ not in headlines] == []
    content = ANNOTATIONS.read_text() + (ANNOTATIONS.parent / "README.md").read_text()
    assert [id_ for id_ in ids if headlines[id_].text in content] == []
