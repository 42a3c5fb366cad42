"""``temporec eval``: evaluate a trained model with its domain's metrics, baselines beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from temporec.cli.common import (
    add_encoder_arguments,
    encoder_options,
    metrics_table,
    pick,
)
from temporec.contract.errors import FailedPrecondition, InvalidArgument

DESCRIPTION = """\
Evaluate a saved model the way its domain measures its field (Domain.evaluate), with
the baselines ranked in the same run:

  video, and by default   leave-one-out: each user's last event is the test target, the
                          one before it the validation target; every catalog item is
                          ranked with the user's history masked out (a target that is
                          in the history keeps its place, the history's other items
                          go): HR@K, NDCG@K (K = 5, 10, 20) and MRR, beside popularity
  events                  the same
  retail                  the same, beside popularity and "recent" (the history's items,
                          latest first, then popularity), plus split 'purchase': the
                          test targets that are purchases, ranked under the shop's rules
                          (no history mask: bought durable items, the cart, stock and
                          filters), beside popularity and "recent"
  news                    each test impression's candidates: AUC, MRR, nDCG@5/10, beside
                          popularity, recency, BM25 and the frozen encoder
  customer_service        every reply for each test conversation: accuracy@1/@3,
                          P@1/@3, MRR, beside popularity, BM25 and the frozen encoder
  finance                 the label of each test sentence: accuracy, macro-F1, per-class
                          F1 with 95% bootstrap intervals, beside the majority class, the
                          keyword lexicon and the frozen encoder + logistic regression
"""

EPILOG = """\
Without --data the model is evaluated on the data it was trained on (the path in its
manifest), read by its domain. Events of items outside the model's catalog are dropped
and counted. Domains that must embed new text (customer_service and finance: the turns)
start the model's encoder, with the --encoder-option flags; it must give the vector space
the model was trained in. A model that tuned its language model (--tuning lora | top)
embeds them with its own tuned encoder (its artifact's encoder/), and its frozen
baselines with the encoder the tuning started from. Metric keys are <split>.<metric> for the model and
<baseline>.<split>.<metric> for the baselines; 'users' counts the evaluated cases
(users, impressions or conversations).

Examples:
  temporec eval --model models/video-lstm-20250101120000-1a2b3c4d
  temporec eval --model models/video-lstm-20250101120000-1a2b3c4d --data ml-100k/ --json
  temporec eval --model models/customer_service-lstm-20250101120000-1a2b3c4d --device cpu
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained model with its domain's metrics and baselines",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="PATH", help="artifact directory")
    parser.add_argument(
        "--data", default=None, metavar="PATH", help="data set to evaluate on (default: the training data)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--batch-size", type=int, default=256, help="users per scoring matmul (default 256)")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:N (default auto)")
    add_encoder_arguments(parser, "encoder for new texts (default: the one the model was trained with)", default="")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from temporec.contract.registry import load_registry
    from temporec.model.artifacts import load_model
    from temporec.model.devices import resolve_device
    from temporec.training import eval_request

    registry = load_registry()
    loaded = load_model(args.model, registry.heads)
    manifest = loaded.manifest
    domain_cls = pick(registry.domains, manifest.domain, "domain")
    data = evaluation_data(args.data, manifest.data_name)
    loaded.model.to(resolve_device(args.device))
    name, options = args.encoder or manifest.encoder, encoder_options(args)
    encoder = ModelEncoder(registry.encoders, name, options, loaded)
    base = ModelEncoder(registry.encoders, name, options, loaded, base=True) if manifest.tuned_encoder else None
    try:
        request = eval_request(loaded, data, encoder, args.batch_size, args.cache_dir, open_base_encoder=base)
        report = domain_cls().evaluate(request)
    finally:
        encoder.close()
        if base is not None:
            base.close()
    if args.json:
        print(report.to_json())
        return 0
    print(f"model: {report.model}")
    print(f"data:  {report.data}" + ("" if report.same_data_as_training else "  (not the training data)"))
    print(f"users: {report.users}; events dropped (items outside the model's catalog): {report.dropped_events}")
    print(metrics_table(report.metrics, name=report.head))
    return 0


def evaluation_data(given: str | None, trained_on: str) -> str:
    """The data to evaluate on: ``--data``, else the model's training data."""
    if given is not None:
        if not Path(given).exists():
            raise InvalidArgument(f"--data {given!r}: no such file or directory")
        return given
    if not trained_on or not Path(trained_on).exists():
        raise InvalidArgument(
            f"--data: the model's training data {trained_on!r} is not there; give the data to evaluate on"
        )
    return trained_on


class ModelEncoder:
    """``open_encoder`` for ``Domain.evaluate``: the encoder ``name``, started on first
    call (loading one takes seconds, and most evaluations need none), checked to embed
    in the model's vector space, and closed by ``close``. For a model that tuned its
    language model, the tuned encoder that its artifact carries (run by the encoder it
    was trained with, as the server runs it); with ``base``, the encoder its tuning
    started from (the frozen baselines' vector space)."""

    def __init__(self, encoders: dict[str, type], name: str, options: dict, loaded, base: bool = False):
        self.encoders, self.name, self.options, self.base = encoders, name, options, base
        self.manifest, self.path = loaded.manifest, loaded.path
        self.encoder = None

    @property
    def tuned(self) -> bool:
        return bool(self.manifest.tuned_encoder) and not self.base

    def __call__(self):
        if self.encoder is None:
            self.encoder = self._tuned() if self.tuned else self._checked()
        return self.encoder

    def _checked(self):
        expected = self.manifest.encoder_model_id
        if self.manifest.tuned_encoder:  # "<base model>+<mode>": the base
            expected = expected.rsplit("+", 1)[0]
        encoder = pick(self.encoders, self.name, "encoder")(**self.options)
        if encoder.model_id != expected:
            encoder.close()
            raise FailedPrecondition(
                f"--encoder {self.name!r} embeds texts as {encoder.model_id!r}, but the model was trained on "
                f"{expected!r} embeddings; give the encoder and options it was trained with"
            )
        return encoder

    def _tuned(self):
        tuned = self.manifest.tuned_encoder
        if self.name != self.manifest.encoder:
            raise FailedPrecondition(
                f"--encoder {self.name!r}: the model tuned its language model in training ({tuned['tuning']!r}); "
                f"only its own, run by {self.manifest.encoder!r}, embeds texts as its items were"
            )
        model = {"model": str(self.path / tuned["model"]), "max_length": int(tuned["max_length"])}
        return pick(self.encoders, self.name, "encoder")(**{**self.options, **model})

    def close(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
