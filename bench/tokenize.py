"""Batch-encode 10k sentences with isoform.Tokenizer and transformers' fast tokenizer, same run.

    python bench/tokenize.py [--model DIR_OR_ALIAS] [--n 10000] [--repeats 5]

Prints a table (median ms per 10k-sentence batch, ratio isoform / transformers; target <= 1.1) and
writes bench/results/tokenize.json. Uses the all-MiniLM-L6-v2 tokenizer by default (offline).
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # run as a script, this file would shadow the stdlib `tokenize` module

import argparse
import json
import pathlib
import platform
import random
import statistics
import time

from tqdm import tqdm

WORDS = ["the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from", "his", "her", "it", "an", "were", "are", "which", "this", "be", "or", "has", "had", "not", "but", "have", "their", "one", "also", "its", "first", "new", "after", "who", "they", "two", "been", "more", "most", "other", "some", "transformer", "tokenizer", "backend", "model", "vocabulary", "sentence", "café", "naïve", "北京", "مرحبا", "emoji", "👍🏽", "123", "4.5"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))).capitalize() + "." for _ in range(n)
    ]


def timed(fn, repeats: int, label: str) -> list[float]:
    fn()  # warm-up (thread pool, caches)
    out = []
    for _ in tqdm(range(repeats), desc=label, leave=False):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "tokenize.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from isoform import hub
    from isoform.tokenization import Tokenizer

    directory = hub.resolve(args.model)
    mine, ref = Tokenizer.load(directory), AutoTokenizer.from_pretrained(str(directory))
    texts = sentences(args.n)
    cases = {
        "padded np (max_length=128)": dict(padding=True, truncation=True, max_length=128, return_tensors="np"),
        "lists, no padding": dict(),
        "padded np + offsets": dict(padding=True, truncation=True, max_length=128, return_tensors="np",
                                    return_offsets_mapping=True),
    }  # fmt: skip
    rows = []
    for name, kwargs in tqdm(cases.items(), desc="cases"):
        a, b = mine(texts, **kwargs), ref(texts, **kwargs)
        assert all((a[k] == b[k]).all() if hasattr(b[k], "all") else a[k] == b[k] for k in b), name
        iso = statistics.median(timed(lambda kw=kwargs: mine(texts, **kw), args.repeats, f"isoform {name}"))
        hf = statistics.median(
            timed(lambda kw=kwargs: ref(texts, **kw), args.repeats, f"transformers {name}")
        )
        rows.append(
            {
                "case": name,
                "isoform_ms": round(iso, 1),
                "transformers_ms": round(hf, 1),
                "ratio": round(iso / hf, 3),
            }
        )

    width = max(len(r["case"]) for r in rows)
    print(f"\n{args.n} sentences, {args.model}, median of {args.repeats}")
    print(f"{'case':<{width}}  {'isoform ms':>10}  {'transformers ms':>15}  {'ratio':>6}")
    for r in rows:
        print(
            f"{r['case']:<{width}}  {r['isoform_ms']:>10.1f}  {r['transformers_ms']:>15.1f}  {r['ratio']:>6.3f}"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"n": args.n, "model": args.model, "repeats": args.repeats, "python": platform.python_version()}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
