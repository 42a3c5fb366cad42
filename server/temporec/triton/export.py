"""Write and validate a Triton model repository for a Hugging Face text encoder.

``export_repository`` writes, for the encoder model that temporec's ``local`` encoder runs
(all-MiniLM-L6-v2 by default), any of these formats (``NAME`` is the model-name prefix)::

    python          NAME/            Python backend, text in: TEXT -> EMBEDDING
    python-tokens   NAME_tokens/     Python backend, tokens in: input_ids, attention_mask
                                     -> last_hidden_state (temporec tokenizes and pools)
    onnx            NAME_onnx/       ONNX Runtime (optionally TensorRT), tokens in, hidden out
                    NAME_tokenizer/  Python backend: TEXT -> input_ids, attention_mask
                    NAME_pooling/    Python backend: hidden states -> EMBEDDING
                    NAME_ensemble/   tokenizer -> ONNX -> pooling: TEXT -> EMBEDDING

Every model is written to a staging directory and renamed into place, so a failed export
never leaves half a model where Triton loads from. ``validate_repository`` parses every
``config.pbtxt`` as Triton's ``ModelConfig``, checks each model's files and the ensemble's
wiring, and runs each ONNX model with ``onnxruntime`` against the torch model.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from temporec.contract.errors import FailedPrecondition, InvalidArgument, allowed
from temporec.files import replaced_atomically
from temporec.triton import configs
from temporec.triton.configs import Serving

FORMATS = ("python", "python-tokens", "onnx")
VERSION = "1"  # the model version directory every exported model gets
HF_DIR = "hf"  # model and tokenizer files, beside model.py
ONNX_FILE = "model.onnx"
BACKEND_FILES = {"python": "model.py", "onnxruntime_onnx": ONNX_FILE, "ensemble": ""}  # the file a version needs
ONNX_OPSET = 18  # ONNX Runtime in the NGC Triton containers of 2024 and later reads it
TOLERANCE = 1e-4  # largest |ONNX - torch| allowed per embedding component
#: Texts of different lengths and scripts, so that padding and truncation are exercised.
SAMPLE_TEXTS = (
    "Toy Story (1995)",
    "",
    "A long, winding description of a film about a detective who investigates a series of "
    "crimes in a rainy city, with many characters, twists and a surprising ending " * 10,
    "Amélie — Le Fabuleux Destin d'Amélie Poulain (2001)",
    "北京 travel guide",
)

log = logging.getLogger(__name__)


@dataclass
class ExportSettings:
    """What to export: the encoder model (as the ``local`` encoder's options name it), the
    formats, and how Triton serves them."""

    model: str = ""  # the local encoder's 'model' option: "" = the bundled all-MiniLM-L6-v2
    name: str = "temporec_encoder"
    model_id: str = ""  # the vector space the models announce: "" = the model's own id
    formats: tuple[str, ...] = ("python",)
    max_length: int = 256
    serving: Serving = field(default_factory=Serving)
    tensorrt: str = ""  # "", "fp16" or "fp32": the TensorRT accelerator for the ONNX model

    def __post_init__(self):
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise InvalidArgument(f"format: {unknown or '(none)'} is not allowed; allowed: {allowed(FORMATS)}")
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise InvalidArgument(f"name: {self.name!r} is not allowed; use letters, digits, '_' and '-'")
        if self.max_length < 1:
            raise InvalidArgument(f"max_length: must be at least 1, got {self.max_length}")


@dataclass
class Encoder:
    """The Hugging Face model and tokenizer being exported."""

    model_id: str
    source: str
    model: torch.nn.Module
    tokenizer: object
    dim: int

    @classmethod
    def load(cls, model: str = "", model_id: str = "") -> "Encoder":
        """Load as the ``local`` encoder does (same source resolution and default);
        ``model_id`` names its vector space where the model's name does not (a tuned one)."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from temporec.model.pretrained import DEFAULT_MODEL_ID, resolve_source

        source = resolve_source(model)
        if not sys.stderr.isatty():
            hf_logging.disable_progress_bar()  # no loading and writing bars in logs
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            network = AutoModel.from_pretrained(source, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(
                f"model: {source!r}: no Hugging Face model could be loaded from it ({exc})"
            ) from exc
        return cls(model_id or model or DEFAULT_MODEL_ID, source, network, tokenizer, int(network.config.hidden_size))

    @torch.inference_mode()
    def embed(self, texts: list[str], max_length: int) -> np.ndarray:
        """Reference embeddings, computed as the ``local`` encoder computes them."""
        from temporec.model.pretrained import mean_pool

        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = self.model(**tokens).last_hidden_state
        return F.normalize(mean_pool(hidden, tokens["attention_mask"]).float(), dim=-1).numpy()


class _HiddenStates(torch.nn.Module):
    """The encoder with the ONNX model's signature: (input_ids, attention_mask) -> hidden."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@dataclass
class ExportResult:
    models: list[Path]  # the model directories written
    checks: list[str]  # what validation checked, one line per check


def export_repository(out: str | os.PathLike, settings: ExportSettings, encoder: Encoder | None = None) -> ExportResult:
    """Write the models of ``settings`` into the repository ``out`` (created if needed;
    other models there are left alone, same-named ones replaced), then validate the
    whole repository."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = encoder or Encoder.load(settings.model, settings.model_id)
    writers = {"python": _python_text, "python-tokens": _python_tokens, "onnx": _onnx_ensemble}
    written = []
    for fmt in settings.formats:
        written += writers[fmt](out, settings, encoder)
    return ExportResult(written, validate_repository(out, encoder, settings.max_length))


def _python_text(out: Path, settings: ExportSettings, encoder: Encoder) -> list[Path]:
    config = configs.python_encoder(
        settings.name, "text", encoder.dim, settings.max_length, encoder.model_id, settings.serving
    )
    return [_write_model(out, config, "hf_encoder.py", encoder, with_weights=True)]


def _python_tokens(out: Path, settings: ExportSettings, encoder: Encoder) -> list[Path]:
    config = configs.python_encoder(
        f"{settings.name}_tokens", "tokens", encoder.dim, settings.max_length, encoder.model_id, settings.serving
    )
    return [_write_model(out, config, "hf_encoder.py", encoder, with_weights=True)]


def _onnx_ensemble(out: Path, settings: ExportSettings, encoder: Encoder) -> list[Path]:
    name, serving = settings.name, settings.serving
    names = (f"{name}_tokenizer", f"{name}_onnx", f"{name}_pooling")
    cpu_steps = Serving(serving.max_batch_size, serving.max_queue_delay_us)
    return [
        _write_model(out, configs.tokenizer(names[0], settings.max_length, cpu_steps), "tokenizer.py", encoder),
        _write_model(
            out,
            configs.onnx_encoder(names[1], encoder.dim, encoder.model_id, serving, settings.tensorrt),
            encoder=encoder,
            onnx=True,
        ),
        _write_model(out, configs.pooling(names[2], encoder.dim, cpu_steps), "pooling.py"),
        _write_model(
            out, configs.ensemble(f"{name}_ensemble", encoder.dim, encoder.model_id, names, serving.max_batch_size)
        ),
    ]


def _write_model(
    out: Path,
    config,
    backend_source: str = "",
    encoder: Encoder | None = None,
    with_weights: bool = False,
    onnx: bool = False,
) -> Path:
    """Stage one model directory (config, version directory and its files), then move it
    into place."""
    final = out / config.name
    with replaced_atomically(final, directory=True) as staging:
        version = staging / VERSION
        version.mkdir()
        configs.write(config, staging)
        if backend_source:
            (version / "model.py").write_text(
                resources.files("temporec.triton.backends").joinpath(backend_source).read_text()
            )
        if encoder is not None and not onnx:
            encoder.tokenizer.save_pretrained(version / HF_DIR)
            if with_weights:
                encoder.model.save_pretrained(version / HF_DIR)
        if onnx:
            export_onnx(encoder, version / ONNX_FILE)
    log.info("wrote %s", final)
    return final


def export_onnx(encoder: Encoder, path: Path) -> None:
    """Export (input_ids, attention_mask) -> last_hidden_state with dynamic batch and
    length axes, through torch's dynamo exporter."""
    texts = ["a short text", "a somewhat longer text, to trace two lengths"]
    sample = encoder.tokenizer(texts, padding=True, return_tensors="pt")
    batch, length = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("tokens", min=1, max=8192)
    large = sum(p.numel() * p.element_size() for p in encoder.model.parameters()) > (1 << 30)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _HiddenStates(encoder.model).eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=[configs.INPUT_IDS, configs.ATTENTION_MASK],
            output_names=[configs.HIDDEN],
            dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=large,  # protobuf files stop at 2 GB
        )


class _quiet_exporter:
    """The ONNX exporter prints progress to stdout, logs each graph pass and warns about
    operators of packages that are not installed; keep all that out of the output."""

    LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.__trace")

    def __enter__(self):
        self._stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
        self._levels = {name: logging.getLogger(name).level for name in self.LOGGERS}
        for name in self.LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)

    def __exit__(self, *exc_info):
        sys.stdout.close()
        sys.stdout = self._stdout
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


