"""``temporec export-triton``: write a Triton model repository for the configured encoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from temporec.contract.errors import InvalidArgument, NotFound, allowed

DESCRIPTION = """\
Write a Triton Inference Server model repository that serves the Hugging Face model of a
configured in-process encoder (the local encoder: all-MiniLM-L6-v2 unless its 'model'
option names another), or the language model that a trained model tuned (--artifact),
then validate it.

Formats (--format, repeatable; NAME is --name):
  python         NAME: Python backend, tokenizer + model inside, text in, embedding out.
                 Runs on any Triton with the Python backend (torch and transformers
                 installed), including the one bundled in nvidia-pytriton, on CPU or GPU.
  python-tokens  NAME_tokens: the same model, tokens in, hidden states out (temporec
                 tokenizes and pools).
  onnx           NAME_onnx (ONNX Runtime, dynamic batch and length, optional TensorRT),
                 NAME_tokenizer and NAME_pooling (Python backend), and NAME_ensemble:
                 tokenizer -> ONNX -> pooling, text in, embedding out. For GPU hosts
                 running the NGC Triton container.

Validation parses every config.pbtxt as Triton's ModelConfig, checks each model's files
and the ensemble's wiring, and runs each ONNX model with onnxruntime: its embeddings must
match the torch model's within 1e-4.
"""

EPILOG = """\
Examples:
  temporec export-triton --out triton-repo/
  temporec export-triton --out triton-repo/ --format onnx --instance-kind gpu --tensorrt fp16
  temporec export-triton --config temporec.toml --out triton-repo/ --format python --format onnx
  temporec export-triton --out triton-repo/ --artifact models/video-lstm-20261202-ab12cd34
  temporec export-triton --check triton-repo/

Serve it on this machine with the bundled Triton (CPU, Python backend):
  python -m temporec.triton.local_server triton-repo/ --grpc-port 8001
and point temporec at it (temporec.toml):
  [encoders.triton]
  url = "localhost:8001"
  model = "temporec_encoder"          # or temporec_encoder_ensemble on a GPU host
A tuned model's encoder is served through Triton by substituting the triton encoder
for the one it was trained with (encoder_substitutes = { local = "triton" }, with
[encoders.triton] model naming the exported model): its vector space is checked.
See docs/triton.md for GPU hosts, scaling and TLS.
"""


def add_parser(subparsers) -> None:
    from temporec.triton.configs import INSTANCE_KINDS, TENSORRT_PRECISIONS, Serving
    from temporec.triton.export import FORMATS, ExportSettings

    defaults, serving = ExportSettings(), Serving()
    parser = subparsers.add_parser(
        "export-triton",
        help="write a Triton model repository for an encoder",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="the model repository to write (created if needed)")
    target.add_argument("--check", metavar="DIR", help="validate an existing repository instead of writing one")
    source = parser.add_argument_group("the encoder")
    source.add_argument("--config", metavar="FILE", help="server TOML file whose [encoders.NAME] options to use")
    source.add_argument("--encoder", default="local", help="the in-process encoder to export (default local)")
    source.add_argument(
        "--model", default=None, help="its 'model' option: a model directory or hub id (overrides --config)"
    )
    source.add_argument(
        "--artifact",
        metavar="DIR",
        default=None,
        help="a trained model whose tuned language model to export (its encoder/ directory), instead of an encoder",
    )
    source.add_argument(
        "--max-length",
        type=int,
        default=None,
        help=f"tokens kept per text (default: the encoder's, else {defaults.max_length})",
    )
    what = parser.add_argument_group("what to write")
    what.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=FORMATS,
        default=None,
        help=f"repeatable (default {defaults.formats[0]})",
    )
    what.add_argument(
        "--name",
        default=None,
        help=f"model name prefix (default {defaults.name}; with --artifact, {defaults.name}_<model version>)",
    )
    run_as = parser.add_argument_group("how Triton runs it")
    run_as.add_argument(
        "--max-batch-size", type=int, default=serving.max_batch_size, help=f"default {serving.max_batch_size}"
    )
    run_as.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=serving.max_queue_delay_us,
        help=f"dynamic batching: longest wait for a fuller batch (default {serving.max_queue_delay_us})",
    )
    run_as.add_argument("--instance-kind", choices=INSTANCE_KINDS, default=serving.instance_kind, help="default cpu")
    run_as.add_argument(
        "--instances", type=int, default=serving.instances, help="model instances per device (default 1)"
    )
    run_as.add_argument(
        "--tensorrt", choices=TENSORRT_PRECISIONS, default="", help="ONNX model: TensorRT accelerator precision (GPU)"
    )
    parser.set_defaults(run=run)


def encoder_options(args: argparse.Namespace) -> dict:
    """The exported encoder's options: its config table, overridden by the flags."""
    from temporec.contract.registry import load_registry
    from temporec.serving.config import load_config

    registry = load_registry()
    cls = registry.encoders.get(args.encoder)
    if cls is None:
        raise NotFound(f"--encoder: unknown encoder {args.encoder!r}; installed: {allowed(registry.encoders)}")
    if not cls.exportable:
        raise InvalidArgument(
            f"--encoder: {args.encoder!r} does not run a Hugging Face model in process; exportable: "
            f"{allowed(n for n, c in registry.encoders.items() if c.exportable)}"
        )
    options = dict(load_config(args.config, env={}).encoders.get(args.encoder, {})) if args.config else {}
    if args.model is not None:
        options["model"] = args.model
    if args.max_length is not None:
        options["max_length"] = args.max_length
    return options


