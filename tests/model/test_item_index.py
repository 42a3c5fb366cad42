"""The item indexes (faiss, the ``faiss`` extra): the approximate one's recall@10 against
exact scoring on a fixed synthetic catalog, its probe calibrated; the flat one's proposals
exactly the exact top k; both kept in a compact artifact and served."""

import asyncio
from pathlib import Path

import pytest
import torch

pytest.importorskip("faiss", reason="the approximate index needs faiss: pip install -e '.[faiss]'")

from temporec import Domain, Head, HeadOutput, hookimpl  # noqa: E402
from temporec.cli import main  # noqa: E402
from temporec.contract.errors import InvalidArgument  # noqa: E402
from temporec.contract.registry import load_registry  # noqa: E402
from temporec.contract.types import Catalog, Event, Query  # noqa: E402
from temporec.model.artifacts import Manifest, compact_artifact, load_model, read_manifest, save_model  # noqa: E402
from temporec.model.item_index import INDEX_FILE, TARGET_RECALL, ItemIndex  # noqa: E402
from temporec.model.recommender import EventBatch, SequenceRecommender  # noqa: E402
from temporec.serving.service import RecommenderService  # noqa: E402

N_ITEMS, TOPICS, DIM, K = 5000, 64, 32, 10
RECALL = 0.98  # the goal at a million items


CENTRES = torch.randn(TOPICS, DIM, generator=torch.Generator().manual_seed(0))


def clustered_vectors(n: int, seed: int = 0) -> torch.Tensor:
    """Vectors around the topic centres, as a trained model's items cluster by genre."""
    generator = torch.Generator().manual_seed(seed)
    return CENTRES[torch.randint(TOPICS, (n,), generator=generator)] + 0.5 * torch.randn(n, DIM, generator=generator)


def recall_at_k(found: list[list[int]], exact: list[list[int]]) -> float:
    return sum(len(set(a) & set(b)) for a, b in zip(found, exact)) / (K * len(exact))


def index_recall(index: ItemIndex, items: torch.Tensor, states: torch.Tensor) -> float:
    """Recall@10 of the index's proposals for ``states``, scored exactly."""
    found = []
    for state, rows in zip(states, index.search(states, 10 * K)):
        rows = rows[rows >= 0]
        found.append(rows[(items[rows] @ state).topk(K).indices].tolist())
    return recall_at_k(found, (states @ items.T).topk(K, dim=1).indices.tolist())


def test_the_index_proposals_scored_exactly_recall_the_exact_top_ten():
    items = clustered_vectors(N_ITEMS)
    states = clustered_vectors(300, seed=1)  # users near the same topics
    assert index_recall(ItemIndex.build(items), items, states) >= RECALL


def test_a_calibrated_probe_is_the_fewest_lists_that_reach_the_target_recall():
    items = clustered_vectors(N_ITEMS)
    anywhere = [torch.randn(256, DIM, generator=torch.Generator().manual_seed(s)) for s in (2, 3)]  # any direction
    index = ItemIndex.build(items, queries=anywhere[0])
    assert index.recall >= TARGET_RECALL and 8 < index.probe < index.lists  # neither end of the range
    assert index_recall(index, items, anywhere[1]) >= RECALL  # held out
    index.index.nprobe = index.probe // 2
    assert index_recall(index, items, anywhere[0]) < TARGET_RECALL  # half the probe falls short


def test_a_flat_index_proposes_exactly_the_top_items_of_a_float16_table():
    items = clustered_vectors(N_ITEMS).half().float()  # a compact artifact's table, as scored
    states = torch.randn(200, DIM, generator=torch.Generator().manual_seed(4))
    index = ItemIndex.build(items, "flat", queries=states)
    assert index.kind == "flat" and index.probe is None and index.recall == 1.0
    proposed = index.search(states, K)
    exact = (states @ items.T).topk(K, dim=1).indices
    assert [set(row) for row in proposed.tolist()] == [set(row) for row in exact.tolist()]


def test_a_flat_index_refuses_an_ivf_indexs_settings():
    with pytest.raises(InvalidArgument, match="lists and probe"):
        ItemIndex.build(clustered_vectors(100), "flat", probe=8)
    with pytest.raises(InvalidArgument, match="allowed: ivf, flat"):
        ItemIndex.build(clustered_vectors(100), "hnsw")


class LastEvent(Head):
    """The last event's vector itself: a user is where their last item is."""

    name = "last-event"

    def forward(self, events, mask):
        return HeadOutput(events)


class Topics(Domain):
    name = "topics"
    actions = ("view",)
    default_head = "last-event"

    def load_dataset(self, path):
        raise ValueError("not used in these tests")


class Plugin:
    @hookimpl
    def register_heads(self, register):
        register(LastEvent)

    @hookimpl
    def register_domains(self, register):
        register(Topics)


HEADS = {"last-event": LastEvent}