# -- validation -------------------------------------------------------------------------


def validate_repository(
    repository: str | os.PathLike, encoder: Encoder | None = None, max_length: int = 256
) -> list[str]:
    """Check every model of ``repository``; return one line per model checked.

    Each ``config.pbtxt`` must parse as Triton's ModelConfig, name its directory, and have a
    version directory with the backend's file; ensemble steps must name models and tensors
    that exist; with ``encoder``, each ONNX model must give the torch model's embeddings
    within ``TOLERANCE``. Raises InvalidArgument listing every problem found."""
    repository = Path(repository)
    if not repository.is_dir():
        raise InvalidArgument(f"{repository}: no such directory")
    model_dirs = sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not model_dirs:
        raise InvalidArgument(f"{repository}: no model directories in this repository")
    problems, checked, found = [], [], {}
    for model_dir in model_dirs:
        try:
            found[model_dir.name] = configs.read(model_dir / configs.CONFIG_FILE)
        except InvalidArgument as exc:
            problems.append(str(exc))
    for name, config in found.items():
        problems += _model_problems(repository / name, config, found)
    if not problems and encoder is not None:
        for name, config in found.items():
            if config.platform == "onnxruntime_onnx":
                error = onnx_max_error(repository / name / VERSION / ONNX_FILE, encoder, max_length)
                if error > TOLERANCE:
                    problems.append(
                        f"{name}: ONNX embeddings differ from torch's by {error:.2e} (allowed {TOLERANCE:g})"
                    )
                else:
                    checked.append(f"{name}: ONNX Runtime matches torch (largest difference {error:.1e})")
    if problems:
        raise InvalidArgument(f"{repository}: invalid Triton model repository:\n  " + "\n  ".join(problems))
    checked += [f"{name}: config.pbtxt is a valid ModelConfig ({_kind(config)})" for name, config in found.items()]
    return checked