def artifact_encoder(args: argparse.Namespace) -> dict:
    """The tuned language model of the trained model ``args.artifact``: where it lies, its
    token budget, its vector space and a model name, its files checked against the manifest."""
    from temporec.model.artifacts import check_files, read_manifest
    from temporec.triton.export import ExportSettings

    path = Path(args.artifact)
    manifest = read_manifest(path)
    tuned = manifest.tuned_encoder
    if not tuned:
        raise InvalidArgument(
            f"--artifact: model {manifest.version!r} did not tune its language model (tuning "
            f"{manifest.training.get('tuning', 'frozen')!r}); its texts are embedded by encoder "
            f"{manifest.encoder!r} as {manifest.encoder_model_id!r}: export that encoder instead (--model)"
        )
    for flag in ("config", "model", "max_length"):
        if getattr(args, flag) is not None:
            raise InvalidArgument(
                f"--{flag.replace('_', '-')}: not with --artifact, whose tuned encoder is exported as trained"
            )
    check_files(path, manifest, under=f"{tuned['model']}/")
    return {
        "model": str(path / tuned["model"]),
        "max_length": int(tuned["max_length"]),
        "model_id": manifest.tuned_encoder_id,
        "name": f"{ExportSettings().name}_{manifest.version}",
    }


def run(args: argparse.Namespace) -> int:
    from temporec.triton.configs import Serving
    from temporec.triton.export import (
        Encoder,
        ExportSettings,
        export_repository,
        validate_repository,
    )

    defaults = ExportSettings()
    options = artifact_encoder(args) if args.artifact else encoder_options(args)
    settings = ExportSettings(
        model=options.get("model", ""),
        name=args.name or options.get("name", defaults.name),
        model_id=options.get("model_id", ""),
        formats=tuple(dict.fromkeys(args.formats or defaults.formats)),
        max_length=options.get("max_length", defaults.max_length),
        serving=Serving(args.max_batch_size, args.max_queue_delay_us, args.instance_kind, args.instances),
        tensorrt=args.tensorrt,
    )
    encoder = Encoder.load(settings.model, settings.model_id)
    if args.check:
        report = validate_repository(args.check, encoder, settings.max_length)
    else:
        result = export_repository(args.out, settings, encoder)
        print(f"wrote {', '.join(path.name for path in result.models)} into {args.out} ({encoder.model_id})")
        report = result.checks
    for line in report:
        print(f"  ok  {line}")
    return 0
