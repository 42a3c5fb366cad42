"""The temporal heads ar, hstu, lstm and vae: each learns order (it beats popularity and
itself trained on order-shuffled histories), is causal, ignores left padding, survives a
save and load bit for bit, and answers Recommend through the real gRPC server.

Small generated data; the conftest's tiny hash encoder gives the text embeddings."""

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TinyEncoder, TinyPlugin, run_command, write_ml100k
from temporec import Head, HeadOutput
from temporec.cli import train as train_command
from temporec.contract.registry import Registry, load_registry
from temporec.contract.types import Catalog, Dataset, Event, Query
from temporec.model.artifacts import Manifest, load_model, read_manifest, save_model
from temporec.model.recommender import EventBatch, SequenceRecommender
from temporec.serving.service import RecommenderService
from temporec.training import TrainConfig, evaluate_artifact, train
from temporec.training.splits import encode, history_batch, training_examples
from temporec_client import Event as ClientEvent
from temporec_client import TemporecClient
from temporec_plugins.domains.video import VideoDomain
from temporec_plugins.heads.ar import ARHead
from temporec_plugins.heads.hstu import HSTUHead, time_buckets
from temporec_plugins.heads.lstm import LSTMHead
from temporec_plugins.heads.vae import VAEHead

HEADS = {"ar": ARHead, "hstu": HSTUHead, "lstm": LSTMHead, "vae": VAEHead}
N_ITEMS = 40
T0 = 1_700_000_000.0
CONFIG = TrainConfig(dim=32, max_len=16, epochs=20, batch_size=32, lr=1e-2, dropout=0.1, patience=5, threads=1)
REGISTRY = Registry(heads=HEADS, domains={"video": VideoDomain})


def successor_map(seed: int = 0) -> list[int]:
    return torch.randperm(N_ITEMS, generator=torch.Generator().manual_seed(seed)).tolist()


def chain_dataset(users: int = 150, length: int = 12, shuffle_training: bool = False, seed: int = 0) -> Dataset:
    """Histories in which the next item is a fixed successor of the current one half of
    the time and a random item otherwise; the last two steps (the validation and test
    targets) always follow the successor. Every item is about equally popular, and which
    items a history holds says little about its next one: their order does.

    ``shuffle_training``: each history's training part (all but its last two events) in
    random order, the same items with the order destroyed."""
    g = torch.Generator().manual_seed(seed + 1)
    successor = successor_map(seed)
    sequences = {}
    for user in range(users):
        items = [int(torch.randint(N_ITEMS, (1,), generator=g))]
        for t in range(1, length):
            follows = t >= length - 2 or bool(torch.rand(1, generator=g) < 0.5)
            items.append(successor[items[-1]] if follows else int(torch.randint(N_ITEMS, (1,), generator=g)))
        if shuffle_training:
            items = [items[i] for i in torch.randperm(length - 2, generator=g).tolist()] + items[-2:]
        sequences[f"u{user}"] = [Event(str(item), "watch", T0 + 3600 * t) for t, item in enumerate(items)]
    ids = [str(i) for i in range(N_ITEMS)]
    return Dataset("chain", Catalog(ids, [f"title {i}" for i in ids]), sequences)


def fit(head: str, dataset: Dataset, out_dir: Path) -> Path:
    return train(
        dataset,
        HEADS[head],
        TinyEncoder().encode(dataset.catalog.texts),
        domain=VideoDomain,
        encoder_name=TinyEncoder.name,
        encoder_model_id=TinyEncoder.model_id,
        out_dir=out_dir,
        config=CONFIG,
    )


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """One model per head, trained on ordered chains, in one models directory."""
    root = tmp_path_factory.mktemp("head-models")
    for head in HEADS:
        fit(head, chain_dataset(), root)
    return root


def artifact(models_dir: Path, head: str) -> Path:
    (path,) = models_dir.glob(f"video-{head}-*")
    return path


# -- learning order ----------------------------------------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_head_learns_order(head, models_dir, tmp_path):
    ordered = read_manifest(artifact(models_dir, head)).metrics
    shuffled_model = fit(head, chain_dataset(shuffle_training=True), tmp_path)
    # Both are tested on the same ordered histories.
    shuffled = evaluate_artifact(shuffled_model, chain_dataset(), registry=REGISTRY).metrics
    assert ordered["test.hr@10"] >= 0.9
    assert ordered["test.ndcg@10"] > ordered["popularity.test.ndcg@10"] + 0.5
    assert ordered["test.ndcg@10"] > shuffled["test.ndcg@10"] + 0.3


# -- properties of a head on its own -------------------------------------------------------


