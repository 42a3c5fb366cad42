"""The text-encoder interface. Implementations are plugins (``register_encoders``)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Sequence

import torch

from temporec.contract.errors import InvalidArgument

ENCODER_THREADS = 4  # concurrent ``encode`` calls per encoder in the default ``aencode``


class Encoder(ABC):
    """Turns texts into L2-normalized float32 vectors of size ``dim``.

    Subclasses set ``name`` and implement ``encode``; an encoder that talks to a remote
    service overrides ``aencode`` to use its own asynchronous client and honour
    ``timeout``. Encoders must be safe to call from several threads at once.
    """

    name: ClassVar[str] = ""
    #: True for an encoder that runs a Hugging Face model in process, configured by the
    #: options ``model`` and ``max_length``: ``temporec export-triton`` can move its model
    #: into a Triton model repository.
    exportable: ClassVar[bool] = False
    #: An exportable encoder's model, as loaded (a directory or a cached hub id): training
    #: that tunes the language model (``TrainConfig.tuning``) starts from it.
    source: str = ""

    #: Identifies the vector space: two encoders with equal ``model_id`` give the same
    #: vectors for the same text. Keys the embedding cache and model compatibility.
    model_id: str = ""
    dim: int = 0

    def checked_texts(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as a list, each checked to be a string: the error names the encoder
        and the bad index, before any text is sent to the model."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidArgument(f"encoder {self.name!r}: texts[{i}] is {type(text).__name__}, expected str")
        return texts

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Return a ``(len(texts), dim)`` float32 tensor on the CPU, rows L2-normalized."""

    async def aencode(self, texts: Sequence[str], timeout: float | None = None) -> torch.Tensor:
        """Asynchronous ``encode``; the default runs ``encode`` on this encoder's own
        worker threads, so an encoder that hangs holds those, not the shared pool that
        other encoders and the server use."""
        if self.__dict__.get("_worker") is None:
            self._worker = ThreadPoolExecutor(ENCODER_THREADS, thread_name_prefix=f"encoder-{self.name}")
        work = asyncio.get_running_loop().run_in_executor(self._worker, self.encode, list(texts))
        return await (asyncio.wait_for(work, timeout) if timeout is not None else work)

    async def healthy(self) -> bool:
        """Whether the encoder can serve right now. The server polls this (about once a
        second) for the health status ``temporec.v1.Recommender/encoder/<name>``; an
        encoder that calls a remote service asks it, quickly. In-process encoders are
        always healthy."""
        return True

    def describe(self) -> dict[str, str]:
        """Facts shown by ListComponents; extend with what helps an operator."""
        return {"model_id": self.model_id, "dim": str(self.dim)}

    def close(self) -> None:  # noqa: B027 (optional: most encoders hold nothing to release)
        """Release connections or memory; called at server shutdown."""
