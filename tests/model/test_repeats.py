"""Repeat-aware scores (``--repeat-aware``, ``temporec.model.repeats``): the history bonus
in the losses, in scoring, and what it learns on data where users come back to items."""

import random

import pytest
import torch
import torch.nn.functional as F

from temporec.contract.registry import load_registry
from temporec.contract.types import Catalog, Dataset, Event
from temporec.model.artifacts import load_model
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.model.repeats import SCALE
from temporec.training import TrainConfig, train
from temporec.training.losses import full_softmax_cross_entropy, sampled_softmax_cross_entropy
from temporec_plugins.heads.lstm import LSTMHead


def model(n_items: int = 30, max_len: int = 8) -> SequenceRecommender:
    torch.manual_seed(0)
    recommender = SequenceRecommender(
        LSTMHead(16, max_len), torch.zeros(n_items, 0), n_actions=2, use_text=False, repeat_aware=True
    )
    with torch.no_grad():  # a trained-looking bonus: recent events and the second action weigh more
        recommender.repeats.recency.copy_(torch.linspace(2.0, 0.5, max_len))
        recommender.repeats.action.copy_(torch.tensor([0.5, 1.5]))
    return recommender.eval()


def batch(items, actions, max_len: int = 8) -> EventBatch:
    return EventBatch.from_histories(items, actions, [[0.0] * len(row) for row in items], max_len)


def test_a_new_model_scores_as_one_without_the_bonus():
    torch.manual_seed(0)
    plain = SequenceRecommender(LSTMHead(16, 8), torch.zeros(30, 0), n_actions=2, use_text=False).eval()
    torch.manual_seed(0)
    aware = SequenceRecommender(
        LSTMHead(16, 8), torch.zeros(30, 0), n_actions=2, use_text=False, repeat_aware=True
    ).eval()
    events = batch([[1, 2, 3], [4]], [[0, 1, 0], [1]])
    assert torch.allclose(aware.scores(events), plain.scores(events), atol=1e-6)


def test_the_bonus_goes_to_the_historys_items_by_recency_and_action():
    recommender = model()
    events = batch([[5, 7, 5], [9]], [[0, 1, 0], [1]])
    states = recommender.user_states(events)
    bonus = recommender.scores(events) - states @ recommender.candidate_vectors().T
    gate = F.softplus(recommender.repeats.gate(states)).squeeze(1)
    recency, action = recommender.repeats.recency * SCALE, recommender.repeats.action * SCALE
    expected = torch.zeros_like(bonus)
    expected[0, 5] = gate[0] * (recency[0] + action[0] + recency[2] + action[0])  # twice: frequency counts
    expected[0, 7] = gate[0] * (recency[1] + action[1])
    expected[1, 9] = gate[1] * (recency[0] + action[1])
    assert torch.allclose(bonus, expected, atol=1e-5)


def test_scores_of_some_candidates_are_the_catalogs_scores_of_them():
    recommender = model()
    events = batch([[5, 7, 5], [9, 2]], [[0, 1, 0], [1, 1]])
    index = torch.tensor([7, 3, 9, 5])
    states = recommender.user_states(events)
    some = recommender.score(states, recommender.candidate_vectors(index), events, index)
    assert torch.allclose(some, recommender.scores(events)[:, index], atol=1e-6)


def test_the_bonus_after_an_event_reads_no_later_event():
    recommender = model()
    events = batch([[5, 7, 5, 2]], [[0, 1, 0, 1]])
    states = torch.randn(1, 4, 16)
    weights = recommender.repeats.weights(states, events.items, events.actions, events.mask)
    assert torch.all(weights[0].triu(1) == 0)  # event u > t adds nothing after t
    padded = batch([[5, 7]], [[0, 1]])  # left-padded to the batch's width 2, no padding
    wide = EventBatch.from_histories([[5, 7], [1, 2, 3, 4]], [[0, 1], [0, 0, 0, 0]], [[0.0] * 2, [0.0] * 4], 8)
    assert torch.all(
        recommender.repeats.weights(torch.randn(2, 4, 16), wide.items, wide.actions, wide.mask)[0, :, :2] == 0
    )
    assert padded.mask.all()


@pytest.mark.parametrize("negatives", [0, 6])
def test_the_losses_add_the_bonus_to_the_logits_and_learn_it(negatives):
    torch.manual_seed(1)
    states = torch.randn(5, 4, requires_grad=True)
    items = torch.randn(12, 4, requires_grad=True)
    targets = torch.tensor([3, 0, 11, 3, 7])
    columns = torch.tensor([[3, 3, 1], [2, 0, 0], [5, 6, 7], [9, 9, 9], [7, 1, 1]])
    values = torch.randn(5, 3, requires_grad=True)
    if negatives:
        torch.manual_seed(2)
        loss = sampled_softmax_cross_entropy(states, targets, lambda i: items[i], 12, negatives, (columns, values))
        torch.manual_seed(2)
        sampled = torch.randint(12, (negatives,))
        candidates = torch.cat([targets.unsqueeze(1), sampled.expand(5, -1)], 1)
        full = (states @ items.T).scatter_add(1, columns, values)
        logits = full.gather(1, candidates)
        logits[:, 1:] = logits[:, 1:].masked_fill(sampled == targets.unsqueeze(1), float("-inf"))
        reference = F.cross_entropy(logits, torch.zeros_like(targets))
    else:
        loss = full_softmax_cross_entropy(states, items, targets, (columns, values))
        reference = F.cross_entropy((states @ items.T).scatter_add(1, columns, values), targets)
    grads = torch.autograd.grad(loss, (states, items, values))
    expected = torch.autograd.grad(reference, (states, items, values))
    assert torch.allclose(loss, reference, atol=1e-5)
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-5)


def comeback_data(users: int = 150, items: int = 200, length: int = 14) -> Dataset:
    """Each user comes back, in random order, to three items of their own."""
    rng = random.Random(0)
    sequences = {}
    for user in range(users):
        own = rng.sample(range(items), 3)
        sequences[f"u{user}"] = [Event(f"i{rng.choice(own)}", "view", 1000.0 + t) for t in range(length)]
    return Dataset("comeback", Catalog([f"i{i}" for i in range(items)], [""] * items), sequences)


def test_a_repeat_aware_model_learns_that_users_come_back(tmp_path):
    """The test cases' next item is one of the three items the user keeps returning to;
    ranked against the whole catalog, the history not masked (as a shop shows it again)."""
    data, registry = comeback_data(), load_registry()
    hits = {}
    for aware in (False, True):
        config = TrainConfig(
            dim=16, max_len=8, epochs=6, batch_size=16, use_text=False, repeat_aware=aware, device="cpu"
        )
        path = train(
            data, registry.heads["lstm"], torch.zeros(200, 0), domain=registry.domains["events"],
            encoder_name="local", encoder_model_id="", out_dir=tmp_path / str(aware), config=config,
        )  # fmt: skip
        loaded = load_model(path, registry.heads)
        assert loaded.manifest.repeat_aware == aware
        index = loaded.catalog.index
        histories = [[index[e.item_id] for e in events[:-1]][-8:] for events in data.sequences.values()]
        targets = torch.tensor([index[events[-1].item_id] for events in data.sequences.values()])
        events = EventBatch.from_histories(histories, [[0] * 8] * len(histories), [[0.0] * 8] * len(histories), 8)
        with torch.no_grad():
            top = loaded.model.scores(events).topk(3).indices
        hits[aware] = (top == targets.unsqueeze(1)).any(1).float().mean().item()
    assert hits[True] > 0.9 and hits[True] > hits[False] + 0.2, hits  # 3 of the 200 items are theirs
