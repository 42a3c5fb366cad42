"""The ``triton`` encoder: text embeddings from a model served by NVIDIA Triton Inference Server.

temporec talks to Triton over gRPC (``tritonclient.grpc.aio``) on one channel, reused by
every request. Concurrent requests are coalesced: while ``max_in_flight`` batches are at
Triton, new texts queue up and leave together, up to the model's ``max_batch_size`` (read
from its config), so Triton sees full batches. Each call to Triton carries the caller's
remaining deadline as its timeout; UNAVAILABLE, RESOURCE_EXHAUSTED and ABORTED answers are
retried with exponential backoff while the deadline allows. Each call to Triton is timed in
the Prometheus histogram ``temporec_triton_request_seconds`` (temporec.serving.metrics).

Two model interfaces are recognised from the model's metadata:

- **text in**: one string (BYTES) input, an embedding out (``temporec export-triton``'s
  Python-backend model, or its ONNX ensemble);
- **tokens in**: ``input_ids`` and ``attention_mask`` in, the last hidden states (pooled
  here, as the ``local`` encoder pools them) or a pooled embedding out. Texts are tokenized
  here with the model's Hugging Face tokenizer (option ``tokenizer``).

At start-up the encoder checks that the server and the model are ready and fails with an
error naming the URL and the model when not.

Options (the server's ``[encoders.triton]`` table):

    url                host:port of Triton's gRPC endpoint (default "localhost:8001")
    model              model name (default "temporec_encoder", as export-triton names it)
    version            model version ("" = the model's version policy, usually the latest)
    model_id           the vector space ("" = the model's temporec_model_id parameter,
                       which export-triton writes, else "triton/<model>")
    tokenizer          tokens in: tokenizer directory or hub id ("" = the bundled
                       all-MiniLM-L6-v2, as the local encoder's 'model')
    max_length         tokens in: tokens kept per text (0 = the model's max_length
                       parameter, else 256)
    timeout            seconds a call may take when the caller sets no deadline (default 30)
    retries            retries of a retryable failure (default 2)
    max_in_flight      batches at Triton at once (default 2)
    load_balancing     "" (gRPC's default: one connection) or "round_robin" over every
                       address the url resolves to (url "dns:///triton-headless:8001")
    ssl                TLS to Triton (default false); with root_certificates,
                       private_key, certificate_chain: PEM file paths (mutual TLS with
                       the last two)
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

import temporec
from temporec import (
    FailedPrecondition,
    InvalidArgument,
    PluginError,
    Unavailable,
    allowed,
)
from temporec.model import mean_pool, resolve_source
from temporec.triton import time_triton_request

TEXT_INTERFACE, TOKENS_INTERFACE = "text", "tokens"
LOAD_BALANCING = ("", "pick_first", "round_robin")
RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.ABORTED"}
DEADLINE = "StatusCode.DEADLINE_EXCEEDED"
BACKOFF_SECONDS = 0.05  # first retry delay; doubles with each retry
CHECK_TIMEOUT = 5.0  # seconds for each start-up check
HEALTH_TIMEOUT = 1.0  # seconds for a health check
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect within a second of Triton coming back, not after gRPC's default 2 minutes.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass
class Interface:
    """What the encoder learned from the model's metadata and config."""

    kind: str  # TEXT_INTERFACE or TOKENS_INTERFACE
    inputs: dict[str, str]  # input name -> Triton datatype
    output: str
    pooled: bool  # the output is one vector per text (else hidden states to pool)
    dim: int
    max_batch_size: int
    parameters: dict[str, str]


@dataclass
class _Chunk:
    """Up to max_batch_size texts of one caller, waiting to join a batch."""

    texts: list[str]
    deadline: float  # loop.time() after which the caller no longer waits
    future: asyncio.Future