def random_batch(lengths: list[int], dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random events (zero on padding) and their mask."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = torch.tensor([[t >= width - n for t in range(width)] for n in lengths])
    return torch.randn(len(lengths), width, dim, generator=g) * mask.unsqueeze(-1), mask


def random_times(mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Left-padded increasing Unix times (float64, gaps from a second to weeks), 0 on padding."""
    g = torch.Generator().manual_seed(seed)
    gaps = torch.exp(14 * torch.rand(mask.shape, generator=g, dtype=torch.float64))
    return (T0 + (gaps * mask).cumsum(1)) * mask


def states(head: torch.nn.Module, events: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The head's states, called as the model calls it: ``times`` only for a head that reads them."""
    if head.reads_timestamps:
        return head(events, mask, timestamps=times).states
    return head(events, mask).states


HEAD_VARIANTS = [
    ("ar", {}),
    ("ar", {"positions": "last", "layers": 1, "heads": 2}),
    ("ar", {"norm": "post", "mlp_ratio": 1}),
    ("lstm", {}),
    ("lstm", {"cell": "gru", "layers": 2}),
    ("vae", {}),
    ("vae", {"layers": 2, "latent": 4}),
    ("hstu", {}),
    ("hstu", {"heads": 3, "attention_dim": 3, "linear_dim": 5, "scale": "max_len", "layers": 3}),
    ("hstu", {"time_buckets": 0, "layers": 1}),
]


def make_head(name: str, options: dict, max_len: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return HEADS[name](8, max_len, **options).eval()


@pytest.mark.parametrize(("name", "options"), HEAD_VARIANTS)
def test_a_later_event_does_not_change_earlier_states(name, options):
    head = make_head(name, options)
    events, mask = random_batch([6, 4])
    times = random_times(mask)
    changed = events.clone()
    changed[:, 4] = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    before, after = states(head, events, mask, times), states(head, changed, mask, times)
    torch.testing.assert_close(before[:, :4], after[:, :4], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:])


@pytest.mark.parametrize(("name", "options"), HEAD_VARIANTS)
def test_left_padding_does_not_change_the_states(name, options):
    head = make_head(name, options)
    events, mask = random_batch([3, 7, 1])
    times = random_times(mask)
    padded = states(head, events, mask, times)
    for row, n in enumerate([3, 7, 1]):
        alone = states(head, events[row : row + 1, -n:], mask[row : row + 1, -n:], times[row : row + 1, -n:])
        torch.testing.assert_close(padded[row, -n:], alone[0], rtol=0, atol=1e-5)
        assert torch.all(padded[row, :-n] == 0)  # padding positions carry no state


@pytest.mark.parametrize(("name", "options"), HEAD_VARIANTS)
def test_a_row_of_padding_only_gives_zero_states_not_nan(name, options):
    head = make_head(name, options)
    events, mask = random_batch([5, 1])
    events[1], mask[1] = 0.0, False
    times = random_times(mask)
    for mode in (head.eval(), head.train()):
        out = states(mode, events, mask, times)
        assert torch.isfinite(out).all() and torch.all(out[1] == 0)


@pytest.mark.parametrize(("name", "options"), HEAD_VARIANTS)
def test_save_then_load_gives_identical_scores(name, options, tmp_path):
    torch.manual_seed(0)
    catalog = Catalog(["a", "b", "c", "d"], ["A", "B", "C", "D"])
    head = HEADS[name](8, 5, **options)
    model = SequenceRecommender(head, TinyEncoder().encode(catalog.texts), n_actions=2).eval()
    manifest = Manifest(
        "video", name, "tiny-hash", TinyEncoder.model_id, 8, 5, ["watch", "rate"], head_options=dict(head.config)
    )
    loaded = load_model(save_model(tmp_path, manifest, model, catalog, torch.ones(4)), HEADS).model
    batch = EventBatch.from_histories(
        [[0, 1, 2, 3, 0, 1], [3]], [[0, 1, 0, 0, 1, 1], [1]], [[10.0, 20.0, 90.0, 95.0, 400.0, 401.0], [5.0]], 5
    )
    # Bit for bit on any machine: BLAS picks its kernel by the alignment of its inputs, so
    # the loaded model must hold no tensor at a view's offset (see SequenceRecommender).
    assert all(tensor.data_ptr() % 64 == 0 for tensor in loaded.state_dict().values())
    assert torch.equal(model.scores(batch), loaded.scores(batch))
    assert loaded.head.config == head.config


def test_ar_head_reads_at_most_max_len_events():
    head = make_head("ar", {}, max_len=4)
    events, mask = random_batch([5])
    with pytest.raises(ValueError, match="at most max_len=4"):
        head(events, mask)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("ar", {"heads": 3}, "heads=3; must divide the model width 8"),
        ("ar", {"positions": "middle"}, "positions='middle'; allowed: 'first', 'last'"),
        ("ar", {"norm": "sandwich"}, "norm='sandwich'; allowed: 'post', 'pre'"),
        ("ar", {"layers": 0, "dropout": 1.0}, "layers=0; must be at least 1; option dropout=1.0"),
        ("vae", {"latent": -1}, "latent=-1; must be at least 1, or 0 for the model width"),
        ("vae", {"kl_weight": -0.1}, "kl_weight=-0.1; must be at least 0"),
        ("vae", {"anneal": 5}, "unknown options \\['anneal'\\]"),
        ("hstu", {"heads": 3}, "heads=3; must divide the model width 8 \\(or set attention_dim and linear_dim\\)"),
        ("hstu", {"layers": 0, "time_buckets": -1}, "layers=0; must be at least 1; option time_buckets=-1"),
        ("hstu", {"linear_dim": -2}, "linear_dim=-2; must be at least 1, or 0 for the model width / heads"),
        ("hstu", {"scale": "softmax"}, "scale='softmax'; allowed: 'events', 'max_len'"),
    ],
)
def test_bad_head_options_are_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        HEADS[name](8, 16, **options)


