"""Training's speed-ups keep its results (the blockwise full softmax, length buckets), the
time budget ends a run, the learning-rate schedule, and the item-representation and
cold-start experiments."""

import dataclasses
import math
import time

import pytest
import torch
import torch.nn.functional as F

from temporec.contract.errors import InvalidArgument
from temporec.contract.types import Catalog, Dataset, Event
from temporec.model.artifacts import load_model, read_manifest
from temporec.training import (
    TrainConfig,
    build_model,
    evaluate_cold_start,
    hold_out_items,
    losses,
    train,
    with_items,
    without_items,
)
from temporec.training.next_item import Schedule, _among, _batches, slow_epoch_warning
from temporec.training.splits import encode, training_examples
from temporec_plugins.domains.video import VideoDomain
from temporec_plugins.heads.lstm import LSTMHead

N_BASE = 40
T0 = 1_700_000_000.0
CONFIG = TrainConfig(dim=32, max_len=16, epochs=20, batch_size=32, lr=1e-2, dropout=0.1, patience=5, threads=1)


# -- the blockwise full softmax ---------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 300, 700])  # less than, more than and not a multiple of a block
def test_full_softmax_equals_cross_entropy_in_value_and_gradients(rows):
    g = torch.Generator().manual_seed(rows)
    states = torch.randn(rows, 16, generator=g, requires_grad=True)
    items = torch.randn(50, 16, generator=g, requires_grad=True)
    targets = torch.randint(50, (rows,), generator=g)
    expected = F.cross_entropy(states @ items.T, targets)
    expected_grads = torch.autograd.grad(expected * 3, (states, items))
    found = losses.full_softmax_cross_entropy(states, items, targets)
    found_grads = torch.autograd.grad(found * 3, (states, items))
    torch.testing.assert_close(found, expected)
    for a, b in zip(found_grads, expected_grads):
        torch.testing.assert_close(a, b)


def test_full_softmax_without_gradients_is_plain_cross_entropy():
    states, items, targets = torch.randn(4, 8), torch.randn(10, 8), torch.tensor([0, 3, 9, 3])
    expected = F.cross_entropy(states @ items.T, targets)
    assert torch.equal(losses.full_softmax_cross_entropy(states, items, targets), expected)


def test_the_softmax_over_some_catalog_rows_ranks_each_target_among_those_rows_alone():
    """Items without an event in the data are no negatives (TrainConfig.unseen_negatives off)."""
    g = torch.Generator().manual_seed(0)
    states, items = torch.randn(6, 8, generator=g), torch.randn(10, 8, generator=g)
    rows, targets = torch.tensor([1, 4, 5, 8]), torch.tensor([4, 8, 1, 1, 5, 8])
    expected = F.cross_entropy(states @ items[rows].T, torch.tensor([1, 3, 0, 0, 2, 3]))
    torch.testing.assert_close(losses.full_softmax_cross_entropy(states, *_among(rows, items, targets, None)), expected)
    # a bonus column outside the rows is dropped, the others follow their items
    bonus = (torch.tensor([[4, 2]] * 6), torch.tensor([[1.0, 5.0]] * 6))
    with_bonus = (states @ items[rows].T).index_add(1, torch.tensor([1]), torch.ones(6, 1))
    torch.testing.assert_close(
        losses.full_softmax_cross_entropy(states, *_among(rows, items, targets, bonus)),
        F.cross_entropy(with_bonus, torch.tensor([1, 3, 0, 0, 2, 3])),
    )


def test_sampled_negatives_come_from_the_rows_given():
    torch.manual_seed(0)
    states, items = torch.randn(3, 8), torch.randn(10, 8)
    targets, rows = torch.tensor([2, 2, 7]), torch.tensor([2, 7])
    drawn = []
    loss = losses.sampled_softmax_cross_entropy(
        states, targets, lambda index: drawn.append(index) or items[index], 10, 50, rows=rows
    )
    assert set(drawn[1].tolist()) <= {2, 7} and torch.isfinite(loss)


# -- batches and the time budget -----------------------------------------------------------------


