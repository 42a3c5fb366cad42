"""Item indexes of a catalog's item vectors (faiss, the optional extra ``temporec[faiss]``):
for catalogs too large to score whole, in float32, for every request.

An index proposes each user's best few hundred items by inner product; the server then
scores those proposals exactly, with the model's own score (a repeat-aware model's history
bonus included), and returns the top k of them. Two kinds:

- ``ivf``, approximate: the vectors clustered into ``lists``, ``probe`` of them searched
  per query, each list's vectors in float16. Its probe is calibrated on the model's own
  states (``calibrated_probe``).
- ``flat``, exact: every vector read, in float16, by faiss's SIMD scan: for a float16
  table (what a compact artifact holds) the same inner products as scoring the whole
  table, from half the bytes, 3-4 times faster on one core at a million items.

A compact artifact holds the index (``temporec compact --index ivf|flat``) with the recall
of its proposals measured as it is built; ``benchmarks/catalog.py`` measures both against
exact scoring.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.model.recommender import EventBatch, SequenceRecommender, top_k_in_slices

INDEX_FILE = "items.faiss"
KINDS = ("ivf", "flat")
TRAINING_SAMPLE = 40  # vectors per list that the clustering learns from (at most; faiss asks 39)
#: How many items the index proposes per item asked for (then scored exactly): recall's margin.
PROPOSALS_PER_ITEM = 10
MIN_PROPOSALS = 100
#: What a calibrated probe finds of the exact top 10 (proposals scored exactly).
TARGET_RECALL = 0.99
CALIBRATION_K = 10
CALIBRATION_HISTORIES, CALIBRATION_LENGTH = 256, 20  # the sampled histories it is measured on
EXACT_SLICE = 65_536  # catalog rows scored at once for the exact top k


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise FailedPrecondition(
            "index: the item index needs faiss; pip install 'temporec[faiss]' (or faiss-cpu)"
        ) from exc
    return faiss


def _ivf(faiss, data: np.ndarray, lists: int, seed: int):
    """An inverted file of ``lists`` clusters, trained on a sample of ``data``, holding it."""
    quantizer = faiss.IndexFlatIP(data.shape[1])
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, data.shape[1], lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
    )  # by_residual False: the vectors themselves in float16, read as they are
    index.cp.seed = seed
    sample = np.random.default_rng(seed).permutation(len(data))[: lists * TRAINING_SAMPLE]
    index.train(data[np.sort(sample)])
    index.add(data)
    return index


def default_lists(n_items: int) -> int:
    """About 4 sqrt(n) lists, faiss's rule of thumb: 4,000 for a million items."""
    return max(1, min(n_items // 39, round(4 * math.sqrt(n_items))))


def proposal_depth(k: int, forbidden: int = 0) -> int:
    """The proposals asked of the index for a query's best ``k`` with ``forbidden`` rows."""
    return max(PROPOSALS_PER_ITEM * k, MIN_PROPOSALS) + forbidden


class ItemIndex:
    """A faiss index over (n_items, dim) vectors, searched by inner product: ``kind``
    "ivf" (approximate) or "flat" (exact, float16)."""

    def __init__(self, index, probe: int | None = None, recall: float | None = None):
        self.index = index
        if probe is not None:
            self.probe = probe
        self.recall = recall  # what its proposals found of the exact top 10 as it was built; None: not measured

    @property
    def kind(self) -> str:
        return "ivf" if hasattr(self.index, "nprobe") else "flat"

    @property
    def probe(self) -> int | None:
        """The lists searched per query (faiss's ``nprobe``); None for a flat index."""
        return getattr(self.index, "nprobe", None)

    @probe.setter
    def probe(self, probe: int) -> None:
        self.index.nprobe = probe

    @property
    def lists(self) -> int | None:
        return getattr(self.index, "nlist", None)

    def describe(self) -> dict:
        """What the manifest records of it (``Manifest.item_index``)."""
        described = {"kind": self.kind}
        if self.kind == "ivf":
            described.update(lists=self.lists, probe=self.probe)
        if self.recall is not None:
            described["recall"] = round(self.recall, 4)
        return described

    @classmethod
    def build(
        cls,
        vectors: torch.Tensor,
        kind: str = "ivf",
        lists: int | None = None,
        probe: int | None = None,
        seed: int = 0,
        queries: torch.Tensor | None = None,
    ):
        """An index of ``kind`` over ``vectors``, its recall measured on ``queries`` when
        given. "ivf": ``vectors`` clustered into ``lists``, each filed under its list in
        float16; ``probe``: the lists searched per query; when None, the fewest that find
        ``TARGET_RECALL`` of ``queries``' exact top 10 (``calibrated_probe``), or, without
        queries, a sixteenth of the lists (at least 8)."""
        if kind not in KINDS:
            raise InvalidArgument(f"index: {kind!r}; allowed: {', '.join(KINDS)}")
        faiss, data = _faiss(), _array(vectors)
        if kind == "flat":
            if lists or probe:
                raise InvalidArgument("index: lists and probe are an ivf index's; a flat index reads every vector")
            index = faiss.IndexScalarQuantizer(data.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
            index.add(data)
            built = cls(index)
            if queries is not None:
                built.recall = measured_recall(built, queries, vectors)
            return built
        built = cls(_ivf(faiss, data, lists or default_lists(len(data)), seed))
        built.probe = probe or max(8, built.lists // 16)
        if probe is None and queries is not None:
            built.probe, built.recall = calibrated_probe(built, queries, vectors)
        return built

    @classmethod
    def load(cls, path: Path, probe: int | None = None):
        faiss = _faiss()
        # as many search threads as torch has (serve --threads): faiss's OpenMP pool would
        # take every core, its idle threads spinning beside the server's (1 client: 7.2 -> 5.7 ms)
        faiss.omp_set_num_threads(torch.get_num_threads())
        # read into memory, not mapped: a search through mapped lists took 4.1 ms, 0.6 read
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY), probe)

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))

    def search(self, states: torch.Tensor, depth: int) -> torch.Tensor:
        """(B, depth) long catalog rows: each state's best ``depth`` items by inner
        product, best first (-1 where fewer were found)."""
        _, rows = self.index.search(_array(states), depth)
        return torch.from_numpy(rows)


