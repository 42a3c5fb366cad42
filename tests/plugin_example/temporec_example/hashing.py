"""The ``hashing`` encoder: feature hashing of a text's words and word pairs.

Not a language model: nothing is learned and nothing is loaded. Each lower-cased word
(``\\w+``) and each pair of neighbouring words is hashed (BLAKE2b, stable across
processes and machines) into one of ``dim`` buckets; a text's vector is its bucket
counts, damped (``1 + log count``) and L2-normalized. Texts that share words get similar
vectors; synonyms and paraphrases do not. It is cheap and works offline, which makes it
a fair choice for tests, for catalogs whose texts are tags or keywords, and as a
baseline against the LLM encoders.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from itertools import pairwise

import torch

import temporec
from temporec import InvalidArgument

EMPTY = "\x00empty"  # the feature of a text without words, so that its vector has length 1


def bucket(feature: str, dim: int) -> int:
    """The bucket of ``feature`` among ``dim``: the same in every process."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % dim


def features(text: str, pairs: bool = True) -> list[str]:
    """The words of ``text``, lower-cased, and (with ``pairs``) each two neighbours joined."""
    words = re.findall(r"\w+", text.lower())
    found = words + ([f"{a} {b}" for a, b in pairwise(words)] if pairs else [])
    return found or [EMPTY]


class HashingEncoder(temporec.Encoder):
    """Bag-of-words feature hashing (see the module): ``dim`` buckets, word pairs optional.

    Options (the server's ``[encoders.hashing]`` table, or ``--encoder-option``):
    ``dim`` (default 256) and ``pairs`` (default true).
    """

    name = "hashing"

    def __init__(self, dim: int = 256, pairs: bool = True):
        if not isinstance(dim, int) or dim < 2:
            raise InvalidArgument(f"encoder 'hashing': option 'dim' is {dim!r}; allowed: an integer of at least 2")
        self.dim = dim
        self.pairs = bool(pairs)
        # equal options, equal vectors: the id names the vector space for caches and models
        self.model_id = f"hashing-v1-{dim}" + ("-pairs" if self.pairs else "")

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        vectors = torch.zeros(len(texts), self.dim)
        for row, text in enumerate(texts):
            buckets = torch.tensor([bucket(feature, self.dim) for feature in features(text, self.pairs)])
            counts = torch.bincount(buckets, minlength=self.dim).float()
            vectors[row] = torch.where(counts > 0, 1 + counts.log(), counts)
        return torch.nn.functional.normalize(vectors, dim=1)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "features": "words and word pairs" if self.pairs else "words"}


@temporec.hookimpl
def register_encoders(register):
    register(HashingEncoder)
