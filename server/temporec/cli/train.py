"""``temporec train``: train a head for a domain on a data set and save the model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from temporec.cli.common import (
    add_encoder_arguments,
    encoder_options,
    metrics_table,
    parse_options,
    pick,
)
from temporec.contract.errors import InvalidArgument, allowed
from temporec.model.recommender import SIMILARITIES
from temporec.training.next_item import SCHEDULES, TUNINGS, TrainConfig

DEFAULTS = TrainConfig()

DESCRIPTION = """\
Train a temporal head on a domain's data set and save the model as an artifact.

The domain reads the data and trains (Domain.train). The encoder embeds every item's
text once (cached). By default the head learns next-item prediction on each user's
history minus its last two events, early-stopping on the second-to-last (validation);
the last is the test. Domains fit this to their field:

  video             MovieLens ratings.dat/movies.dat or u.data/u.item, a
                    *.user_sequences.tsv with movies.dat beside it, RecBole
                    .inter/.item, or events.csv|jsonl with items.csv|jsonl
  retail            Taobao user_behavior*.csv or event files; items without text are
                    represented by id and category, purchases weigh most as targets
  news              MIND-format news.tsv + behaviors.tsv (MIND, NeMig): the clicks
                    before each user's test impression, articles by their text alone
  customer_service  StackFAQ, BANKING77 or conversations.jsonl: the turns are text,
                    the right replies the targets, early-stopping on validation MRR
"""

EPILOG = """\
The run prints the model's metrics on the test split (and its baselines', for the
next-item domains), then, on the last line, the artifact directory
(<out>/<domain>-<head>-<version>). Next-item training writes a checkpoint after every
epoch under <out>/.checkpoints/: the same command, run again after an interruption,
resumes. `temporec eval --model DIR` measures the model with its domain's metrics.

Under torchrun, each process trains on its share of every batch (--batch-size is the
global batch) and rank 0 alone shows progress, writes checkpoints and the artifact and
prints the result (docs/operations.md, "Training in several processes"):
  torchrun --nproc_per_node 2 -m temporec train --domain video --data ../shared/data/ml-1m --threads 1

