"""Compact artifacts (format 2): the catalog's item vectors as one table, saved, loaded and
served in place of what they are computed from; full artifacts (format 1) still load."""

import asyncio
import json

import torch

from conftest import run_command
from temporec import Domain, Head, HeadOutput, hookimpl
from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Event, Query
from temporec.model.artifacts import (
    CATALOG_COLUMNS,
    COMPACT_FORMAT,
    FORMAT,
    MANIFEST,
    WEIGHTS,
    Manifest,
    compact_artifact,
    load_model,
    save_model,
)
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.serving.service import RecommenderService

N_ITEMS, TEXT_DIM, DIM = 2000, 32, 16


class LastHead(Head):
    name = "last"

    def __init__(self, dim, max_len, **options):
        super().__init__(dim, max_len, **options)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, events, mask):
        return HeadOutput(self.proj(events))


class Shelf(Domain):
    name = "shelf"
    actions = ("view", "buy")
    default_head = "last"

    def load_dataset(self, path):
        raise ValueError("not used in these tests")


class Plugin:
    @hookimpl
    def register_heads(self, register):
        register(LastHead)

    @hookimpl
    def register_domains(self, register):
        register(Shelf)


HEADS = {"last": LastHead}
CATALOG = Catalog([f"i{j}" for j in range(N_ITEMS)], [f"item {j}" for j in range(N_ITEMS)])


def full_artifact(root, head=LastHead, **options):
    """A model with text, ids and a categorical feature, its id embeddings not zero."""
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(N_ITEMS, TEXT_DIM), dim=1)
    features = {"shelf": torch.arange(N_ITEMS) % 5}
    model = SequenceRecommender(head(DIM, 20), text, n_actions=2, item_features=features, **options)
    torch.nn.init.normal_(model.item_ids.weight, std=0.1)
    manifest = Manifest(
        "shelf", head.name, "none", "random", DIM, 20, ["view", "buy"], item_features=["shelf"], data_fingerprint="f"
    )
    manifest.scale_ids = options.get("scale_ids", False)
    return save_model(root, manifest, model, CATALOG, torch.rand(N_ITEMS))


def top(loaded, histories, k=10) -> list[list[int]]:
    events = EventBatch.from_histories(
        histories, [[0] * len(h) for h in histories], [[0.0] * len(h) for h in histories], 20
    )
    with torch.inference_mode():
        return loaded.model.scores(events).topk(k, dim=1).indices.tolist()


HISTORIES = [[j, (7 * j + 3) % N_ITEMS, (13 * j + 1) % N_ITEMS] for j in range(0, N_ITEMS, 40)]


def test_a_float32_table_scores_as_the_full_model(tmp_path):
    full = load_model(full_artifact(tmp_path / "full"), HEADS)
    compact = load_model(compact_artifact(full.path, tmp_path / "compact", HEADS, "float32"), HEADS)
    assert compact.manifest.format == COMPACT_FORMAT and full.manifest.format == FORMAT
    assert compact.version == f"{full.version}-compact" and compact.catalog == full.catalog
    assert torch.allclose(compact.model.candidate_vectors(), full.model.candidate_vectors(), atol=1e-6)
    assert top(compact, HISTORIES) == top(full, HISTORIES)


def test_a_float16_table_is_a_fraction_of_the_weights_and_keeps_the_top_ten(tmp_path):
    full = load_model(full_artifact(tmp_path / "full"), HEADS)
    compact = load_model(compact_artifact(full.path, tmp_path / "compact", HEADS), HEADS)
    assert (compact.path / WEIGHTS).stat().st_size < 0.25 * (full.path / WEIGHTS).stat().st_size
    assert (compact.path / CATALOG_COLUMNS).is_file() and not (compact.path / "catalog.jsonl").exists()
    assert json.loads((compact.path / MANIFEST).read_text())["item_table"] == {"dtype": "float16", "text_dim": TEXT_DIM}
    found = [len(set(a) & set(b)) for a, b in zip(top(compact, HISTORIES), top(full, HISTORIES))]
    assert sum(found) / (10 * len(HISTORIES)) >= 0.95


def test_served_from_a_directory_with_both_the_compact_one_answers(tmp_path):
    full = full_artifact(tmp_path)
    compact = load_model(compact_artifact(full, tmp_path, HEADS, "float32"), HEADS)
    registry = load_registry(extra_plugins={"test": Plugin()}, env={"TEMPOREC_PLUGINS": ""})
    service = RecommenderService(registry, tmp_path, device="cpu")
    asyncio.run(service.start())
    try:
        answer = asyncio.run(service.recommend(Query("shelf", [Event("i3", "view"), Event("i9", "view")], k=10)))
    finally:
        asyncio.run(service.close())
    assert answer.model_version == compact.version
    assert [item.item_id for item in answer.items] == [
        f"i{j}" for j in top(compact, [[3, 9]], k=12)[0] if j not in (3, 9)
    ][:10]


def test_a_model_whose_events_read_the_ids_apart_keeps_them(tmp_path):
    full = load_model(full_artifact(tmp_path / "full", scale_ids=True), HEADS)
    compact = load_model(compact_artifact(full.path, tmp_path / "compact", HEADS, "float32"), HEADS)
    assert compact.model.item_ids is not None and compact.model.frozen_items
    assert top(compact, HISTORIES) == top(full, HISTORIES)


def test_the_compact_command_writes_the_copy_beside_the_artifact(tmp_path, capsys):
    from temporec.cli import compact

    heads = load_registry().heads  # as the command finds them
    full = full_artifact(tmp_path, heads["lstm"])
    path = compact_artifact(full, tmp_path / "by-function", heads, "bfloat16")
    assert run_command(compact, ["compact", "--model", str(full), "--dtype", "bfloat16"]) == 0
    written = tmp_path / capsys.readouterr().out.strip()
    assert written.parent == tmp_path and written.name == path.name
    assert (written / WEIGHTS).read_bytes() == (path / WEIGHTS).read_bytes()