def chain_dataset(users: int = 150, seed: int = 0, twins: bool = False) -> Dataset:
    """Users of varied history lengths walk a fixed successor map over the base items.
    ``twins``: every base item has a twin "t<i>" with the same text, and each user's last
    event (the test target) is the twin of the base item the walk reaches."""
    g = torch.Generator().manual_seed(seed)
    successor = torch.randperm(N_BASE, generator=g).tolist()
    sequences = {}
    for user in range(users):
        items = [int(torch.randint(N_BASE, (1,), generator=g))]
        for _ in range(int(torch.randint(5, 16, (1,), generator=g))):
            items.append(successor[items[-1]])
        ids = [str(i) for i in items]
        if twins:
            ids[-1] = f"t{ids[-1]}"
        sequences[f"u{user}"] = [Event(item, "watch", T0 + 3600 * t) for t, item in enumerate(ids)]
    base = [str(i) for i in range(N_BASE)]
    ids = base + ([f"t{i}" for i in base] if twins else [])
    return Dataset("chain", Catalog(ids, [f"title {i.lstrip('t')}" for i in ids]), sequences)


def unit_vectors(catalog: Catalog, dim: int = 16) -> torch.Tensor:
    """One random unit vector per distinct text: twins share theirs."""
    g = torch.Generator().manual_seed(0)
    by_text = {
        text: torch.nn.functional.normalize(torch.randn(dim, generator=g), dim=0) for text in sorted(set(catalog.texts))
    }
    return torch.stack([by_text[text] for text in catalog.texts])


def fit(dataset: Dataset, out_dir, config: TrainConfig = CONFIG, on_epoch=None):
    return train(
        dataset,
        LSTMHead,
        unit_vectors(dataset.catalog),
        domain=VideoDomain,
        encoder_name="random",
        encoder_model_id="random-unit-16",
        out_dir=out_dir,
        config=config,
        on_epoch=on_epoch,
    )


def test_length_buckets_cover_every_window_once_with_less_padding():
    examples = training_examples(encode(chain_dataset(), VideoDomain.actions), max_len=16)
    lengths = examples.inputs.mask.sum(1)

    def padded_positions(batches):
        return sum(int(lengths[rows].max()) * len(rows) for rows in batches)

    config = dataclasses.replace(CONFIG, batch_size=8, length_buckets=True)
    bucketed = _batches(examples, config, epoch=1)
    plain = _batches(examples, dataclasses.replace(config, length_buckets=False), epoch=1)
    for batches in (bucketed, plain):
        assert sorted(torch.cat(batches).tolist()) == list(range(len(examples)))
    assert padded_positions(bucketed) < padded_positions(plain)
    assert [b.tolist() for b in bucketed] == [b.tolist() for b in _batches(examples, config, epoch=1)]


def test_a_spent_time_budget_ends_training_after_one_step(tmp_path):
    config = dataclasses.replace(CONFIG, time_budget_s=1e-9)  # spent by the first step
    epochs = []
    path = fit(
        chain_dataset(), tmp_path, config, on_epoch=lambda epoch, values: epochs.append((epoch, values["seconds"]))
    )
    assert read_manifest(path).metrics["epochs"] == 1
    assert len(epochs) == 1 and epochs[0][1] > 0


def test_the_schedule_warms_up_then_decays_to_zero_by_steps_or_by_time():
    far = time.monotonic() + 1e9  # a clock that has not started: only the steps count
    cosine = Schedule(lr=1.0, warmup_steps=10, cosine=True, total_steps=110, started=far, budget=math.inf)
    assert [cosine(step) for step in (0, 4)] == pytest.approx([0.1, 0.5], rel=0.01)  # linear warm-up
    assert cosine(55) == pytest.approx(0.5) and cosine(110) == pytest.approx(0.0)  # half way, the end
    assert cosine(20) > cosine(40) > cosine(80) > 0
    constant = Schedule(lr=1.0, warmup_steps=0, cosine=False, total_steps=110, started=far, budget=math.inf)
    assert constant(0) == constant(109) == 1.0
    # Bounded by time: half the budget gone is half the decay, however few the steps.
    timed = Schedule(lr=1.0, warmup_steps=0, cosine=True, total_steps=10**9, started=time.monotonic() - 50, budget=100)
    assert timed(0) == pytest.approx(0.5, abs=0.01)


def test_an_unknown_schedule_is_refused_naming_the_allowed_ones(tmp_path):
    with pytest.raises(InvalidArgument, match="config.schedule: 'linear'; allowed: 'constant', 'cosine'"):
        fit(chain_dataset(), tmp_path, dataclasses.replace(CONFIG, schedule="linear"))