class _Dispatcher:
    """The asynchronous side, bound to one event loop: the aio client, the queue of
    chunks, and the task that packs them into batches."""

    def __init__(self, encoder: "TritonEncoder"):
        import tritonclient.grpc.aio as grpcclient

        self.loop = asyncio.get_running_loop()
        self.client = grpcclient.InferenceServerClient(encoder.url, channel_args=encoder.channel_options, **encoder.tls)
        self.pending: collections.deque[_Chunk] = collections.deque()
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(encoder.max_in_flight)
        self.tasks: set[asyncio.Task] = set()
        self.worker = self.loop.create_task(self._dispatch(encoder))

    def submit(self, chunk: _Chunk) -> None:
        self.pending.append(chunk)
        self.wake.set()

    async def _dispatch(self, encoder: "TritonEncoder") -> None:
        while True:
            await self.slots.acquire()
            batch = await self._next_batch(encoder.interface.max_batch_size)
            task = self.loop.create_task(encoder._run_batch(self.client, batch))
            self.tasks.add(task)
            task.add_done_callback(self._finished)

    async def aclose(self) -> None:
        for task in (self.worker, *self.tasks):
            task.cancel()
        await self.client.close()

    def _finished(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.slots.release()

    async def _next_batch(self, limit: int) -> list[_Chunk]:
        """Wait for queued chunks and take as many as fit in one batch."""
        batch, size = [], 0
        while not batch:
            while not self.pending:
                self.wake.clear()
                await self.wake.wait()
            while self.pending and size + len(self.pending[0].texts) <= limit:
                chunk = self.pending.popleft()
                if not chunk.future.done():  # its caller gave up: skip it
                    batch.append(chunk)
                    size += len(chunk.texts)
        return batch


class TritonEncoder(temporec.Encoder):
    """An encoder model served by NVIDIA Triton Inference Server, over gRPC."""

    name = "triton"

    def __init__(
        self,
        url: str = "localhost:8001",
        model: str = "temporec_encoder",
        version: str = "",
        model_id: str = "",
        tokenizer: str = "",
        max_length: int = 0,
        timeout: float = 30.0,
        retries: int = 2,
        max_in_flight: int = 2,
        load_balancing: str = "",
        ssl: bool = False,
        root_certificates: str = "",
        private_key: str = "",
        certificate_chain: str = "",
    ):
        import tritonclient.grpc as grpcclient

        _check_number("timeout", timeout, 0, exclusive=True)
        _check_number("retries", retries, 0)
        _check_number("max_in_flight", max_in_flight, 1)
        _check_number("max_length", max_length, 0)
        self.url, self.model, self.version = url, model, str(version)
        self.timeout, self.retries, self.max_in_flight = float(timeout), int(retries), int(max_in_flight)
        if load_balancing not in LOAD_BALANCING:
            raise InvalidArgument(
                f"encoder 'triton': option 'load_balancing' is {load_balancing!r}; allowed: {allowed(LOAD_BALANCING)}"
            )
        self.channel_options = CHANNEL_OPTIONS + ([("grpc.lb_policy_name", load_balancing)] if load_balancing else [])
        self.tls = _tls_options(ssl, root_certificates, private_key, certificate_chain)
        self._client = grpcclient.InferenceServerClient(url, channel_args=self.channel_options, **self.tls)
        self.interface = self._start_up_checks()
        self.dim = self.interface.dim
        self.model_id = model_id or self.interface.parameters.get("temporec_model_id") or f"triton/{model}"
        self.max_length = max_length or int(self.interface.parameters.get("max_length") or 256)
        self._tokenizer = _load_tokenizer(tokenizer) if self.interface.kind == TOKENS_INTERFACE else None
        # Fast tokenizers are not reentrant ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self._dispatcher: _Dispatcher | None = None

    # -- start-up -----------------------------------------------------------------------

    @property
    def where(self) -> str:
        """How errors name this encoder's target."""
        version = f" version {self.version}" if self.version else ""
        return f"encoder 'triton': model {self.model!r}{version} at {self.url}"

    def _start_up_checks(self) -> Interface:
        """Check that the server and model are ready; read the model's interface."""
        from tritonclient.utils import InferenceServerException

        try:
            if not self._client.is_server_ready(client_timeout=CHECK_TIMEOUT):
                raise Unavailable(f"{self.where}: Triton is not ready (still starting or shutting down?)")
            if not self._client.is_model_ready(self.model, self.version, client_timeout=CHECK_TIMEOUT):
                index = self._client.get_model_repository_index(client_timeout=CHECK_TIMEOUT).models
                available = ", ".join(f"{m.name!r} ({m.state or 'not loaded'})" for m in index)
                raise Unavailable(
                    f"{self.where}: the model is not ready on this server; its repository has: {available or '(none)'}"
                )
            metadata = self._client.get_model_metadata(self.model, self.version, client_timeout=CHECK_TIMEOUT)
            config = self._client.get_model_config(self.model, self.version, client_timeout=CHECK_TIMEOUT).config
        except InferenceServerException as exc:
            raise Unavailable(f"{self.where}: cannot reach Triton: {exc.message()}") from exc
        return self._interface(metadata, config)

    def _interface(self, metadata, config) -> Interface:
        inputs = {tensor.name: tensor.datatype for tensor in metadata.inputs}
        outputs = {tensor.name: list(tensor.shape) for tensor in metadata.outputs}
        parameters = {key: value.string_value for key, value in config.parameters.items()}
        if config.max_batch_size < 1:
            raise FailedPrecondition(
                f"{self.where}: max_batch_size is {config.max_batch_size}; the encoder needs a batching model "
                "(max_batch_size >= 1)"
            )
        if len(inputs) == 1 and next(iter(inputs.values())) == "BYTES":
            kind = TEXT_INTERFACE
        elif {"input_ids", "attention_mask"} <= set(inputs):
            kind = TOKENS_INTERFACE
        else:
            raise FailedPrecondition(
                f"{self.where}: inputs {inputs} fit neither interface: one BYTES input (text in) "
                "or input_ids and attention_mask (tokens in)"
            )
        float_outputs = {name: shape for name, shape in outputs.items() if len(shape) in (2, 3) and shape[-1] > 0}
        if len(float_outputs) != 1:
            raise FailedPrecondition(
                f"{self.where}: outputs {outputs}: expected one embedding [-1, dim] or hidden states [-1, -1, dim]"
            )
        ((output, shape),) = float_outputs.items()
        return Interface(kind, inputs, output, len(shape) == 2, int(shape[-1]), config.max_batch_size, parameters)

    # -- encoding -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Blocking encode (training, the embedding cache): batch by batch, with retries."""
        order, batches = self._batches(texts)
        rows = [self._infer_blocking(batch) for batch in batches]
        return _in_order(rows, order, self.dim)

    async def aencode(self, texts: Sequence[str], timeout: float | None = None) -> torch.Tensor:
        """Queue the texts (in chunks of at most max_batch_size) for the next batches and
        wait for their vectors, at most ``timeout`` seconds (default: option ``timeout``)."""
        order, batches = self._batches(texts)
        if not batches:
            return torch.empty((0, self.dim))
        dispatcher = self._loop_dispatcher()
        deadline = dispatcher.loop.time() + (timeout or self.timeout)
        chunks = [_Chunk(batch, deadline, dispatcher.loop.create_future()) for batch in batches]
        for chunk in chunks:
            dispatcher.submit(chunk)
        rows = await asyncio.gather(*(chunk.future for chunk in chunks))
        return _in_order(rows, order, self.dim)

    def _batches(self, texts: Sequence[str]) -> tuple[list[int], list[list[str]]]:
        """``texts`` shortest first, in slices of at most the model's max_batch_size, and
        the order taken. A batch of similar lengths is padded little: on 512 titles this
        made the hop about 15% faster (docs/triton.md), as the local encoder orders them."""
        texts, step = self.checked_texts(texts), self.interface.max_batch_size
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        return order, [ordered[i : i + step] for i in range(0, len(ordered), step)]

    def _loop_dispatcher(self) -> _Dispatcher:
        loop = asyncio.get_running_loop()
        if self._dispatcher is None or self._dispatcher.loop is not loop or self._dispatcher.worker.done():
            self._dispatcher = _Dispatcher(self)
        return self._dispatcher

    async def _run_batch(self, client, batch: list[_Chunk]) -> None:
        """One call to Triton for the chunks of ``batch``; each caller gets its rows."""
        texts = [text for chunk in batch for text in chunk.texts]
        try:
            vectors = await self._infer(client, texts, max(chunk.deadline for chunk in batch))
        except Exception as exc:  # every caller in the batch gets the failure
            for chunk in batch:
                if not chunk.future.done():
                    chunk.future.set_exception(exc)
            return
        start = 0
        for chunk in batch:
            if not chunk.future.done():
                chunk.future.set_result(vectors[start : start + len(chunk.texts)])
            start += len(chunk.texts)

    async def _infer(self, client, texts: list[str], deadline: float) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        loop = asyncio.get_running_loop()
        inputs, tokens = self._inputs(texts)
        for attempt in itertools.count():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"{self.where}: the deadline passed before Triton answered")
            try:
                with time_triton_request(self.model):
                    result = await client.infer(self.model, inputs, self.version, client_timeout=remaining)
                return self._vectors(result, tokens)
            except InferenceServerException as exc:
                delay = self._retry_delay(exc, attempt, remaining)  # raises when no retry is left
            await asyncio.sleep(delay)

    def _infer_blocking(self, texts: list[str]) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + self.timeout
        inputs, tokens = self._inputs(texts)
        for attempt in itertools.count():
            remaining = deadline - time.monotonic()
            try:
                with time_triton_request(self.model):
                    result = self._client.infer(self.model, inputs, self.version, client_timeout=max(remaining, 0.001))
                return self._vectors(result, tokens)
            except InferenceServerException as exc:
                delay = self._retry_delay(exc, attempt, remaining)  # raises when no retry is left
            time.sleep(delay)

    def _retry_delay(self, exc, attempt: int, remaining: float) -> float:
        """The backoff before the next attempt, or the error to raise for ``exc``."""
        status, message = exc.status(), exc.message()
        if status == DEADLINE:
            raise asyncio.TimeoutError(f"{self.where}: no answer within the deadline")
        if status not in RETRYABLE:
            raise PluginError(f"{self.where}: Triton answered {status.removeprefix('StatusCode.')}: {message}")
        delay = BACKOFF_SECONDS * 2**attempt * random.uniform(0.5, 1.0)
        if attempt == self.retries or delay >= remaining:
            raise Unavailable(f"{self.where} is unavailable ({message}); retry later")
        return delay

    def _inputs(self, texts: list[str]):
        """The request tensors for ``texts``, and the attention mask for pooling."""
        from tritonclient.grpc import InferInput

        if self.interface.kind == TEXT_INTERFACE:
            (name,) = self.interface.inputs
            column = np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)
            tensor = InferInput(name, list(column.shape), "BYTES")
            tensor.set_data_from_numpy(column)
            return [tensor], None
        with self._tokenizer_lock:
            tokens = self._tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
        tensors = []
        for name in ("input_ids", "attention_mask"):
            datatype = self.interface.inputs[name]
            values = tokens[name].astype(np.int64 if datatype == "INT64" else np.int32)
            tensor = InferInput(name, list(values.shape), datatype)
            tensor.set_data_from_numpy(values)
            tensors.append(tensor)
        return tensors, tokens["attention_mask"]

    def _vectors(self, result, attention_mask) -> np.ndarray:
        """L2-normalized float32 rows from Triton's answer, pooled here for hidden states."""
        output = torch.from_numpy(np.array(result.as_numpy(self.interface.output), dtype=np.float32))
        if not self.interface.pooled:
            output = mean_pool(output, torch.from_numpy(attention_mask))
        return F.normalize(output, dim=-1).numpy()

    # -- health and life cycle ------------------------------------------------------------

    async def healthy(self) -> bool:
        """Whether Triton answers that the model is ready (within a second)."""
        try:
            client = self._loop_dispatcher().client
            return bool(await client.is_model_ready(self.model, self.version, client_timeout=HEALTH_TIMEOUT))
        except Exception:
            return False

    def describe(self) -> dict[str, str]:
        return {
            **super().describe(),
            "url": self.url,
            "model": self.model,
            "version": self.version or "(latest)",
            "interface": self.interface.kind,
            "max_batch_size": str(self.interface.max_batch_size),
            "tls": "yes" if self.tls else "no",
        }

    def close(self) -> None:
        """Close both channels (called at server shutdown, on or off the event loop)."""
        self._client.close()
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None and not dispatcher.loop.is_closed():
            asyncio.run_coroutine_threadsafe(dispatcher.aclose(), dispatcher.loop)


