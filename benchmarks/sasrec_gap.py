"""Where the id-only ``ar`` head loses to a textbook SASRec, one difference at a time.

    .venv/bin/python benchmarks/sasrec_gap.py                    # Amazon Office, 5 min a run, 2 at a time
    .venv/bin/python benchmarks/sasrec_gap.py --set amazon-beauty --minutes 10

Every row trains on the same leave-one-out split of the same events (``temporec.training
.splits``), stops on the same rule (validation NDCG@10, patience 10, the same time budget,
one torch thread) and is ranked by the same code (full ranking, the history masked), so
the rows differ only in the model and its optimiser. ``TextbookSASRec`` below is written
from the paper (Kang & McAuley, ICDM'18), independent of temporec's model code: item
embeddings scaled by sqrt(d), learned positions counted from the most recent event, blocks
whose attention takes its queries from the normalised input and adds back to them,
a ReLU feed-forward as wide as the model, and the full softmax over the catalog, trained
with Adam. The ``ar`` rows go through ``temporec.training.train``, as ``temporec train``
does, with the ``events`` domain. Section ``sasrec-gap`` of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import results_file
from amazon import arguments, fit_ids_only, load_amazon, metric_cells, side_by_side
from temporec.contract.types import Dataset
from temporec.training import TrainConfig
from temporec.training.leave_one_out import rank_split
from temporec.training.ranking_metrics import summarize
from temporec.training.splits import IGNORE, encode, history_batch, training_examples

SECTION = "sasrec-gap"


class TextbookSASRec(nn.Module):
    def __init__(self, n_items: int, dim: int = 64, max_len: int = 50, blocks: int = 2, dropout: float = 0.2):
        super().__init__()
        self.dim, self.max_len = dim, max_len
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)  # 0: padding
        self.positions = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        self.query_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
        self.attentions = nn.ModuleList(nn.MultiheadAttention(dim, 1, dropout, batch_first=True) for _ in range(blocks))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
        self.ffns = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout))
            for _ in range(blocks)
        )
        self.norm = nn.LayerNorm(dim)
        # Glorot-normal for every matrix, as the reference implementations start: at torch's
        # N(0, 1) embeddings, scaled by sqrt(d), the first logits are in the hundreds.
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_normal_(parameter)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item numbers (catalog index + 1, 0 on padding) -> (B, L, dim) states."""
        length = items.shape[1]
        mask = (items > 0).unsqueeze(-1)
        x = self.items(items) * self.dim**0.5 + self.positions(torch.arange(self.max_len - length, self.max_len))
        x = self.dropout(x) * mask
        # True = may not attend: later positions, and padding (but each position may attend
        # to itself, so that a padding row has something to attend to and stays finite).
        blocked = torch.ones(length, length, dtype=torch.bool).triu(1) | (items == 0)[:, None, :]
        blocked &= ~torch.eye(length, dtype=torch.bool)  # (B, L, L): one attention head
        for query_norm, attention, ffn_norm, ffn in zip(self.query_norms, self.attentions, self.ffn_norms, self.ffns):
            q = query_norm(x)
            x = q + attention(q, x, x, attn_mask=blocked, need_weights=False)[0]
            x = ffn_norm(x)
            x = (x + ffn(x)) * mask
        return self.norm(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.items.weight[1:].T


@dataclass
class Run:
    name: str
    why: str
    config: dict = field(default_factory=dict)  # TrainConfig fields over BASE (ar rows only)
    textbook: bool = False
    no_times: bool = False  # every timestamp unknown: no time-gap signal


BASE = dict(use_text=False, use_ids=True, seed=0, threads=1, device="cpu")
RUNS = (
    Run("textbook SASRec", "the reference", textbook=True),
    Run("ar, defaults", "temporec train --head ar --no-text"),
    Run("ar, 0.1's ids and batches", "both changes below undone", {"scale_ids": False, "length_buckets": True}),
    Run("ar, ids unscaled", "--no-scale-ids: ids at std 1/sqrt(d), not 1/d times sqrt(d)", {"scale_ids": False}),
    Run("ar, batches by length", "--length-buckets: each batch of similar lengths", {"length_buckets": True}),
    Run("ar, 1,024 sampled negatives", "0.1's retail default", {"negatives": 1024}),
    Run("ar, no time gaps", "the data's days as gap buckets", no_times=True),
    Run("ar, SASRec's block shape", "post-LN, MLP as wide as the model", {"head_options": {"norm": "post", "mlp_ratio": 1}}),
)  # fmt: skip


def fit_textbook(dataset: Dataset, config: TrainConfig) -> tuple[torch.Tensor, dict]:
    """Train a ``TextbookSASRec`` as ``train`` trains a head; the test ranks and what it did."""
    torch.manual_seed(config.seed)
    seqs = encode(dataset, ["purchase"])
    examples = training_examples(seqs, config.max_len)
    model = TextbookSASRec(len(dataset.catalog), config.dim, config.max_len, dropout=config.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))

    def numbered(batch) -> torch.Tensor:
        return torch.where(batch.mask, batch.items + 1, 0)

    @torch.no_grad()
    def ranks(split: str) -> torch.Tensor:
        model.eval()
        score = lambda users, stops: model.logits(
            model(numbered(history_batch(seqs, users, stops, config.max_len)))[:, -1]
        )  # noqa: E731
        result = rank_split(score, seqs, split, config.eval_batch_size, torch.device("cpu"))
        model.train()
        return result

    started, best, best_score, stale, epoch, best_epoch = time.monotonic(), None, -1.0, 0, 0, 0
    while stale < config.patience and time.monotonic() - started < config.time_budget_s:
        epoch += 1
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        for rows in torch.randperm(len(examples), generator=generator).split(config.batch_size):
            batch, targets = examples.rows(rows)
            first = int(batch.mask.any(0).nonzero()[0])
            states = model(numbered(batch)[:, first:])
            targets = targets[:, first:]
            known = targets != IGNORE
            loss = F.cross_entropy(model.logits(states[known]), targets[known])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if time.monotonic() - started >= config.time_budget_s:
                break
        score = summarize(ranks("valid"))["ndcg@10"]
        if score > best_score:
            best, best_score, stale, best_epoch = {k: v.clone() for k, v in model.state_dict().items()}, score, 0, epoch
        else:
            stale += 1
    model.load_state_dict(best)
    return ranks("test"), {"epochs": epoch, "best_epoch": best_epoch, "seconds": time.monotonic() - started}