def model_index(
    model: SequenceRecommender, kind: str = "ivf", lists: int | None = None, probe: int | None = None
) -> ItemIndex:
    """The index of ``kind`` of ``model``'s catalog, its recall measured (and an ivf
    index's probe, when None, calibrated) on the model's states after
    ``CALIBRATION_HISTORIES`` histories of catalog items drawn at random. Such histories
    mix more topics than a real user's, so their best items lie in more lists: the probe
    they ask for errs on the wide side."""
    with torch.inference_mode():
        vectors = model.candidate_vectors()
        queries = None if probe else model.user_states(_random_histories(model))
        return ItemIndex.build(vectors, kind, lists, probe, queries=queries)


def _random_histories(model: SequenceRecommender, seed: int = 0) -> EventBatch:
    generator = torch.Generator().manual_seed(seed)
    size = (CALIBRATION_HISTORIES, CALIBRATION_LENGTH)
    items = torch.randint(model.n_items, size, generator=generator)
    actions = torch.randint(model.actions.num_embeddings, size, generator=generator)
    times = [[60.0 * t for t in range(CALIBRATION_LENGTH)]] * CALIBRATION_HISTORIES
    return EventBatch.from_histories(items.tolist(), actions.tolist(), times, model.head.max_len)


def calibrated_probe(index: ItemIndex, queries: torch.Tensor, vectors: torch.Tensor) -> tuple[int, float]:
    """(probe, recall): the fewest lists (8, 16, 32, ... all) whose proposals, scored
    exactly, hold ``TARGET_RECALL`` of the exact top 10 of ``queries`` (Q, dim) over
    ``vectors``. The probe a catalog needs depends on how its vectors cluster, and a rule
    of thumb either reads far more lists than it needs or misses its items."""
    exact = exact_top(queries, vectors, CALIBRATION_K)
    probe, recall = 8, 0.0
    while True:
        index.probe = probe = min(probe, index.lists)
        recall = measured_recall(index, queries, vectors, exact)
        if recall >= TARGET_RECALL or probe == index.lists:
            return probe, recall
        probe *= 2


def measured_recall(
    index: ItemIndex, queries: torch.Tensor, vectors: torch.Tensor, exact: torch.Tensor | None = None
) -> float:
    """What share of the exact top 10 of ``queries`` over ``vectors`` (``exact``, computed
    when None) the index's proposals hold once scored exactly."""
    exact = exact_top(queries, vectors, CALIBRATION_K) if exact is None else exact
    return proposal_recall(index.search(queries, proposal_depth(CALIBRATION_K)), queries, vectors, exact)


def exact_top(queries: torch.Tensor, vectors: torch.Tensor, k: int) -> torch.Tensor:
    """(Q, k) rows of each query's best ``k`` vectors by inner product, exactly."""
    queries = queries.float()

    def scores_of(start: int, stop: int) -> torch.Tensor:
        return queries @ vectors[start:stop].float().T

    return top_k_in_slices(scores_of, len(vectors), k, EXACT_SLICE)[1]


def proposal_recall(
    proposals: torch.Tensor, queries: torch.Tensor, vectors: torch.Tensor, exact: torch.Tensor
) -> float:
    """What share of ``exact`` (Q, k) the index's ``proposals`` (Q, depth) hold once scored
    exactly (their best k by inner product with each query)."""
    found = 0
    for query, rows, best in zip(queries.float(), proposals, exact):
        rows = rows[rows >= 0]
        top = rows[(vectors[rows].float() @ query).topk(min(len(best), len(rows))).indices]
        found += len(set(top.tolist()) & set(best.tolist()))
    return found / exact.numel()


def _array(vectors: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(vectors.detach().float().cpu().numpy())