Examples:
  temporec train --domain video --data ../shared/data/ml-1m --out models/
  temporec train --domain video --head lstm --data ml-100k/ --epochs 30 --dim 128 \\
      --head-option cell=gru --head-option layers=2
  temporec train --domain video --data ml-100k/ml-100k.inter --no-ids --device cuda
  temporec train --domain retail --data ../shared/data/taobao-userbehavior --minutes 15
  temporec train --domain news --data ../shared/data/nemig/en --epochs 10
  temporec train --domain customer_service --data ../shared/data/banking77 --dim 128
  temporec train --domain finance --data ../shared/data/financial-phrasebank/Sentences_AllAgree.txt \\
      --tuning lora --batch-size 32 --length-buckets --minutes 30
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a data set",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("what to train")
    data.add_argument("--data", required=True, metavar="PATH", help="data set file or directory")
    data.add_argument("--domain", default="video", help="domain that reads the data (default video)")
    data.add_argument("--head", default="", help="temporal head (default: the domain's default head)")
    data.add_argument(
        "--head-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="head option; VALUE is JSON or text (repeatable)",
    )
    data.add_argument("--out", default="models", metavar="DIR", help="where the artifact goes (default models/)")
    add_encoder_arguments(parser, "registered encoder (default local)", default="local")
    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--dim", type=int, default=DEFAULTS.dim, help=f"model width (default {DEFAULTS.dim})")
    model.add_argument(
        "--max-len",
        type=int,
        default=DEFAULTS.max_len,
        help=f"events of history the head reads (default {DEFAULTS.max_len})",
    )
    model.add_argument(
        "--ids",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.use_ids,
        help="an id embedding per item beside its text and features; --no-ids: the text and features alone "
        "(default: the domain's choice, on but for a retail catalog whose items recur too seldom to learn one)",
    )
    model.add_argument(
        "--tuning",
        choices=TUNINGS,
        default=DEFAULTS.tuning,
        help="how the language model learns from the users: frozen (a linear projection of its vectors), "
        "adaptor (a mixture of whitening experts over them, UniSRec's), lora (low-rank adapters in the "
        "encoder) or top (the encoder's top layers trained); docs/encoders.md "
        f"(default {DEFAULTS.tuning})",
    )
    tuning = parser.add_argument_group("tuning the language model (--tuning)")
    tuning.add_argument(
        "--adaptor-experts",
        type=int,
        default=DEFAULTS.adaptor_experts,
        help=f"adaptor: experts (default {DEFAULTS.adaptor_experts})",
    )
    tuning.add_argument(
        "--lora-rank", type=int, default=DEFAULTS.lora_rank, help=f"lora: rank (default {DEFAULTS.lora_rank})"
    )
    tuning.add_argument(
        "--lora-alpha",
        type=float,
        default=DEFAULTS.lora_alpha,
        help=f"lora: scale alpha (default {DEFAULTS.lora_alpha:g})",
    )
    tuning.add_argument(
        "--lora-targets",
        nargs="+",
        default=DEFAULTS.lora_targets,
        metavar="LAYER",
        help=f"lora: names of the linear layers to adapt (default {' '.join(DEFAULTS.lora_targets)}: BERT's)",
    )
    tuning.add_argument(
        "--top-layers",
        type=int,
        default=DEFAULTS.top_layers,
        help=f"top: layers trained (default {DEFAULTS.top_layers})",
    )
    tuning.add_argument(
        "--encoder-layers",
        type=int,
        default=DEFAULTS.encoder_layers,
        metavar="N",
        help="lora, top: keep only the language model's first N layers, a faster model (default 0: all)",
    )
    tuning.add_argument(
        "--encoder-lr",
        type=float,
        default=DEFAULTS.encoder_lr,
        help=f"lora, top: the encoder's learning rate (default {DEFAULTS.encoder_lr:g})",
    )
    tuning.add_argument(
        "--text-max-length",
        type=int,
        default=DEFAULTS.text_max_length,
        help=f"lora, top: tokens kept per item text (default {DEFAULTS.text_max_length})",
    )
    tuning.add_argument(
        "--tuned-items-per-step",
        type=int,
        default=DEFAULTS.tuned_items_per_step,
        help="lora, top: item texts re-encoded with gradients per step; the others come from the epoch's "
        f"encoding (default {DEFAULTS.tuned_items_per_step})",
    )
    tuning.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="lora, top: recompute the encoder's activations in the backward pass: less memory, more time",
    )
    model.add_argument(
        "--repeat-aware",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.repeat_aware,
        help="a learned bonus for the history's own items (recency, frequency, action), gated by the head's "
        "state: for users who come back to items (default: the domain's choice, on for retail; docs/heads.md)",
    )
    model.add_argument(
        "--passed-over-weight",
        type=float,
        default=DEFAULTS.passed_over_weight,
        metavar="W",
        help="weight of the loss that ranks each target against the items shown beside it and passed over "
        "(an impression's unclicked articles); 0: off (default: the domain's choice, 20 for news, else 1)",
    )
    model.add_argument(
        "--length-buckets",
        action="store_true",
        help="batch windows of similar lengths together: faster epochs where lengths vary, at some accuracy "
        "(docs/heads.md)",
    )
    model.add_argument(
        "--scale-ids",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.scale_ids,
        help="id embeddings start at std 1/dim and enter the events times sqrt(dim), as Transformers embed "
        "tokens; --no-scale-ids: std 1/sqrt(dim), unscaled (0.1's models) (default: the domain's choice, off "
        "for retail, else on)",
    )
    model.add_argument(
        "--ids-from-text",
        action="store_true",
        help="start the id embeddings at the text embeddings' principal components (LLM2BERT4Rec), not at zero or noise",
    )
    model.add_argument(
        "--init-from",
        metavar="ARTIFACT",
        default="",
        help="start from this artifact's weights (same data, head and shape, trained frozen or with the adaptor): "
        "train frozen first, then tune the encoder from that model (docs/encoders.md, two stages)",
    )
    model.add_argument("--no-text", action="store_true", help="represent items by id embeddings alone")
    model.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS.epochs,
        help=f"most epochs, a safety cap (default {DEFAULTS.epochs}): --minutes and --patience decide",
    )
    model.add_argument(
        "--patience",
        type=int,
        default=DEFAULTS.patience,
        help=f"epochs without a better validation score (NDCG@10; conversations: MRR) before stopping "
        f"(default {DEFAULTS.patience})",
    )
    model.add_argument(
        "--batch-size", type=int, default=DEFAULTS.batch_size, help=f"windows per step (default {DEFAULTS.batch_size})"
    )
    model.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"AdamW learning rate (default {DEFAULTS.lr:g})")
    model.add_argument(
        "--weight-decay",
        type=float,
        default=DEFAULTS.weight_decay,
        help=f"AdamW weight decay (default {DEFAULTS.weight_decay:g})",
    )
    model.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=DEFAULTS.schedule,
        help="learning rate: constant, or a cosine decay to 0 over the epochs or the time budget, "
        f"whichever ends the run first (default {DEFAULTS.schedule})",
    )
    model.add_argument(
        "--warmup-steps",
        type=int,
        default=DEFAULTS.warmup_steps,
        help=f"steps of linear learning-rate warm-up (default {DEFAULTS.warmup_steps})",
    )
    model.add_argument(
        "--dropout", type=float, default=DEFAULTS.dropout, help=f"event dropout (default {DEFAULTS.dropout:g})"
    )
    model.add_argument(
        "--negatives",
        type=int,
        default=DEFAULTS.negatives,
        help="sampled negatives per step; 0 = full softmax over the catalog (default: the domain's choice, 1024 for retail, else the full softmax)",
    )
    model.add_argument(
        "--id-dropout",
        type=float,
        default=DEFAULTS.id_dropout,
        metavar="P",
        help="the share of item vectors a training step takes without their id (text and ids models): "
        "items are also learned by their text alone, as new items are scored (default 0: off)",
    )
    model.add_argument(
        "--unseen-negatives",
        action="store_true",
        help="catalog items without an event in the data are negatives too (default: the loss ranks targets "
        "among the items the data has, so a new item is not pushed down before anyone has seen it)",
    )
    model.add_argument(
        "--min-interactions",
        type=int,
        default=DEFAULTS.min_interactions,
        metavar="K",
        help="keep the K-core: drop items, then users, with fewer than K events until none is left; 0 keeps "
        "every event (default: the domain's choice, 5 for video, else 0)",
    )
    model.add_argument(
        "--similarity",
        choices=SIMILARITIES,
        default=DEFAULTS.similarity,
        help=f"how a user state scores an item (default {DEFAULTS.similarity})",
    )
    model.add_argument(
        "--temperature", type=float, default=DEFAULTS.temperature, help="divides cosine scores (e.g. 0.05; default 1)"
    )
    model.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"random seed (default {DEFAULTS.seed})")
    model.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N (default auto)")
    model.add_argument(
        "--minutes",
        type=float,
        default=DEFAULTS.time_budget_s / 60,
        help=f"stop training after this many minutes (default {DEFAULTS.time_budget_s / 60:g}; 0: no limit); "
        "with --patience, the budget decides how long training runs",
    )
    model.add_argument(
        "--threads",
        type=int,
        default=DEFAULTS.threads,
        help="torch CPU threads (default 0: one per core but one, so that another busy process does not stall training)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that `temporec --help` stays fast.
    from temporec.contract.domains import check_compatible
    from temporec.contract.registry import load_registry
    from temporec.model.artifacts import read_manifest
    from temporec.training import train_request
    from temporec.training.distributed import launched_rank

    main = launched_rank() == 0
    if not main:  # rank 0 tells how training goes; the others add only their problems and their digest
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("temporec.training.distributed").setLevel(logging.INFO)
    registry = load_registry()
    domain_cls = pick(registry.domains, args.domain, "domain")
    head_cls = pick(registry.heads, args.head or domain_cls.default_head, "head")
    encoder_cls = pick(registry.encoders, args.encoder, "encoder")
    check_compatible(head_cls, domain_cls)  # before the data and the encoder take their seconds to load
    config = train_config(args, head_cls)
    if not Path(args.data).exists():
        raise InvalidArgument(f"--data {args.data!r}: no such file or directory")

    encoder = encoder_cls(**encoder_options(args))
    try:
        domain = domain_cls()
        path = domain.train(train_request(domain, args.data, head_cls, encoder, config, args.out, args.cache_dir))
    finally:
        encoder.close()
    if not main:  # rank 0 prints the result
        return 0
    metrics = read_manifest(path).metrics
    print(metrics_table(metrics, name=head_cls.name))
    print(f"best epoch {metrics['best_epoch']:.0f} of {metrics['epochs']:.0f}")
    print(path)
    return 0


def train_config(args: argparse.Namespace, head_cls: type) -> TrainConfig:
    """The training settings the flags give (the domain may fit them to its data)."""
    head_options = parse_options(args.head_option, "--head-option")
    unknown = sorted(set(head_options) - set(head_cls.options))
    if unknown:
        raise InvalidArgument(f"--head-option {unknown[0]!r}: head {head_cls.name!r} takes {allowed(head_cls.options)}")
    return TrainConfig(
        dim=args.dim,
        max_len=args.max_len,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        dropout=args.dropout,
        patience=args.patience,
        seed=args.seed,
        use_text=not args.no_text,
        use_ids=args.ids,
        tuning=args.tuning,
        adaptor_experts=args.adaptor_experts,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_targets=list(args.lora_targets),
        top_layers=args.top_layers,
        encoder_layers=args.encoder_layers,
        encoder_lr=args.encoder_lr,
        text_max_length=args.text_max_length,
        tuned_items_per_step=args.tuned_items_per_step,
        gradient_checkpointing=args.gradient_checkpointing,
        ids_from_text=args.ids_from_text,
        init_from=args.init_from,
        scale_ids=args.scale_ids,
        repeat_aware=args.repeat_aware,
        passed_over_weight=args.passed_over_weight,
        length_buckets=args.length_buckets,
        head_options=head_options,
        negatives=args.negatives,
        unseen_negatives=args.unseen_negatives,
        id_dropout=args.id_dropout,
        min_interactions=args.min_interactions,
        similarity=args.similarity,
        temperature=args.temperature,
        device=args.device,
        time_budget_s=args.minutes * 60,
        threads=args.threads,
    )