def measure(run: Run, data: Path, minutes: float, work: str) -> dict:
    """One row, in its own process (one torch thread each, so two run side by side)."""
    torch.set_num_threads(1)
    dataset = load_amazon(data)
    if run.no_times:
        for events in dataset.sequences.values():
            events[:] = [replace(e, timestamp=0.0) for e in events]
    config = replace(TrainConfig(**BASE), time_budget_s=minutes * 60, **run.config)
    started = time.monotonic()
    ranks, trained = (
        fit_textbook(dataset, config) if run.textbook else fit_ids_only(dataset, "ar", config, Path(work) / run.name)
    )
    trained.setdefault("seconds", time.monotonic() - started)
    return {"ranks": ranks.numpy(), **trained}


def render(runs: dict[str, dict], dataset: Dataset, minutes: float) -> str:
    lines = [
        "| model | why this row | HR@10 (95% CI) | NDCG@10 (95% CI) | epochs (best) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for run in RUNS:
        result = runs[run.name]
        cells = metric_cells(result["ranks"])
        lines.append(f"| {run.name} | {run.why} | {' | '.join(cells)} | {result['epochs']} ({result['best_epoch']}) |")
    events = sum(map(len, dataset.sequences.values()))
    return (
        f"Data: `{Path(dataset.name).name}` ({len(dataset.sequences)} users, {len(dataset.catalog)} items, {events} "
        f"events), ids only. Each row: {minutes:g} min, validation NDCG@10 with patience 10, one torch thread, "
        "dim 64, 2 blocks, max_len 50, batch 128, lr 1e-3; test split: leave-one-out, full ranking, the history "
        "masked; intervals: bootstrap over the test users.\n\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, 5.0, argv)
    started = time.monotonic()
    runs = side_by_side(measure, RUNS, args)
    body = render(runs, load_amazon(args.folder), args.minutes)
    results_file.record(args.out, SECTION, "sasrec_gap.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