def _in_order(rows: list[np.ndarray], order: list[int], dim: int) -> torch.Tensor:
    """The vectors of ``rows`` (the batches' answers, in the ``order`` they were sent) put
    back where their texts were."""
    if not rows:
        return torch.empty((0, dim))
    vectors = np.empty((len(order), dim), dtype=np.float32)
    vectors[order] = np.concatenate(rows)
    return torch.from_numpy(vectors)


def _check_number(option: str, value, minimum: float, exclusive: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < minimum
        or (exclusive and value == minimum)
    ):
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise InvalidArgument(f"encoder 'triton': option {option!r} is {value!r}; allowed: a number {bound}")


def _tls_options(ssl: bool, root_certificates: str, private_key: str, certificate_chain: str) -> dict:
    """tritonclient's TLS arguments; every named file must exist."""
    files = {"root_certificates": root_certificates, "private_key": private_key, "certificate_chain": certificate_chain}
    if not ssl:
        named = [option for option, path in files.items() if path]
        if named:
            raise InvalidArgument(f"encoder 'triton': options {named} need ssl = true")
        return {}
    for option, path in files.items():
        if path and not Path(path).expanduser().is_file():
            raise InvalidArgument(f"encoder 'triton': option {option!r} is {path!r}, which is not a file")
    return {"ssl": True, **{option: str(Path(path).expanduser()) for option, path in files.items() if path}}


def _load_tokenizer(tokenizer: str):
    from transformers import AutoTokenizer

    try:
        source = resolve_source(tokenizer)
    except FailedPrecondition as exc:
        raise FailedPrecondition(f"encoder 'triton': option 'tokenizer': {exc}") from exc
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(
            f"encoder 'triton': option 'tokenizer' is {source!r}: no tokenizer could be loaded from it ({exc})"
        ) from exc


@temporec.hookimpl
def register_encoders(register):
    register(TritonEncoder)
