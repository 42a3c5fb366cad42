"""Items shown beside a target and passed over (an impression's unclicked articles): their
loss, how they travel from events into training windows, and what training learns from them."""

import hashlib
import random

import torch
import torch.nn.functional as F

from temporec.contract.types import Catalog, Dataset, Event
from temporec.model.artifacts import load_model
from temporec.training import TrainConfig, train
from temporec.training.leave_one_out import evaluate_choice
from temporec.training.losses import passed_over_cross_entropy
from temporec.training.splits import encode, training_examples
from temporec_plugins.domains.news import NewsDomain
from temporec_plugins.heads.lstm import LSTMHead


def test_the_loss_ranks_each_target_among_its_own_passed_over_items():
    g = torch.Generator().manual_seed(0)
    states, table = torch.randn(3, 4, generator=g), torch.randn(6, 4, generator=g)
    targets = torch.tensor([0, 1, 2])
    passed = torch.tensor([[3, 4], [5, -1], [-1, -1]])  # row 2 was shown alone
    loss = passed_over_cross_entropy(states, targets, passed, lambda index: table[index])
    by_hand = [
        F.cross_entropy((table[[0, 3, 4]] @ states[0]).unsqueeze(0), torch.tensor([0])),
        F.cross_entropy((table[[1, 5]] @ states[1]).unsqueeze(0), torch.tensor([0])),
    ]
    assert torch.allclose(loss, torch.stack(by_hand).mean())
    assert passed_over_cross_entropy(states, targets, torch.full((3, 2), -1), lambda index: table[index]) is None


def test_each_training_target_carries_its_passed_over_items_and_unknown_ones_are_left_out():
    catalog = Catalog(list("abcde"), list("abcde"))
    events = [Event("a"), Event("b", passed_over=("c", "gone", "d")), Event("c"), Event("d"), Event("e")]
    seqs = encode(Dataset("toy", catalog, {"u": events}), [""])
    examples = training_examples(seqs, max_len=4)
    # Training pairs within the first 3 events (the last two are validation and test):
    # inputs a, b -> targets b, c; the window is left-padded to 4.
    assert examples.targets[0].tolist() == [-100, -100, 1, 2]
    assert examples.passed_over(torch.tensor([0])).tolist() == [[[-1, -1], [-1, -1], [2, 3], [-1, -1]]]
    plain = training_examples(encode(Dataset("toy", catalog, {"u": events[:1] + events[2:]}), [""]), 4)
    assert plain.passed_over(torch.tensor([0])) is None


def test_data_without_passed_over_items_keeps_its_fingerprint():
    catalog = Catalog(["a", "b"], ["a", "b"])
    plain = Dataset("toy", catalog, {"u": [Event("a", "click", 1.0), Event("b", "click", 2.0)]})
    digest = hashlib.sha256(catalog.fingerprint().encode())  # the fingerprint before passed-over items existed
    digest.update(b"u")
    for event in plain.sequences["u"]:
        digest.update(f"{event.item_id}\x1f{event.action}\x1f{event.timestamp}\x1e".encode())
    assert plain.fingerprint() == digest.hexdigest()[:16]
    shown = Dataset("toy", catalog, {"u": [Event("a", "click", 1.0), Event("b", "click", 2.0, passed_over=("a",))]})
    assert shown.fingerprint() != plain.fingerprint()


def chosen_over_shown(users: int = 80, seed: int = 0) -> Dataset:
    """Attractive items a0..a4 are always clicked over the b0..b4 shown beside them; the b
    items are clicked as often, but on their own, and in random order, so the catalog-wide
    loss sees two equally popular groups. Each history ends with two impressions (the
    validation and test targets)."""
    rng = random.Random(seed)
    a, b = [f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]
    sequences = {}
    for user in range(users):
        alone = [Event(rng.choice(b)) for _ in range(4)]
        shown = [Event(rng.choice(a), passed_over=tuple(rng.sample(b, 2))) for _ in range(6)]
        events = alone + shown[:4]
        rng.shuffle(events)
        sequences[f"u{user}"] = events + shown[4:]
    return Dataset("shown", Catalog(a + b, a + b), sequences)


def test_training_on_passed_over_items_learns_the_choice_that_popularity_hides(tmp_path):
    dataset = chosen_over_shown()
    seqs = encode(dataset, [""])
    auc = {}
    for weight in (0.0, 1.0):
        config = TrainConfig(dim=16, max_len=16, epochs=15, patience=15, batch_size=16, lr=5e-3, use_text=False)
        config.passed_over_weight, config.threads = weight, 1
        path = train(
            dataset,
            LSTMHead,
            torch.zeros(len(dataset.catalog), 0),
            domain=NewsDomain,
            encoder_name="none",
            encoder_model_id="none",
            out_dir=tmp_path / str(weight),
            config=config,
        )
        loaded = load_model(path, {"lstm": LSTMHead})
        auc[weight] = evaluate_choice(loaded.model, seqs, "test", 16)
    assert auc[1.0] > 0.9 and auc[1.0] > auc[0.0] + 0.2
