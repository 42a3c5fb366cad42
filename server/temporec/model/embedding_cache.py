"""Catalog text embeddings, computed once per (encoder vector space, catalog texts).

Encoding a catalog with a transformer takes minutes for large catalogs, and training,
evaluation and the server all need the same matrix. It is kept on disk as safetensors
under ``<cache>/embeddings/``, where ``<cache>`` is ``$TEMPOREC_CACHE_DIR`` or
``~/.cache/temporec``. The file name holds a hash of ``encoder.model_id`` and of every
catalog text in order, so a changed text or another encoder never reads a stale file.
Item ids and features do not enter the key: they do not change the vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from temporec.contract.encoders import Encoder
from temporec.contract.errors import PluginError
from temporec.contract.types import Catalog
from temporec.files import replaced_atomically

CHUNK = 512  # texts per encode call: bounds memory and paces the progress bar

log = logging.getLogger(__name__)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$TEMPOREC_CACHE_DIR``, else ``~/.cache/temporec``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("TEMPOREC_CACHE_DIR") or Path.home() / ".cache" / "temporec")


def cache_key(model_id: str, texts: list[str]) -> str:
    """A hash of the vector space and the ordered texts (length-prefixed, so unambiguous)."""
    digest = hashlib.sha256()
    for part in (model_id, *texts):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:32]


def cache_path(model_id: str, catalog: Catalog, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the embeddings of ``catalog`` under ``model_id`` are (or will be) stored."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")[:60] or "encoder"
    name = f"{slug}-{cache_key(model_id, catalog.texts)}.safetensors"
    return cache_root(cache_dir) / "embeddings" / name


def catalog_embeddings(encoder: Encoder, catalog: Catalog, cache_dir: str | Path | None = None) -> torch.Tensor:
    """The ``(len(catalog), encoder.dim)`` float32 text embeddings of ``catalog``,
    read from the cache or computed (each distinct text once) and then cached."""
    if not encoder.model_id:
        raise PluginError(f"encoder {encoder.name!r} has no model_id, so its embeddings cannot be cached")
    path = cache_path(encoder.model_id, catalog, cache_dir)
    cached = _read(path, len(catalog), encoder.dim)
    if cached is not None:
        log.debug("catalog embeddings: cache hit %s", path)
        return cached
    embeddings = _encode_unique(encoder, catalog.texts)
    _write(path, embeddings, encoder.model_id)
    log.info("catalog embeddings: %d items with %s, cached at %s", len(catalog), encoder.model_id, path)
    return embeddings


def _encode_unique(encoder: Encoder, texts: list[str]) -> torch.Tensor:
    """Encode each distinct text once, in chunks, and spread the rows back to ``texts``."""
    unique = list(dict.fromkeys(texts))
    row_of = {text: i for i, text in enumerate(unique)}
    vectors = torch.empty((len(unique), encoder.dim), dtype=torch.float32)
    quiet = not sys.stderr.isatty()
    with tqdm(total=len(unique), desc=f"embedding catalog ({encoder.name})", unit="text", disable=quiet) as bar:
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            vectors[start : start + len(chunk)] = _checked(encoder, chunk, encoder.encode(chunk))
            bar.update(len(chunk))
    index = torch.tensor([row_of[text] for text in texts], dtype=torch.long)
    return vectors[index]


def _checked(encoder: Encoder, texts: list[str], vectors: torch.Tensor) -> torch.Tensor:
    expected = (len(texts), encoder.dim)
    if not isinstance(vectors, torch.Tensor) or tuple(vectors.shape) != expected:
        shape = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
        raise PluginError(f"encoder {encoder.name!r} returned {shape} for {len(texts)} texts; expected {expected}")
    return vectors.detach().to("cpu", torch.float32)


def _read(path: Path, rows: int, dim: int) -> torch.Tensor | None:
    """The cached matrix, or None when absent or unusable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        embeddings = load_file(path)["embeddings"]
    except (OSError, KeyError, SafetensorError) as exc:
        log.warning("catalog embeddings: ignoring unreadable cache file %s: %s", path, exc)
        return None
    if tuple(embeddings.shape) != (rows, dim) or embeddings.dtype != torch.float32:
        log.warning(
            "catalog embeddings: ignoring %s: shape %s, expected %s", path, tuple(embeddings.shape), (rows, dim)
        )
        return None
    return embeddings


def _write(path: Path, embeddings: torch.Tensor, model_id: str) -> None:
    """Written in place at once: a reader never sees half a file."""
    # Readable like any cache file.
    with replaced_atomically(path, mode=0o644) as temporary:
        save_file({"embeddings": embeddings.contiguous()}, temporary, metadata={"model_id": model_id})
