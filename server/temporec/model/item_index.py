"""An approximate index of a catalog's item vectors (faiss, the optional extra
``temporec[faiss]``): for catalogs too large to score whole for every request.

The index proposes each user's best few hundred items by inner product (an inverted file:
the vectors clustered into ``lists``, ``probe`` of them searched per query); the server then
scores those proposals exactly, with the model's own score (a repeat-aware model's history
bonus included), and returns the top k of them. A compact artifact holds the index
(``temporec compact --index ivf``); ``benchmarks/catalog.py`` measures its recall@10
against exact scoring.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from temporec.contract.errors import FailedPrecondition

INDEX_FILE = "items.faiss"
TRAINING_SAMPLE = 40  # vectors per list that the clustering learns from (at most; faiss asks 39)


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise FailedPrecondition(
            "index: the approximate item index needs faiss; pip install 'temporec[faiss]' (or faiss-cpu)"
        ) from exc
    return faiss


def default_lists(n_items: int) -> int:
    """About 4 sqrt(n) lists, faiss's rule of thumb: 4,000 for a million items."""
    return max(1, min(n_items // 39, round(4 * math.sqrt(n_items))))


class ItemIndex:
    """An inverted-file index over (n_items, dim) vectors, searched by inner product."""

    def __init__(self, index, probe: int):
        self.index = index
        self.probe = probe
        index.nprobe = probe

    @classmethod
    def build(cls, vectors: torch.Tensor, lists: int | None = None, probe: int | None = None, seed: int = 0):
        """Cluster ``vectors`` (float32 on the CPU) into ``lists`` and file each under its list.
        ``probe``: the lists searched per query (default: a sixteenth, at least 8)."""
        faiss = _faiss()
        data = np.ascontiguousarray(vectors.detach().float().cpu().numpy())
        n_items, dim = data.shape
        lists = lists or default_lists(n_items)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = np.random.default_rng(seed).permutation(n_items)[: lists * TRAINING_SAMPLE]
        index.train(data[np.sort(sample)])
        index.add(data)
        return cls(index, probe or max(8, lists // 16))

    @classmethod
    def load(cls, path: Path, probe: int):
        faiss = _faiss()
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY), probe)

    def save(self, path: Path) -> None:
        _faiss().write_index(self.index, str(path))

    @property
    def lists(self) -> int:
        return self.index.nlist

    def search(self, states: torch.Tensor, depth: int) -> torch.Tensor:
        """(B, depth) long catalog rows: each state's best ``depth`` items by inner
        product, best first (-1 where fewer were found)."""
        queries = np.ascontiguousarray(states.detach().float().cpu().numpy())
        _, rows = self.index.search(queries, depth)
        return torch.from_numpy(rows)