# -- the vae's KL term ------------------------------------------------------------------------


def test_vae_kl_weight_anneals_over_training_steps_and_inference_is_deterministic():
    head = VAEHead(8, 16, kl_weight=0.5, anneal_steps=4)
    events, mask = random_batch([5, 3])
    head.train()
    scales, losses = [], []
    for _ in range(6):
        scales.append(head.kl_scale())
        losses.append(head(events, mask).aux_loss)
    assert scales == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert losses[0] == 0 and all(loss > 0 for loss in losses[1:])
    assert int(head.steps) == 6 and "steps" in head.state_dict()
    head.eval()
    first, second = head(events, mask), head(events, mask)
    assert first.aux_loss is None and torch.equal(first.states, second.states)
    assert int(head.steps) == 6  # inference does not advance the schedule


def test_vae_annealing_resumes_from_a_saved_step(tmp_path):
    head = VAEHead(8, 16, anneal_steps=10)
    head.steps.fill_(7)
    restored = VAEHead(8, 16, anneal_steps=10)
    restored.load_state_dict(head.state_dict())
    assert restored.kl_scale() == pytest.approx(0.2 * 0.7)


# -- timestamps, and the hstu's time bias ------------------------------------------------------


class TimesHead(Head):
    """Returns its events and keeps the timestamps it was given."""

    name = "times"
    reads_timestamps = True

    def forward(self, events, mask, timestamps=None):
        self.seen = timestamps
        return HeadOutput(events)


def test_the_model_passes_left_padded_timestamps_to_a_head_that_reads_them():
    catalog = Catalog(["a", "b", "c", "d"], ["A", "B", "C", "D"])
    head = TimesHead(8, 5)
    model = SequenceRecommender(head, TinyEncoder().encode(catalog.texts), n_actions=1).eval()
    model.scores(EventBatch.from_histories([[0, 1, 2], [3]], [[0, 0, 0], [0]], [[10.0, 20.0, 90.0], [5.0]], 5))
    # Exact: whole seconds are exact in float64, and the model only copies them.
    assert head.seen.dtype == torch.float64
    assert head.seen.tolist() == [[10.0, 20.0, 90.0], [0.0, 0.0, 5.0]]
    # A head that does not read them (lstm: forward(events, mask)) is called as before.
    lstm = SequenceRecommender(LSTMHead(8, 5), TinyEncoder().encode(catalog.texts), n_actions=1)
    assert lstm.scores(EventBatch.from_histories([[0, 1]], [[0, 0]], [[1.0, 2.0]], 5)).shape == (1, 4)


def test_training_batches_carry_the_timestamps():
    seqs = encode(chain_dataset(users=2, length=6), ["watch"])
    batch = history_batch(seqs, np.array([0, 1]), np.array([3, 2]), max_len=5)
    hours = [T0 + 3600 * t for t in range(3)]  # exact in float64: whole seconds
    assert batch.timestamps.tolist() == [hours, [0.0, *hours[:2]]]
    inputs, _ = training_examples(seqs, max_len=4).rows(torch.tensor([1]))
    assert torch.equal(inputs.timestamps[inputs.mask], torch.tensor(hours, dtype=torch.float64))  # copied, not computed


def test_hstu_time_buckets_are_log_scaled_and_unknown_times_get_none():
    times = torch.tensor([[0.0, T0, T0 + 1, T0 + 60, T0 + 86_400, T0 + 1e12]], dtype=torch.float64)
    buckets = time_buckets(times, 64)[0, :, 1]  # each event against the one at T0
    assert buckets.tolist() == [0, 1, 3, 14, 38, 64]  # unknown; 0 s; 1 s; a minute; a day; clamped


