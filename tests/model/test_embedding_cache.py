"""The on-disk cache of catalog text embeddings."""

import hashlib

import pytest
import torch

from temporec import Encoder
from temporec.contract.errors import PluginError
from temporec.contract.types import Catalog
from temporec.model import embedding_cache
from temporec.model.embedding_cache import cache_path, catalog_embeddings


class HashingEncoder(Encoder):
    """A fast deterministic encoder (a test double for the transformer) that records its calls."""

    name = "hashing"
    dim = 16

    def __init__(self, model_id: str = "test/hashing-v1"):
        self.model_id = model_id
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            digest = hashlib.sha256(f"{self.model_id}\x00{text}".encode()).digest()
            rows.append(torch.tensor(list(digest[: self.dim]), dtype=torch.float32) - 127.5)
        vectors = torch.stack(rows) if rows else torch.empty((0, self.dim))
        return torch.nn.functional.normalize(vectors, dim=-1)

    @property
    def encoded(self) -> list[str]:
        return [text for call in self.calls for text in call]


def catalog(*texts: str, prefix: str = "item") -> Catalog:
    return Catalog([f"{prefix}{i}" for i in range(len(texts))], list(texts))


MOVIES = catalog("Toy Story (1995)", "GoldenEye (1995)", "Heat (1995)", "Babe (1995)")


def test_computes_once_then_reads_the_cache(tmp_path):
    first = HashingEncoder()
    embeddings = catalog_embeddings(first, MOVIES, tmp_path)
    assert embeddings.shape == (4, 16) and embeddings.dtype == torch.float32
    assert torch.equal(embeddings, first.encode(MOVIES.texts))
    assert cache_path(first.model_id, MOVIES, tmp_path).is_file()

    second = HashingEncoder()
    assert torch.equal(catalog_embeddings(second, MOVIES, tmp_path), embeddings)
    assert second.calls == []  # a cache hit never calls the encoder


def test_a_changed_text_invalidates(tmp_path):
    catalog_embeddings(HashingEncoder(), MOVIES, tmp_path)
    changed = catalog("Toy Story (1995)", "GoldenEye (1995)", "Heat (1995)", "Babe: Pig in the City (1998)")
    encoder = HashingEncoder()
    embeddings = catalog_embeddings(encoder, changed, tmp_path)
    assert encoder.encoded == changed.texts
    assert torch.equal(embeddings, encoder.encode(changed.texts))
    assert len(list((tmp_path / "embeddings").iterdir())) == 2


def test_another_model_id_invalidates(tmp_path):
    catalog_embeddings(HashingEncoder("test/hashing-v1"), MOVIES, tmp_path)
    other = HashingEncoder("test/hashing-v2")
    embeddings = catalog_embeddings(other, MOVIES, tmp_path)
    assert other.encoded == MOVIES.texts
    assert torch.equal(embeddings, HashingEncoder("test/hashing-v2").encode(MOVIES.texts))


def test_ids_and_features_do_not_invalidate(tmp_path):
    catalog_embeddings(HashingEncoder(), MOVIES, tmp_path)
    renamed = Catalog([f"movie-{i}" for i in range(4)], MOVIES.texts, {"genre": ["a", "b", "c", "d"]})
    encoder = HashingEncoder()
    catalog_embeddings(encoder, renamed, tmp_path)
    assert encoder.calls == []


def test_duplicate_texts_are_encoded_once(tmp_path):
    texts = ("Heat (1995)", "Blade Runner (1982)", "Heat (1995)", "", "", "Heat (1995)")
    encoder = HashingEncoder()
    embeddings = catalog_embeddings(encoder, catalog(*texts), tmp_path)
    assert sorted(encoder.encoded) == sorted(set(texts))
    assert torch.equal(embeddings, encoder.encode(list(texts)))


def test_encodes_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_cache, "CHUNK", 3)
    texts = [f"movie number {i}" for i in range(10)]
    encoder = HashingEncoder()
    embeddings = catalog_embeddings(encoder, catalog(*texts), tmp_path)
    assert [len(call) for call in encoder.calls] == [3, 3, 3, 1]
    assert torch.equal(embeddings, encoder.encode(texts))


def test_default_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPOREC_CACHE_DIR", str(tmp_path / "cache"))
    catalog_embeddings(HashingEncoder(), MOVIES, None)
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.safetensors"))) == 1


def test_a_corrupt_cache_file_is_recomputed(tmp_path):
    path = cache_path("test/hashing-v1", MOVIES, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    encoder = HashingEncoder()
    embeddings = catalog_embeddings(encoder, MOVIES, tmp_path)
    assert encoder.encoded == MOVIES.texts
    assert torch.equal(catalog_embeddings(HashingEncoder(), MOVIES, tmp_path), embeddings)


def test_writes_leave_no_temporary_files(tmp_path):
    catalog_embeddings(HashingEncoder(), MOVIES, tmp_path)
    catalog_embeddings(HashingEncoder(), catalog("one", "two"), tmp_path)
    names = [p.name for p in (tmp_path / "embeddings").iterdir()]
    assert len(names) == 2 and not any(name.startswith(".partial") for name in names)


def test_an_encoder_returning_the_wrong_shape_is_a_plugin_error(tmp_path):
    class Truncating(HashingEncoder):
        def encode(self, texts):
            return super().encode(texts)[:-1]

    with pytest.raises(PluginError, match=r"'hashing' returned \(3, 16\) for 4 texts; expected \(4, 16\)"):
        catalog_embeddings(Truncating(), MOVIES, tmp_path)
    assert not (tmp_path / "embeddings").exists() or not any((tmp_path / "embeddings").iterdir())


def test_an_empty_catalog(tmp_path):
    encoder = HashingEncoder()
    assert catalog_embeddings(encoder, Catalog([], []), tmp_path).shape == (0, 16)


@pytest.mark.slow
def test_with_the_real_local_encoder(tmp_path):
    from temporec_plugins.encoders.local import LocalEncoder

    encoder = LocalEncoder(device="cpu")
    embeddings = catalog_embeddings(encoder, MOVIES, tmp_path)
    assert embeddings.shape == (4, 384)
    assert torch.allclose(embeddings, encoder.encode(MOVIES.texts), atol=1e-5)
    assert cache_path("sentence-transformers/all-MiniLM-L6-v2", MOVIES, tmp_path).is_file()

    def refuse(texts):
        raise AssertionError("the cached catalog was encoded again")

    encoder.encode = refuse
    assert torch.equal(catalog_embeddings(encoder, MOVIES, tmp_path), embeddings)