def indexed_artifact(root, kind="ivf"):
    """A compact artifact over clustered item vectors (a float16 table), with its index."""
    torch.manual_seed(0)
    model = SequenceRecommender(LastEvent(DIM, 20), torch.zeros(1, 8), n_actions=1, use_ids=False)
    model.freeze_items(clustered_vectors(N_ITEMS), torch.float16)
    catalog = Catalog([f"i{j}" for j in range(N_ITEMS)], [""] * N_ITEMS)
    manifest = Manifest("topics", "last-event", "none", "random", DIM, 20, ["view"], data_fingerprint="f")
    with torch.inference_mode():
        index = ItemIndex.build(model.candidate_vectors(), kind)
    return save_model(root, manifest, model, catalog, torch.rand(N_ITEMS), index)


def test_compact_calibrates_the_index_on_the_models_own_states_and_records_the_recall(tmp_path):
    torch.manual_seed(0)
    model = SequenceRecommender(LastEvent(DIM, 20), clustered_vectors(N_ITEMS), n_actions=1, use_ids=False)
    manifest = Manifest(
        "topics", "last-event", "none", "random", DIM, 20, ["view"], data_fingerprint="f", use_ids=False
    )
    catalog = Catalog([f"i{j}" for j in range(N_ITEMS)], [""] * N_ITEMS)
    full = save_model(tmp_path / "full", manifest, model, catalog, torch.rand(N_ITEMS))
    compact = load_model(compact_artifact(full, tmp_path / "compact", HEADS, "float32", index="ivf"), HEADS)
    described = compact.manifest.item_index
    assert described["probe"] == compact.index.probe < compact.index.lists
    assert described["recall"] >= TARGET_RECALL
    flat = load_model(compact_artifact(full, tmp_path / "flat", HEADS, index="flat"), HEADS)
    assert flat.manifest.item_index == {"kind": "flat", "recall": 1.0} and flat.index.kind == "flat"


def test_temporec_compact_index_flat_writes_the_exact_index_and_refuses_a_probe(tmp_path, capsys):
    heads = load_registry().heads  # the command's, installed through entry points
    torch.manual_seed(0)
    model = SequenceRecommender(heads["lstm"](DIM, 20), clustered_vectors(N_ITEMS), n_actions=1, use_ids=False)
    manifest = Manifest("video", "lstm", "none", "random", DIM, 20, ["watch"], data_fingerprint="f", use_ids=False)
    catalog = Catalog([f"i{j}" for j in range(N_ITEMS)], [""] * N_ITEMS)
    full = save_model(tmp_path / "full", manifest, model, catalog, torch.rand(N_ITEMS))

    assert main(["compact", "--model", str(full), "--out", str(tmp_path / "flat"), "--index", "flat"]) == 0
    written = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert read_manifest(written).item_index == {"kind": "flat", "recall": 1.0}
    assert main(["compact", "--model", str(full), "--out", str(tmp_path / "x"), "--index", "flat", "--probe", "8"]) == 2
    assert "lists and probe are an ivf index's" in capsys.readouterr().err


def test_an_indexed_artifact_keeps_its_index_checksummed(tmp_path):
    path = indexed_artifact(tmp_path)
    loaded = load_model(path, HEADS)
    assert INDEX_FILE in loaded.manifest.files and loaded.index is not None
    assert loaded.manifest.item_index == {"kind": "ivf", "lists": loaded.index.lists, "probe": loaded.index.probe}
    flat = load_model(indexed_artifact(tmp_path / "flat", "flat"), HEADS)
    assert flat.manifest.item_index == {"kind": "flat"} and flat.index.kind == "flat"


@pytest.mark.parametrize("kind", ["ivf", "flat"])
def test_served_with_an_index_the_answers_recall_exact_scoring_and_obey_the_rules(tmp_path, kind):
    path = indexed_artifact(tmp_path, kind)
    registry = load_registry(extra_plugins={"test": Plugin()}, env={"TEMPOREC_PLUGINS": ""})
    service = RecommenderService(registry, tmp_path, device="cpu")
    asyncio.run(service.start())
    loaded = load_model(path, registry.heads)
    with torch.inference_mode():
        vectors = loaded.model.candidate_vectors()
    histories = [[Event(f"i{j}", "view", 1.0), Event(f"i{(j * 7) % N_ITEMS}", "view", 2.0)] for j in range(0, 4000, 40)]

    async def answer_all():
        return await asyncio.gather(*(service.recommend(Query("topics", h, k=K)) for h in histories))

    try:
        answers = asyncio.run(answer_all())
    finally:
        asyncio.run(service.close())
    found, exact = [], []
    for history, answer in zip(histories, answers):
        seen = [int(e.item_id[1:]) for e in history]
        returned = [int(item.item_id[1:]) for item in answer.items]
        assert len(returned) == K and not set(seen) & set(returned)  # the history rule holds
        found.append(returned)
        events = EventBatch.from_histories([seen], [[0, 0]], [[1.0, 2.0]], loaded.manifest.max_len)
        with torch.inference_mode():
            scores = vectors @ loaded.model.user_states(events)[0]
            scores[seen] = float("-inf")
            exact.append(scores.topk(K).indices.tolist())
    assert recall_at_k(found, exact) >= (1.0 if kind == "flat" else RECALL)