def _kind(config) -> str:
    return config.platform or config.backend


def _model_problems(model_dir: Path, config, found: dict) -> list[str]:
    name = model_dir.name
    where = f"{model_dir / configs.CONFIG_FILE}"
    if config.name and config.name != name:
        return [f"{where}: name {config.name!r} differs from its directory {name!r}"]
    required = BACKEND_FILES.get(_kind(config))
    if required is None:
        return [f"{where}: backend {_kind(config)!r} is not one temporec writes; allowed: {allowed(BACKEND_FILES)}"]
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not any((v / required).is_file() or not required for v in versions):
        return [f"{model_dir}: no version directory (1/, 2/, ...)" + (f" holds {required}" if required else "")]
    return _ensemble_problems(where, config, found) if config.platform == "ensemble" else []


def _ensemble_problems(where: str, config, found: dict) -> list[str]:
    """Every step's model exists and has the tensors the step maps; every tensor a step
    reads is an ensemble input or an earlier step's output; the outputs are produced."""
    problems = []
    available = {tensor.name for tensor in config.input}
    for i, step in enumerate(config.ensemble_scheduling.step):
        model = found.get(step.model_name)
        if model is None:
            problems.append(f"{where}: step {i} uses model {step.model_name!r}, which is not in the repository")
            continue
        inputs, outputs = {t.name for t in model.input}, {t.name for t in model.output}
        for model_tensor, ensemble_tensor in step.input_map.items():
            if model_tensor not in inputs:
                problems.append(
                    f"{where}: step {i}: {step.model_name!r} has no input {model_tensor!r}; it has {allowed(inputs)}"
                )
            if ensemble_tensor not in available:
                problems.append(f"{where}: step {i} reads {ensemble_tensor!r} before any step produces it")
        for model_tensor, ensemble_tensor in step.output_map.items():
            if model_tensor not in outputs:
                problems.append(
                    f"{where}: step {i}: {step.model_name!r} has no output {model_tensor!r}; it has {allowed(outputs)}"
                )
            available.add(ensemble_tensor)
    missing = {t.name for t in config.output} - available
    if missing:
        problems.append(f"{where}: no step produces the ensemble output(s) {allowed(missing)}")
    return problems


def onnx_max_error(path: Path, encoder: Encoder, max_length: int) -> float:
    """Largest |ONNX - torch| over the embeddings of ``SAMPLE_TEXTS``: ONNX Runtime gets
    the texts padded to ``max_length``, as the ensemble's tokenizer pads them; torch
    computes them as the local encoder does. The embeddings are pooled the same way."""
    import onnxruntime

    from temporec.model.pretrained import mean_pool

    texts = list(SAMPLE_TEXTS)
    tokens = encoder.tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    feeds = {name: tokens[name].astype(np.int64) for name in (configs.INPUT_IDS, configs.ATTENTION_MASK)}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hidden = torch.from_numpy(session.run([configs.HIDDEN], feeds)[0])
    pooled = mean_pool(hidden, torch.from_numpy(feeds[configs.ATTENTION_MASK]))
    onnx_embeddings = F.normalize(pooled.float(), dim=-1).numpy()
    return float(np.abs(onnx_embeddings - encoder.embed(texts, max_length)).max())