# -- experiments ----------------------------------------------------------------------------------


def test_item_representations():
    assert (with_items(CONFIG, "text").use_text, with_items(CONFIG, "text").use_ids) == (True, False)
    assert (with_items(CONFIG, "ids").use_text, with_items(CONFIG, "ids").use_ids) == (False, True)
    assert (with_items(CONFIG, "hybrid").use_text, with_items(CONFIG, "hybrid").use_ids) == (True, True)
    with pytest.raises(InvalidArgument, match="'pixels'; allowed: 'hybrid', 'ids', 'text'"):
        with_items(CONFIG, "pixels")


def test_held_out_items_leave_the_training_data_but_not_the_catalog():
    dataset = chain_dataset()
    split = hold_out_items(dataset, 0.25, seed=1)
    assert len(split.cold_items) == 10 and split.train.catalog is dataset.catalog
    seen = {event.item_id for events in split.train.sequences.values() for event in events}
    assert not seen & set(split.cold_items)
    assert hold_out_items(dataset, 0.25, seed=1).cold_items == split.cold_items
    with pytest.raises(InvalidArgument, match="fraction 1.5"):
        hold_out_items(dataset, 1.5)
    with pytest.raises(InvalidArgument, match="not in the catalog"):
        without_items(dataset, ["nope"])


def test_text_and_hybrid_models_recommend_items_they_never_saw_and_an_id_model_cannot(tmp_path):
    dataset = chain_dataset(twins=True)
    cold = [item for item in dataset.catalog.item_ids if item.startswith("t")]
    split = without_items(dataset, cold)
    found = {}
    for items in ("text", "ids", "hybrid"):
        path = fit(split.train, tmp_path / items, with_items(CONFIG, items))
        loaded = load_model(path, {"lstm": LSTMHead})
        found[items] = evaluate_cold_start(loaded.model, dataset, split, loaded.manifest.actions, CONFIG.max_len)
        if items == "hybrid":  # the softmax never trained the cold items' ids: text alone scores them
            cold_rows = torch.tensor([dataset.catalog.index[item] for item in cold])
            assert not loaded.model.item_ids.weight[cold_rows].any()
    # Without that, their ids learned to score low as negatives: 0.57 HR@10 and 0.18 NDCG@10 here.
    assert found["hybrid"]["cold.hr@10"] >= 0.8 and found["hybrid"]["cold.ndcg@10"] >= 0.4
    assert found["text"]["cold.cases"] == 150 and found["text"]["warm.cases"] == 0
    assert found["text"]["cold.hr@10"] >= 0.8
    assert found["text"]["cold.hr@10"] > found["ids"]["cold.hr@10"] + 0.5
    assert found["text"]["popularity.cold.hr@10"] < 0.5


def test_id_dropout_takes_some_item_vectors_without_their_ids_while_training_only():
    config = dataclasses.replace(CONFIG, id_dropout=0.5, dropout=0.0)
    model = build_model(LSTMHead, torch.randn(400, 8), 1, config)
    torch.nn.init.normal_(model.item_ids.weight)
    with torch.no_grad():
        text = model.text_proj(model.text_embeddings)
        model.train()
        kept = (model.item_vectors() - text).abs().sum(1) > 0
        model.eval()
        assert torch.equal(model.item_vectors(), text + model.item_ids.weight)
    assert 0.35 < kept.float().mean() < 0.65  # about half kept their ids, the others are their text alone
    for bad in (dataclasses.replace(config, id_dropout=1.0), dataclasses.replace(config, use_ids=False)):
        with pytest.raises(InvalidArgument, match="id_dropout"):
            build_model(LSTMHead, torch.randn(10, 8), 1, bad)


def test_an_epoch_far_slower_than_the_fastest_is_named_with_advice():
    assert slow_epoch_warning(1, 80.0, math.inf, 2) is None  # the first epoch has nothing to compare with
    assert slow_epoch_warning(3, 6.0, 1.7, 2) is None  # within 4x: batches vary, validation too
    assert slow_epoch_warning(4, 80.0, 1.7, 2) == (
        "epoch 4 took 80.0 s, 47x the fastest (1.7 s): another process may be using the cores; "
        "with 2 torch threads, try --threads 1"
    )
    assert slow_epoch_warning(4, 80.0, 1.7, 1).endswith("may be using the cores")