def test_hstu_reads_the_time_between_events_and_not_the_times_on_padding():
    head = make_head("hstu", {})
    events, mask = random_batch([6, 4])
    times = random_times(mask)
    before = head(events, mask, timestamps=times).states
    later = times.clone()
    later[:, -1] += 30 * 86_400  # the most recent events a month later
    after = head(events, mask, timestamps=later).states
    torch.testing.assert_close(after[:, :-1], before[:, :-1], rtol=0, atol=1e-6)  # causal
    assert (after[:, -1] - before[:, -1]).abs().max() > 1e-3
    noisy = times.clone()
    noisy[~mask] = T0 + 1e6 * torch.rand(int((~mask).sum()), dtype=torch.float64)
    torch.testing.assert_close(head(events, mask, timestamps=noisy).states, before, rtol=0, atol=1e-6)


def test_hstu_without_timestamps_uses_positions_only():
    head = make_head("hstu", {})
    events, mask = random_batch([6, 4])
    unknown = head(events, mask, timestamps=torch.zeros(mask.shape, dtype=torch.float64)).states
    torch.testing.assert_close(unknown, head(events, mask).states, rtol=0, atol=1e-6)
    with torch.no_grad():
        for layer in head.layers:
            layer.time_bias.weight.add_(1.0)  # unknown times read no bucket: the change is invisible
    torch.testing.assert_close(head(events, mask).states, unknown, rtol=0, atol=1e-6)
    assert not torch.allclose(head(events, mask, timestamps=random_times(mask)).states, unknown, atol=1e-3)


# -- serving ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_server(start_grpc_server, models_dir):
    """The real server with the installed plugins (ar, lstm, vae, video) and the tiny encoder."""
    registry = load_registry(extra_plugins={"tiny": TinyPlugin()}, env={})
    with start_grpc_server(registry, models_dir, default_encoder=TinyEncoder.name) as running:
        yield running


def chain_walk(length: int) -> tuple[list[int], int]:
    """``length`` successive items along the successor map and the one after them, all distinct."""
    successor = successor_map()
    for start in range(N_ITEMS):
        walk = [start]
        while len(walk) <= length:
            walk.append(successor[walk[-1]])
        if len(set(walk)) == len(walk):
            return walk[:-1], walk[-1]
    raise AssertionError("the successor map has no walk that long")


@pytest.mark.parametrize("head", HEADS)
def test_recommend_serves_each_head_with_its_offline_ranking(head, head_server, models_dir):
    items, following = chain_walk(length=5)  # the model has learned what follows a walk
    history = [ClientEvent(str(item), "watch", T0 + 3600 * t) for t, item in enumerate(items)]
    with TemporecClient(head_server.target, timeout=30) as client:
        result = client.recommend("video", history=history, head=head, k=5)
    assert (result.head, result.encoder) == (head, TinyEncoder.name)
    assert result.item_ids[0] == str(following)

    loaded = load_model(artifact(models_dir, head), HEADS)
    batch = EventBatch.from_histories([items], [[0] * len(items)], [[T0 + 3600 * t for t in range(len(items))]], 16)
    scores = loaded.model.scores(batch)[0]
    scores[items] = float("-inf")  # the domain's rule: no repeats
    best = scores.topk(5)
    assert result.item_ids == [loaded.catalog.item_ids[i] for i in best.indices]
    assert [item.score for item in result.items] == pytest.approx(best.values.tolist(), rel=1e-5)


def test_hstu_trains_through_the_command_and_serves(tmp_path, capsys):
    data = write_ml100k(tmp_path)
    argv = ["train", "--data", str(data), "--head", "hstu", "--no-text", "--epochs", "2", "--dim", "16",
            "--max-len", "8", "--threads", "1", "--device", "cpu", "--head-option", "heads=2",
            "--head-option", "time_buckets=32", "--out", str(tmp_path / "models")]  # fmt: skip
    assert run_command(train_command, argv) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = read_manifest(path)
    assert manifest.head == "hstu" and manifest.head_options == {**HSTUHead.options, "heads": 2, "time_buckets": 32}

    loaded = load_model(path, HEADS)
    index = {item: i for i, item in enumerate(loaded.catalog.item_ids)}
    history = [Event(item, "watch", 880_000_000 + 60 * t) for t, item in enumerate(["3", "4", "5"])]
    batch = EventBatch.from_histories(
        [[index[e.item_id] for e in history]], [[0] * 3], [[e.timestamp for e in history]], 8
    )
    scores = loaded.model.scores(batch)[0]
    scores[[index[e.item_id] for e in history]] = float("-inf")  # the domain's rule: no repeats

    async def ask():
        service = RecommenderService(load_registry(), path.parent, device="cpu")
        await service.start()
        try:
            return await service.recommend(Query("video", history, head="hstu", k=3))
        finally:
            await service.close()

    result = asyncio.run(ask())
    assert result.head == "hstu"
    assert [item.item_id for item in result.items] == [loaded.catalog.item_ids[i] for i in scores.topk(3).indices]
